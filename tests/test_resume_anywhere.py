"""A selection killed with SIGKILL at any instant resumes to the same decisions and winner as one never killed:
at every optimizer step of every candidate, after every decision, and after the winner's save. Resuming twice is
safe, and no resume waits for a verdict that cannot come (a hung child is killed and fails the test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.crash_helper import DECISIONS, STEP_BOUNDARIES

pytestmark = pytest.mark.slow
HELPER = Path(__file__).with_name("crash_helper.py")


def test_a_crash_at_any_point_resumes_to_the_same_selection(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(HELPER.parent.parent)}
    run = subprocess.run([sys.executable, str(HELPER), str(tmp_path / "models"), str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    points = results["points"]
    assert len(points) == STEP_BOUNDARIES + DECISIONS + 1
    expected = results["expected"]
    assert expected["steps_spent"] == STEP_BOUNDARIES  # 4 x 2 + 2 x 2 + 1 x 2: the schedule the points assume
    for point, outcome in points.items():
        assert outcome["crashed"] == -9, f"{point}: the crash did not happen where it was armed"
        assert all(code == 0 for code in outcome["resumed"]), f"{point}: resume exited with {outcome['resumed']}"
        assert outcome["got"] == expected, f"{point}: resumed to {outcome['got']}, not {expected}"

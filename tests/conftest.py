"""Shared fixtures: small hand-made records, written the way users write them, and a local Hub.

The local Hub starts here, at import, because the Hub client libraries read HF_ENDPOINT, HF_HOME and the token once,
when they are first imported: every test then talks to 127.0.0.1 over real HTTP, never to the internet.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from hf_twophase.hub.server import LocalHub, hub_environment

if os.environ.get("HF_TWOPHASE_TEST_HUB_PID") == str(os.getpid()):  # imported a second time under another name
    # (a pytest-xdist worker inherits the variables of the process that started it: it starts a hub of its own)
    raise ImportError("import the test helpers from `conftest`, not `tests.conftest`: importing it twice would start "
                      "a second hub after the Hub clients were configured for the first")
_HUB_FOLDER = tempfile.mkdtemp(prefix="hf-twophase-tests-")
LOCAL_HUB = LocalHub(os.path.join(_HUB_FOLDER, "hub")).start()
os.environ.update(hub_environment(LOCAL_HUB.url, os.path.join(_HUB_FOLDER, "hf_home")))
os.environ["HF_TWOPHASE_TEST_HUB"] = LOCAL_HUB.url
os.environ["HF_TWOPHASE_TEST_HUB_PID"] = str(os.getpid())
atexit.register(lambda: (LOCAL_HUB.stop(), shutil.rmtree(_HUB_FOLDER, ignore_errors=True)))

import pandas as pd  # noqa: E402 - after the Hub environment is set
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def local_hub() -> LocalHub:
    return LOCAL_HUB


@pytest.fixture
def write_csv(tmp_path):
    def write(rows, name="records.csv", text=None):
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        else:
            pd.DataFrame(rows).to_csv(path, index=False)
        return path

    return write


def cell_records(matrix: dict[str, dict[str, float]]) -> list[dict]:
    """One-step records from {model: {dataset: score}}."""
    return [
        {"model": m, "dataset": d, "step": 1, "val": v, "test": v, "cost": 1.0}
        for m, row in matrix.items()
        for d, v in row.items()
    ]

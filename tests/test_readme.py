"""The README's Python example runs as written, against a Hub that holds what it names.

A fresh local Hub server stands in for huggingface.co: it hosts a small review dataset under the example's dataset id
and tiny text classifiers with the Hub's model cards; the example uses the packaged matrix, which knows none of them.
The snippet is taken from README.md verbatim and run in a fresh process whose Hub clients point at that server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hf_twophase.hub.server import LocalHub, hub_environment

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent

SEED = r'''
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from huggingface_hub import HfApi

from tests.coordinator_helpers import make_candidates

api = HfApi()
work = Path(sys.argv[1])
rng = np.random.default_rng(0)
pos, neg = ["good", "great", "fine", "superb"], ["bad", "awful", "dull", "poor"]


def split(n):
    labels = rng.integers(0, 2, n)
    texts = [" ".join(rng.choice(pos if y else neg, 3)) + " " + " ".join(rng.choice(pos + neg, 2)) for y in labels]
    return pd.DataFrame({"text": texts, "label": labels})


api.create_repo("cornell-movie-review-data/rotten_tomatoes", repo_type="dataset")
for name, n in (("train", 256), ("validation", 64)):
    path = work / f"{name}.parquet"
    split(n).to_parquet(path, index=False)
    api.upload_file(path_or_fileobj=str(path), path_in_repo=f"data/{name}-00000-of-00001.parquet",
                    repo_id="cornell-movie-review-data/rotten_tomatoes", repo_type="dataset")
card = "---\npipeline_tag: text-classification\nlibrary_name: transformers\n---\n# {name}\n"
for i, folder in enumerate(make_candidates(work / "models", hidden=(8, 16, 24, 32))):
    repo_id = f"tiny-org/classifier-{i}"
    Path(folder, "README.md").write_text(card.format(name=repo_id))
    api.create_repo(repo_id)
    api.upload_folder(repo_id=repo_id, folder_path=folder)
'''


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert blocks, "README.md has no Python example"
    return blocks[0]


def test_readme_example_runs_as_written(tmp_path):
    snippet = readme_example()
    assert 'RepoSelector.from_hub(task="text-classification")' in snippet  # one argument: nothing else to own
    (tmp_path / "seed.py").write_text(SEED)
    (tmp_path / "example.py").write_text(snippet)
    with LocalHub(tmp_path / "hub") as hub:
        env = {**os.environ, **hub_environment(hub.url, tmp_path / "hf_home"), "PYTHONPATH": str(ROOT)}
        seeded = subprocess.run([sys.executable, str(tmp_path / "seed.py"), str(tmp_path)], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=240)
        assert seeded.returncode == 0, seeded.stderr[-3000:]
        ran = subprocess.run([sys.executable, str(tmp_path / "example.py")], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=240)
    assert ran.returncode == 0, ran.stderr[-3000:]
    winner, score = ran.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert winner.startswith("tiny-org/classifier-") and 0.0 <= float(score) <= 1.0
    assert (tmp_path / "runs" / "sel" / "winner" / "config.json").is_file()
    assert (tmp_path / "runs" / "sel" / "report.md").is_file()

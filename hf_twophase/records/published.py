"""Performance matrices that ship inside the package: the paper authors' own published matrices, one per task.

Why ship them: building a matrix costs GPU-days, and a newcomer should be able to call
``RepoSelector.from_hub(task=...)`` without one. The paper's authors published a text matrix (39 Hub models x 21
datasets) and an image matrix (30 Hub models x 6 datasets) under the MIT license; they are converted once, by
``hf-twophase matrix regenerate-published CHECKOUT``, into Parquet records with a provenance record, and the MIT
notice travels with them (``hf_twophase/matrices/NOTICE``).

These matrices hold final scores only (one step per pair, no learning curves): fine selection then prunes by
validation score (see ``method/live_policy.py``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hf_twophase.atomic import write_json_atomic, write_text_atomic
from hf_twophase.errors import RecordsError
from hf_twophase.records.importers import import_plasware
from hf_twophase.records.matrix import PerformanceMatrix, packaged_matrices_dir

CITATION = ('Jianwei Cui, Wenhang Shi, Honglin Tao, Wei Lu, Xiaoyong Du. "A Two-Phase Recall-and-Select Framework '
            'for Fast Model Selection". Renmin University of China. Code and data: '
            "https://github.com/plasware/two-phase-selection")

# Four models of the text matrix are named by their pre-2024 Hub ids, which the Hub now lists under an organisation.
# The Hub still redirects the old names, but ``list_models`` returns the new ones, so the records use the new ones.
LEGACY_HUB_IDS = {
    "albert-base-v2": "albert/albert-base-v2",
    "bert-base-uncased": "google-bert/bert-base-uncased",
    "distilbert-base-uncased": "distilbert/distilbert-base-uncased",
    "roberta-base": "FacebookAI/roberta-base",
}


@dataclass(frozen=True)
class PublishedSource:
    """Where one packaged matrix comes from, pinned to a commit so that regeneration is reproducible."""

    task: str
    repository: str
    commit: str
    folder: str
    files: tuple[str, ...] = ("matrix.txt", "datasets.txt")
    license: str = "MIT"
    copyright: str = "Copyright (c) 2023 plasware"
    citation: str = CITATION
    note: str = ""
    renamed: dict[str, str] = field(default_factory=dict)

    @property
    def file_paths(self) -> list[str]:
        return [f"{self.folder}/{name}" for name in self.files]


PUBLISHED: dict[str, PublishedSource] = {
    "text-classification": PublishedSource(
        task="text-classification", repository="plasware/two-phase-selection",
        commit="4ce7cde961106063f1b14808796918b3e338e052", folder="coarse_recall/NLP_coarse_recall",
        renamed=LEGACY_HUB_IDS,
        note="Final scores as the authors recorded them, one per (model, dataset); each dataset's metric is the "
             "authors' (some values of cola are below 0, so not every column is an accuracy). No learning curves."),
    "image-classification": PublishedSource(
        task="image-classification", repository="plasware/two-phase-selection",
        commit="4ce7cde961106063f1b14808796918b3e338e052", folder="coarse_recall/CV_coarse_recall",
        note="Final accuracies as the authors recorded them, one per (model, dataset). No learning curves."),
}


def describe_provenance(provenance: dict) -> str:
    """One paragraph for cards, reports and ``matrix info``."""
    if "source" not in provenance:  # a matrix of our own making says what it is in a sentence
        return str(provenance.get("description", ""))
    src = provenance["source"]
    return (f"Converted from {src['repository_url']} at commit {src['commit'][:12]} ({', '.join(src['files'])}), "
            f"{src['license']} license, {src['copyright']}. {provenance.get('note', '')} "
            f"Cite: {provenance['citation']}").strip()


def _commit_of(checkout: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def regenerate(checkout: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Convert the source checkout's matrices into the packaged files (records, provenance, NOTICE).

    ``checkout`` is a working tree of the source repository at the pinned commit; a checkout at another commit is
    refused, since the provenance record would then lie about what the data is."""
    checkout = Path(checkout)
    out = Path(out_dir) if out_dir is not None else packaged_matrices_dir()
    if not checkout.is_dir():
        raise RecordsError(f"{checkout} is not a folder; expected a checkout of {PUBLISHED['text-classification']}")
    commit = _commit_of(checkout)
    wrong = [src for src in PUBLISHED.values() if commit is not None and commit != src.commit]
    if wrong:
        raise RecordsError(f"{checkout} is at commit {commit[:12]}, expected {wrong[0].commit[:12]} of "
                           f"{wrong[0].repository}: run `git -C {checkout} checkout {wrong[0].commit}` first")
    written: dict[str, Path] = {}
    for task, src in PUBLISHED.items():
        folder = checkout / src.folder
        digests = {}
        with tempfile.TemporaryDirectory() as tmp:  # only the pinned files, never other files of the folder
            for name in src.files:
                path = folder / name
                if not path.is_file():
                    raise RecordsError(f"expected {src.folder}/{name} in the checkout", source=str(path))
                data = path.read_bytes()
                digests[f"{src.folder}/{name}"] = hashlib.sha256(data).hexdigest()
                (Path(tmp) / name).write_bytes(data)
            records, _ = import_plasware(tmp)
        records["model"] = records["model"].map(lambda m, renamed=src.renamed: renamed.get(m, m))
        records = records.drop(columns=["cost"])  # the source records no cost; NaN columns only add noise
        matrix = PerformanceMatrix(records, source=f"{src.repository}@{src.commit[:12]}")
        out.mkdir(parents=True, exist_ok=True)
        written[f"{task}.parquet"] = matrix.write(out / f"{task}.parquet")
        provenance = {
            "task": task,
            "source": {"repository": src.repository, "repository_url": f"https://github.com/{src.repository}",
                       "commit": src.commit, "files": src.file_paths, "sha256": digests, "license": src.license,
                       "copyright": src.copyright},
            "citation": src.citation, "note": src.note, "renamed_models": src.renamed,
            "models": len(matrix.models), "datasets": matrix.datasets, "curves": False,
            "regenerate": "hf-twophase matrix regenerate-published CHECKOUT",
        }
        written[f"{task}.json"] = write_json_atomic(out / f"{task}.json", provenance, indent=2)
    license_text = (checkout / "LICENSE").read_text()
    notice = ("The performance matrices in this folder (*.parquet) are converted from data published in\n"
              f"https://github.com/{PUBLISHED['text-classification'].repository} "
              f"(commit {PUBLISHED['text-classification'].commit}),\nunder the following license:\n\n{license_text}")
    written["NOTICE"] = write_text_atomic(out / "NOTICE", notice)
    return written

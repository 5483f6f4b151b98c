"""Hub cards rendered from the templates in ``hub/templates/``: one for the performance matrix, one for a winner.

Why templates in their own folder: the cards are product text that people edit without touching code, and the
Hub's own card classes (``DatasetCard`` / ``ModelCard``) render them with Jinja and validate their YAML header.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from hf_twophase.paths import display_name
from hf_twophase.records.matrix import PerformanceMatrix

DEFAULT_MEASUREMENT = (
    "Each model was fine-tuned on each benchmark with the Hugging Face Trainer (hf-twophase `build-matrix`, a "
    "standard recipe: fixed epochs, learning rate, batch size and seed per benchmark), evaluating on the validation "
    "split at every evaluation step; the test score is measured once at the end of training."
)


def template_path(name: str) -> Path:
    """A card template shipped with the package (``hf_twophase/hub/templates``), in a checkout and installed alike."""
    return Path(str(resources.files("hf_twophase.hub").joinpath("templates", name)))


def _score_table(matrix: PerformanceMatrix, max_models: int = 50, max_benchmarks: int = 12) -> str:
    table = matrix.final_scores()
    order = table.mean(axis=1, skipna=True).sort_values(ascending=False).index[:max_models]
    cols = list(table.columns[:max_benchmarks])
    lines = ["| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for model in order:
        cells = ["" if np.isnan(v) else f"{v:.4f}" for v in table.loc[model, cols].to_numpy(dtype=float)]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    more = []
    if len(table.index) > max_models:
        more.append(f"{len(table.index) - max_models} more models")
    if len(table.columns) > max_benchmarks:
        more.append(f"{len(table.columns) - max_benchmarks} more benchmarks")
    return "\n".join(lines) + (f"\n\n({', '.join(more)} in the data.)" if more else "")


def matrix_card(matrix: PerformanceMatrix, repo_id: str, *, task: str | None = None, license: str = "apache-2.0",
                measurement: str | None = None, provenance: str | None = None, has_proxy: bool = False,
                pretty_name: str | None = None):
    """The dataset card of a published performance matrix (a ``huggingface_hub.DatasetCard``)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from hf_twophase.version import __version__

    configs = [{"config_name": "default", "data_files": [{"split": "train", "path": "data/records.parquet"}]}]
    if has_proxy:
        configs.append({"config_name": "proxy", "data_files": [{"split": "train", "path": "data/proxy.parquet"}]})
    final = matrix.final_scores()
    data = DatasetCardData(
        license=license, task_categories=[task] if task else None, pretty_name=pretty_name or repo_id.split("/")[-1],
        tags=["hf-twophase", "model-selection", "performance-matrix", "learning-curves"], configs=configs,
        size_categories=["n<1K" if len(matrix) < 1000 else "1K<n<10K" if len(matrix) < 10_000 else "10K<n<100K"],
    )
    return DatasetCard.from_template(
        data, template_path=str(template_path("matrix_card.md")), repo_id=repo_id,
        pretty_name=pretty_name or repo_id.split("/")[-1], n_models=len(matrix.models),
        n_benchmarks=len(matrix.datasets), benchmarks=", ".join(matrix.datasets[:20])
        + (" ..." if len(matrix.datasets) > 20 else ""), n_records=len(matrix),
        filled=int(final.notna().to_numpy().sum()), n_cells=int(final.size), score_table=_score_table(matrix),
        measurement=measurement or DEFAULT_MEASUREMENT,
        provenance=provenance or f"Built from `{matrix.source}`.", version=__version__, has_proxy=has_proxy,
    )


def model_card(report, repo_id: str, *, task: str, dataset_name: str = "the user's dataset",
               base_model: str | None = None, license: str | None = None, has_plot: bool = True):
    """The model card of a selected, fine-tuned winner: the selection report is its body.

    ``report`` is a ``hf_twophase.trainer.report.SelectionReport``; it is not imported here because the Hub layer
    sits below the Trainer layer (the Trainer pushes winners through it)."""
    from huggingface_hub import ModelCard, ModelCardData

    winner = report.winner or "?"
    base = base_model or (winner if "/" in winner and not winner.startswith(("packaged:", "/", ".")) else None)
    data = ModelCardData(
        license=license, library_name="transformers" if not winner.startswith("packaged:") else "timm",
        pipeline_tag=task, base_model=base, tags=["hf-twophase", "model-selection", task],
    )
    policy = report.policy.get("policy", "fine selection") if isinstance(report.policy, dict) else str(report.policy)
    return ModelCard.from_template(
        data, template_path=str(template_path("model_card.md")), repo_id=repo_id,
        repo_name=repo_id.split("/")[-1], winner=display_name(winner), dataset_name=dataset_name,
        n_candidates=len(report.trained_candidates), policy_name=policy,
        metric=report.metric, winner_score="n/a" if report.winner_score is None else f"{report.winner_score:.4f}",
        budget=report.budget, stage_ends=", ".join(map(str, report.stage_ends[:8])), steps_spent=report.steps_spent,
        brute_force_steps=report.brute_force_steps, sh_steps=report.successive_halving_steps(),
        seconds=f"{report.seconds:.1f}", report_table=report.to_markdown(), has_plot=has_plot, pipeline_tag=task,
    )

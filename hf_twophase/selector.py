"""``RepoSelector``: the front door. A repository of candidate models + a performance matrix -> a trained winner.

Why one object: a user thinks "these models (or the Hub's top ones for my task), this matrix, my data", not in
clusters and policies. The selector lists the candidates, joins them with the matrix (models the matrix does not know
are "cold": they cannot be clustered), recalls the top K with a proxy score computed for cluster representatives
only (phase 1), and hands the recalled models to the coordinator's fine selection (phase 2).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_twophase.errors import HFTwoPhaseError, SelectionError
from hf_twophase.inputs.columns import Columns, detect_columns, encode_string_labels, split_columns
from hf_twophase.method.clustering import ClusteringConfig
from hf_twophase.method.recall import (
    DEFAULT_COLD_BUDGET,
    DEFAULT_K,
    RecallConfig,
    RecallResult,
    normaliser_for,
    rank_cold,
)
from hf_twophase.method.registry import DEFAULT_VARIANT, POLICY_NAMES, STAGES_PER_BUDGET, VARIANTS, default_stage
from hf_twophase.proxy.scorer import ProxyConfig, ProxyResult, combine_proxy_scores, make_scorer
from hf_twophase.proxy_names import PROXY_METHODS
from hf_twophase.records.matrix import PerformanceMatrix
from hf_twophase.tasks import check_task
from hf_twophase.trainer.config import SelectionConfig

logger = logging.getLogger(__name__)
_PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt", ".pkl")


@dataclass
class SelectorConfig:
    """How a selection runs. Defaults follow the paper, with the improvements measured in docs/benchmarks.md."""

    k: int | None = field(
        default=None, metadata={"help": f"How many models phase 1 recalls for fine selection (default: {DEFAULT_K}, "
                                        "or every model the selector can rank when there are fewer)."})
    cold_budget: int = field(
        default=DEFAULT_COLD_BUDGET,
        metadata={"help": "Proxy-score up to this many models the matrix does not know (the most downloaded first) "
                          "and rank them with the rest (0: leave them out)."},
    )
    recall: RecallConfig = field(default_factory=RecallConfig,
                                 metadata={"help": "How phase 1 ranks the matrix's models (robust prior or paper)."})
    proxy: str = field(default="leep", metadata={"help": "Proxy score of phase 1: 'leep', or one on pooled features: "
                                                         "'logme', 'knn' (k-NN accuracy), 'hscore' or 'gbc'."})
    normaliser: str = field(
        default="auto", metadata={"help": "Proxy normaliser of Eq. 3-4: auto (exp for LEEP), exp, minmax, rank."}
    )
    proxy_config: ProxyConfig = field(default_factory=ProxyConfig,
                                      metadata={"help": "Batch size, samples, device... of the proxy scorer."})
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig,
                                         metadata={"help": "How models are clustered by their benchmark scores."})
    policy: str = field(
        default="fine-selection",
        metadata={"help": f"Phase 2: one of {', '.join(POLICY_NAMES)}."},
    )
    variant: str = field(default=DEFAULT_VARIANT,
                         metadata={"help": f"Fine selection: one of {', '.join(VARIANTS)} (docs/method.md)."})
    threshold: float | None = field(default=None, metadata={"help": "Fine selection's pruning threshold."})
    stage_steps: int | None = field(
        default=None, metadata={"help": f"Steps of the first stage (default: the budget / {STAGES_PER_BUDGET})."}
    )
    growth: float = field(default=1.0, metadata={"help": "Each stage is this many times longer than the last."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})
    allow_pickle: bool = field(
        default=False, metadata={"help": "Consider repositories whose only weights are pickles (.bin/.pth)."}
    )


@dataclass
class RepoEntry:
    """One listed model and what became of it."""

    model: str
    status: str  # "warm" (in the matrix) | "cold" (not in it) | "skipped"
    reason: str = ""
    downloads: int | None = None
    parameters: int | None = None
    sha: str | None = None


@dataclass
class RecallOutcome:
    """Phase 1's answer, with the bookkeeping that makes its cost visible."""

    recalled: list[str]
    scores: dict[str, float]
    scored: dict[str, ProxyResult]
    cold_scored: list[str]
    skipped: dict[str, str]
    note: str
    seconds: float
    prior: dict[str, float] = field(default_factory=dict)  # robust recall: each matrix model's standardised prior
    benchmark_weights: dict[str, float] = field(default_factory=dict)  # target-aware recall: each benchmark's weight

    def candidates(self) -> list[dict]:
        """One row per ranked or skipped model: where it came from, its prior, its proxy score and what that cost."""
        recalled = set(self.recalled)
        rows = []
        for model, score in self.scores.items():
            result = self.scored.get(model)
            rows.append({"model": model, "origin": "cold" if model in self.cold_scored else "matrix",
                         "prior": self.prior.get(model), "proxy": None if result is None else result.score,
                         "proxy_seconds": None if result is None else round(result.seconds, 3),
                         "recall_score": score, "recalled": model in recalled})
        for model, reason in self.skipped.items():
            rows.append({"model": model, "origin": "cold" if model not in self.prior else "matrix", "prior": None,
                         "proxy": None, "proxy_seconds": None, "recall_score": None, "recalled": False,
                         "skipped": reason})
        return rows

    def to_dict(self) -> dict:
        return {"recalled": self.recalled, "scores": self.scores,
                "scored": {m: r.to_dict() for m, r in self.scored.items()}, "cold_scored": self.cold_scored,
                "skipped": self.skipped, "note": self.note, "seconds": round(self.seconds, 3),
                "candidates": self.candidates(),
                **({"benchmark_weights": self.benchmark_weights} if self.benchmark_weights else {})}


def resolve_matrix(matrix: PerformanceMatrix | str | os.PathLike | None, *, task: str | None = None,
                   revision: str | None = None, token: str | bool | None = None) -> PerformanceMatrix:
    """A matrix object as is; None: the packaged matrix of ``task``; an existing local records file; otherwise a Hub
    dataset id."""
    if isinstance(matrix, PerformanceMatrix):
        return matrix
    if matrix is None:
        if task is None:
            raise SelectionError("no matrix given and no task to take the packaged one of: pass task= (one of "
                                 "image-classification, text-classification) or matrix=")
        return PerformanceMatrix.default(check_task(task))
    path = Path(matrix)
    if path.is_file():
        return PerformanceMatrix.read(path)
    text = str(matrix)
    if path.suffix in (".csv", ".parquet") or text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise SelectionError(f"matrix file {matrix} does not exist (a Hub matrix is named 'namespace/name')")
    from hf_twophase.hub.client import load_matrix

    return load_matrix(str(matrix), revision=revision, token=token)


def _weights_problem(info, allow_pickle: bool) -> str | None:
    files = [s.rfilename for s in (info.siblings or [])]
    if not files:
        return None  # the listing did not say; loading will tell
    if any(f.endswith(".safetensors") for f in files):
        return None
    if any(f.endswith(_PICKLE_SUFFIXES) for f in files):
        return None if allow_pickle else "only pickled weights (.bin/.pth); pass allow_pickle=True to consider it"
    return "no weights in the repository"


class _ProxyScores:
    """The proxy scores of one recall, and why each model that could not be scored was skipped."""

    def __init__(self, scorer, dataset, columns: Columns, proxy_name: str):
        self.scorer, self.dataset, self.columns, self.proxy_name = scorer, dataset, columns, proxy_name
        self.scored: dict[str, ProxyResult] = {}
        self.skipped: dict[str, str] = {}

    def score(self, model: str) -> bool:
        """Score ``model`` once; False (and the reason kept) when it cannot be loaded or scores non-finite."""
        if model in self.scored:
            return True
        try:
            result = self.scorer.score(model, self.dataset, columns=self.columns)
        except HFTwoPhaseError as err:  # load errors, gated, vanished: recorded, the rest goes on
            self.skipped[model] = str(err)
            return False
        except (OSError, ValueError, RuntimeError) as err:
            self.skipped[model] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            return False
        if not math.isfinite(result.score) or not all(map(math.isfinite, (result.terms or {}).values())):
            self.skipped[model] = f"non-finite {self.proxy_name} score"
            return False
        self.scored[model] = result
        return True

    def values(self) -> dict[str, float]:
        """Every scored model's proxy score, read once the set is scored: a set score (NCTI) ranks them together."""
        return combine_proxy_scores(self.scored)

    def results(self) -> dict[str, ProxyResult]:
        """The scored results as reported: a set score's ``score`` is its value among everything scored."""
        values = self.values()
        return {m: r if r.terms is None else dataclasses.replace(r, score=values[m]) for m, r in self.scored.items()}


class RepoSelector:
    """Select and fine-tune the best model of a repository for a classification dataset.

    >>> selector = RepoSelector.from_hub(task="text-classification", matrix="my-org/perf-matrix")
    >>> result = selector.select(train, validation, TrainingArguments("out", max_steps=500))
    >>> result.model, result.report.to_markdown()
    """

    def __init__(self, entries: Sequence[RepoEntry], matrix: PerformanceMatrix, *, task: str | None = None,
                 config: SelectorConfig | None = None, **overrides: Any):
        if task is not None:
            check_task(task)
        self.task = task
        self.matrix = matrix
        self.entries = list(entries)
        self.config = dataclasses.replace(config or SelectorConfig(), **overrides)
        if self.config.proxy not in PROXY_METHODS:
            raise SelectionError(f"unknown proxy {self.config.proxy!r}; expected one of {', '.join(PROXY_METHODS)}")
        if not self.warm and (self.config.cold_budget <= 0 or not self.cold):
            listed = [e.model for e in self.entries if e.status != "skipped"]
            raise SelectionError(
                f"the matrix ({len(matrix.models)} models) covers none of the {len(listed)} candidate(s)"
                f"{': ' + ', '.join(listed[:5]) if listed else ''}{' ...' if len(listed) > 5 else ''}; use a matrix "
                "that knows some of them, or pass cold_budget=N to score up to N of them directly")

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_hub(
        cls,
        task: str,
        matrix: PerformanceMatrix | str | os.PathLike | None = None,
        *,
        limit: int = 100,
        library: str | None = None,
        language: str | None = None,
        license: str | None = None,
        max_parameters: int | None = None,
        search: str | None = None,
        author: str | None = None,
        matrix_revision: str | None = None,
        token: str | bool | None = None,
        config: SelectorConfig | None = None,
        **overrides: Any,
    ) -> RepoSelector:
        """The Hub's most downloaded ``task`` models (filtered), joined with ``matrix`` (a Hub dataset id, a local
        records file or a ``PerformanceMatrix``; default: the packaged matrix of ``task``). Private and gated
        repositories, and those without usable weights, are listed as skipped with their reason."""
        from huggingface_hub import HfApi

        from hf_twophase.hub.client import check_reachable, hub_errors

        check_task(task)
        if limit < 1:
            raise SelectionError(f"limit must be >= 1, got {limit}")
        perf = resolve_matrix(matrix, task=task, revision=matrix_revision, token=token)
        cfg = dataclasses.replace(config or SelectorConfig(), **overrides)
        tags = [t for t in (library, language, f"license:{license}" if license else None) if t]
        check_reachable(f"the list of {task} models")
        with hub_errors(f"the list of {task} models"):
            infos = list(HfApi(token=token).list_models(
                pipeline_tag=task, sort="downloads", limit=limit, filter=tags or None, search=search, author=author,
                expand=["downloads", "private", "gated", "disabled", "siblings", "safetensors", "sha"]))
        if not infos:
            from hf_twophase.hub.client import endpoint

            filters = ", ".join(f"{k}={v!r}" for k, v in (("filter", tags), ("search", search), ("author", author))
                                if v)
            raise SelectionError(f"the Hub at HF_ENDPOINT={endpoint()} lists no model with pipeline_tag {task}"
                                 f"{' and ' + filters if filters else ''}; a model is listed for a task when its card "
                                 f"says `pipeline_tag: {task}`, or pass the models yourself (from_models)")
        known = set(perf.models)
        entries = []
        for info in infos:
            params = getattr(getattr(info, "safetensors", None), "total", None)
            entry = RepoEntry(model=info.id, status="warm" if info.id in known else "cold",
                              downloads=getattr(info, "downloads", None), parameters=params, sha=info.sha)
            problem = None
            if getattr(info, "private", False):
                problem = "private repository"
            elif getattr(info, "gated", False):
                problem = f"gated repository ({info.gated}): accept its conditions on the Hub to consider it"
            elif getattr(info, "disabled", False):
                problem = "disabled repository"
            elif max_parameters is not None and params is not None and params > max_parameters:
                problem = f"{params:,} parameters > max_parameters={max_parameters:,}"
            else:
                problem = _weights_problem(info, cfg.allow_pickle)
            if problem:
                entry.status, entry.reason = "skipped", problem
            entries.append(entry)
        return cls(entries, perf, task=task, config=cfg)

    @classmethod
    def from_models(cls, models: Iterable[str], matrix: PerformanceMatrix | str | os.PathLike | None = None, *,
                    task: str | None = None, matrix_revision: str | None = None, token: str | bool | None = None,
                    config: SelectorConfig | None = None, **overrides: Any) -> RepoSelector:
        """A given list of Hub ids, local paths or ``packaged:`` names, joined with ``matrix`` (default: the packaged
        matrix of ``task``)."""
        perf = resolve_matrix(matrix, task=task, revision=matrix_revision, token=token)
        known = set(perf.models)
        names = list(dict.fromkeys(str(m) for m in models))
        if not names:
            raise SelectionError("no models given")
        entries = [RepoEntry(model=m, status="warm" if m in known else "cold") for m in names]
        return cls(entries, perf, task=task, config=config, **overrides)

    # ---------------------------------------------------------------- views
    @property
    def warm(self) -> list[str]:
        return [e.model for e in self.entries if e.status == "warm"]

    @property
    def cold(self) -> list[str]:
        return [e.model for e in self.entries if e.status == "cold"]

    @property
    def skipped(self) -> dict[str, str]:
        return {e.model: e.reason for e in self.entries if e.status == "skipped"}

    def __repr__(self) -> str:
        return (f"RepoSelector(task={self.task!r}, warm={len(self.warm)}, cold={len(self.cold)}, "
                f"skipped={len(self.skipped)}, matrix={self.matrix!r})")

    def _usable(self) -> int:
        return len(self.warm) + min(len(self.cold), max(0, self.config.cold_budget))

    def default_k(self) -> int:
        """The configured K, else the paper's 10 capped at what the selector can rank."""
        return self.config.k if self.config.k is not None else max(1, min(DEFAULT_K, self._usable()))

    def check_k(self, k: int) -> None:
        """K must be >= 1 and no larger than the models the selector can rank."""
        usable = self._usable()
        if k < 1 or k > usable:
            raise SelectionError(f"k={k} but the selector can rank {usable} model(s) ({len(self.warm)} in the matrix"
                                 f", {min(len(self.cold), self.config.cold_budget)} cold to score); choose "
                                 f"1 <= k <= {usable}")

    # ---------------------------------------------------------------- phase 1
    def _scorer(self):
        return make_scorer(self.config.proxy, dataclasses.replace(
            self.config.proxy_config, trust_remote_code=self.config.trust_remote_code,
            allow_pickle=self.config.allow_pickle))

    def recall(self, dataset, k: int | None = None, *, scorer=None, columns: Columns | None = None,
               **column_names: str | None) -> RecallOutcome:
        """Phase 1 on ``dataset`` (a labelled ``datasets.Dataset``): rank the matrix's models (robust prior, or the
        paper's Eq. 2-4), proxy-score up to ``cold_budget`` cold models, the most downloaded first, and rank them with
        the rest; recall the top ``k``. A model that cannot be loaded or scored is skipped with its reason."""
        k = self.default_k() if k is None else k
        self.check_k(k)
        dataset, _ = encode_string_labels(dataset, None, column_names.get("label_column"))  # class names, as the CLI
        columns = columns or detect_columns(dataset, **column_names)  # no labels: it fails here, before any download
        start = time.perf_counter()
        proxy = _ProxyScores(scorer or self._scorer(), dataset, columns, self.config.proxy)
        cold_scored = [m for m in self.cold[:max(0, self.config.cold_budget)] if proxy.score(m)]
        weights: dict[str, float] = {}
        if self.config.recall.variant == "paper":
            ranking, prior, note = self._recall_paper(proxy, k, cold_scored)
        else:
            ranking, prior, note, weights = self._recall_robust(proxy, k, cold_scored)
        if not ranking:
            raise SelectionError("no candidate could be scored: " + "; ".join(f"{m}: {r}"
                                                                               for m, r in proxy.skipped.items()))
        order = sorted(ranking, key=lambda m: -ranking[m])  # stable: ties keep the recall's own order
        return RecallOutcome(recalled=order[:k], scores={m: ranking[m] for m in order}, scored=proxy.results(),
                             cold_scored=cold_scored, skipped=proxy.skipped, note=note.lstrip("; "),
                             seconds=time.perf_counter() - start, prior=prior, benchmark_weights=weights)

    def _recall_robust(self, proxy: _ProxyScores, k: int, cold_scored: list[str]):
        """Robust prior over the warm models; the shortlist is proxy-scored when the weight asks for it, or when cold
        models need warm scores to be read against."""
        from hf_twophase.method.recall import robust_recall

        result = self._recall_warm(proxy, k, cold_scored=cold_scored)
        if result is None:
            values = proxy.values()
            result = robust_recall([], [], {}, max(1, len(cold_scored)), self.config.recall,
                                   cold_proxy={m: values[m] for m in cold_scored})
        return result.scores, result.prior, result.note, result.benchmark_weights

    def _recall_paper(self, proxy: _ProxyScores, k: int, cold_scored: list[str]):
        """Eq. 2-4 over the warm models; cold models are ranked with the median warm model's mean score as prior."""
        normaliser = normaliser_for(self.config.normaliser, self.config.proxy)
        result = self._recall_warm(proxy, k, normaliser=normaliser)
        ranking, note = (dict(result.scores), result.note) if result else ({}, "")
        if cold_scored:
            values = proxy.values()
            representatives = [m for m in proxy.scored if m not in cold_scored]
            ranking.update(rank_cold(
                self.matrix.final_scores().reindex(list(ranking)).to_numpy(dtype=float),
                [values[m] for m in representatives], {m: values[m] for m in cold_scored}, normaliser))
            note += (f"; {len(cold_scored)} cold model(s) scored directly and ranked with the median warm model's "
                     "benchmark score as their prior")
        return ranking, {}, note

    def _recall_warm(self, proxy: _ProxyScores, k: int, *, normaliser=None,
                     cold_scored: list[str] | None = None) -> RecallResult | None:
        """Phase 1 over the warm models, scoring what the variant asks for. A model that cannot be loaded could not
        be trained either: it leaves the repository and the recall is done again without it (another member then
        represents its cluster, or the next best prior is shortlisted). None when no warm model is left."""
        from hf_twophase.method.phase1 import Phase1

        warm = list(self.warm)
        while warm:
            phase1 = Phase1.from_matrix(self.matrix, candidates=warm, config=self.config.clustering,
                                        recall=self.config.recall)
            needed = phase1.to_score(min(k, len(warm)), calibrate=bool(cold_scored))
            failed = [m for m in needed if not proxy.score(m)]
            if not failed:
                values = proxy.values()  # now that everything this recall reads is scored
                return phase1.recall({m: values[m] for m in needed},
                                     k=min(k, len(phase1.clustering.models)), normaliser=normaliser,
                                     cold_proxy=None if cold_scored is None else {m: values[m] for m in cold_scored})
            warm = [m for m in warm if m not in failed]
        return None

    # ---------------------------------------------------------------- phase 2
    def select(self, train_dataset, eval_dataset, training_args, *, k: int | None = None,
               recall: RecallOutcome | None = None, resume: bool = False, config: SelectionConfig | None = None,
               columns: Columns | None = None, backend: str | None = None):
        """Recall on ``train_dataset`` (unless ``recall`` is given), then fine-select among the recalled models with
        real Trainers; returns the coordinator's ``SelectionResult`` (trained winner, report, files). ``config``
        says how phase 2 runs (its stage schedule, trust and pickle settings come from this selector's config);
        ``backend="ray"`` is short for ``config.backend``: the candidates side by side as Ray Tune trials.
        ``columns``, when the caller detected them already, are used as they are."""
        from hf_twophase.method.live_policy import NO_CURVES, has_benchmark_curves, live_policy
        from hf_twophase.trainer.coordinator import SelectionCoordinator, budget_of
        from hf_twophase.trainer.report import CandidateReport

        config = config or SelectionConfig()
        if backend is not None:
            config = dataclasses.replace(config, backend=backend)
        # class-name labels are encoded once, here, so that phase 1 and every candidate see the same class ids
        train_dataset, eval_dataset = encode_string_labels(train_dataset, eval_dataset, config.label_column)
        columns = columns or split_columns(train_dataset, eval_dataset, **config.column_names())
        budget = budget_of(training_args, len(train_dataset))
        if recall is None:
            recall = self.recall(train_dataset, k, columns=columns)
        stage = self.config.stage_steps or default_stage(budget)
        if self.config.policy == "fine-selection" and not has_benchmark_curves(self.matrix, recall.recalled):
            logger.warning("%s: the matrix (%s) holds no learning curve of the recalled models, so fine selection "
                           "runs as successive halving", NO_CURVES, self.matrix.source)
        policy = live_policy(self.config.policy, budget=budget, stage_steps=stage, growth=self.config.growth,
                             matrix=self.matrix, candidates=recall.recalled, variant=self.config.variant,
                             threshold=self.config.threshold)
        config = dataclasses.replace(config, stage_steps=stage, growth=self.config.growth,
                                     trust_remote_code=self.config.trust_remote_code,
                                     allow_pickle=self.config.allow_pickle)
        recalled = set(recall.recalled)

        def add_phase1(report) -> None:
            for model, score in recall.scores.items():
                if model not in recalled:
                    status = "cold" if model in recall.cold_scored else "warm"
                    report.candidates.append(CandidateReport(
                        name=model, status="not-recalled", reason=f"phase 1 recall score {score:.4f} below the top "
                                                                  f"{len(recalled)} ({status})"))
            for model, reason in {**self.skipped, **recall.skipped}.items():
                report.candidates.append(CandidateReport(name=model, status="skipped", reason=reason))
            report.extra["phase1"] = {"task": self.task, "considered": len(self.entries), "in_matrix": len(self.warm),
                                      "cold": len(self.cold), "recall": dataclasses.asdict(self.config.recall),
                                      **recall.to_dict()}
            report.extra["matrix"] = {"source": self.matrix.source, "provenance": self.matrix.provenance}

        coordinator = SelectionCoordinator(recall.recalled, train_dataset, eval_dataset, training_args, config,
                                           policy=policy, columns=columns, on_report=add_phase1)
        result = coordinator.run(resume=resume)
        return result

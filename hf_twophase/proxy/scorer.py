"""`LEEPScorer` and `LogMEScorer`: transferability of a checkpoint to a user's labelled dataset.

One pipeline serves both: columns are detected and checked first (a bad dataset fails before any model
is loaded), a stratified sample is drawn with a fixed seed, batches are encoded in DataLoader workers
with dynamic padding, and the model runs under `torch.inference_mode` (with bf16/fp16 autocast on a
GPU) on the device accelerate picks. Scores are cached on disk by model, revision or content hash,
dataset fingerprint, sample cap and seed, so a repeated recall costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_twophase.atomic import StateFileError, check_fields, read_state, write_json_atomic
from hf_twophase.cache import cache_root
from hf_twophase.inputs.columns import Columns, detect_columns, stratified_indices
from hf_twophase.proxy.feature_scores import FEATURE_SCORES, SET_SCORES
from hf_twophase.proxy.leep import LEEPAccumulator
from hf_twophase.proxy.models import (
    LoadedModel,
    ModelLoadError,
    encode_batch,
    forward_features,
    forward_log_probs,
    image_prep,
    load_model,
    prepare_on_device,
)
from hf_twophase.proxy.models import n_source_labels as count_source_labels
from hf_twophase.proxy_names import PROXY_METHODS

logger = logging.getLogger(__name__)

PATHS = {"text-classifier": "classifier-head", "image-classifier": "classifier-head", "timm": "classifier-head",
         "masked-lm": "masked-lm-head"}


def default_cache_dir() -> Path:
    return cache_root() / "proxy_scores"


@dataclass
class ProxyConfig:
    """How a proxy score is computed. Every field changes speed or memory, never the formula."""

    batch_size: int = field(default=64, metadata={"help": "Samples per forward pass."})
    max_samples: int | None = field(
        default=2000, metadata={"help": "Score at most this many samples (stratified by label); None = all."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the stratified sample."})
    max_length: int = field(default=256, metadata={"help": "Text: tokens kept per example."})
    num_workers: int | None = field(
        default=None, metadata={"help": "DataLoader workers encoding batches (default: 0 on CPU, cores - 1 on GPU)."}
    )
    device: str | None = field(default=None, metadata={"help": "Device (default: the one accelerate picks)."})
    device_preprocess: str = field(
        default="auto",
        metadata={"help": "Resize and normalise same-size images on the accelerator ('auto': on CUDA), 'yes', 'no'."},
    )
    mixed_precision: str = field(
        default="auto", metadata={"help": "'auto' (bf16 on a GPU that has it, else fp16), 'bf16', 'fp16', 'no'."}
    )
    store_limit_mb: int = field(
        default=512,
        metadata={"help": "LEEP keeps source log-probabilities in memory up to this size, else runs two passes."},
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Score cache folder (default ~/.cache/hf_twophase/proxy_scores)."}
    )
    use_cache: bool = field(default=True, metadata={"help": "Read and write the score cache."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})
    allow_pickle: bool = field(default=False, metadata={"help": "Allow pickled (.bin/.pth) weights."})
    fallback: bool = field(
        default=True, metadata={"help": "LEEP on a checkpoint without a head falls back to LogME on features."}
    )


@dataclass
class ProxyResult:
    """A proxy score and everything needed to trust and reuse it."""

    model: str
    method: str
    score: float
    normalized: float | None
    n_samples: int
    path: str
    source_labels: str
    n_source_labels: int | None
    seconds: float
    cached: bool = False
    terms: dict[str, float] | None = None  # a set score's per-model terms (NCTI); ``score`` is then provisional

    @property
    def samples_per_second(self) -> float:
        return self.n_samples / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict:
        return asdict(self)


_CACHED_RESULT = {"model": str, "method": str, "score": float, "normalized?": float, "n_samples": int, "path": str,
                  "source_labels": str, "n_source_labels?": int, "seconds": float, "terms?": dict}
_CACHED_RESULT_NAMES = [name.rstrip("?") for name in _CACHED_RESULT]


class _Batches(torch.utils.data.Dataset):
    """Map-style view whose items are whole encoded batches, so DataLoader workers do the encoding."""

    def __init__(self, dataset, batches: list[np.ndarray], loaded: LoadedModel, columns: Columns, max_length: int,
                 raw_images: bool):
        self.dataset, self.batches, self.loaded, self.columns, self.max_length, self.raw_images = (
            dataset, batches, loaded, columns, max_length, raw_images)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        idx = self.batches[i]
        rows = self.dataset[idx.tolist()]
        inputs = encode_batch(self.loaded, rows, self.columns, max_length=self.max_length, raw_images=self.raw_images)
        return inputs, torch.as_tensor(
            np.asarray(rows[self.columns.label]), dtype=torch.long)


def _hash_files(path: Path) -> str:
    digest = hashlib.sha256()
    files = [p for p in sorted(path.rglob("*")) if p.is_file()] if path.is_dir() else [path]
    for p in files:
        if p.suffix in (".json", ".safetensors", ".bin", ".pth", ".pt", ".txt", ".model"):
            digest.update(p.name.encode())
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()[:16]


def _model_key(model: Any, loaded: LoadedModel | None, revision: str | None) -> str | None:
    """Identity of a checkpoint for the cache: Hub id + revision, or a content hash of local files/weights."""
    if isinstance(model, torch.nn.Module):
        digest = hashlib.sha256()
        for name, tensor in model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return f"module:{type(model).__name__}:{digest.hexdigest()[:16]}"
    spec = str(model)
    if spec.startswith("packaged:"):
        return f"{spec}:v1"  # pinned pip-package weights; random ones are seeded
    local = Path(spec.removeprefix("local-dir:"))
    if local.exists():
        return f"local:{local.resolve()}:{_hash_files(local)}"
    if revision:
        return f"hub:{spec}@{revision}"
    commit = getattr(getattr(loaded.model, "config", None), "_commit_hash", None) if loaded else None
    return f"hub:{spec}@{commit}" if commit else None


class _ProxyScorer:
    method = "proxy"

    def __init__(self, config: ProxyConfig | None = None, **overrides):
        import dataclasses

        unknown = set(overrides) - {f.name for f in dataclasses.fields(ProxyConfig)}
        if unknown:
            raise TypeError(f"unknown ProxyConfig field(s): {', '.join(sorted(unknown))}")
        self.config = dataclasses.replace(config or ProxyConfig(), **overrides)  # the caller's config stays as it was

    # ------------------------------------------------------------------ public
    def score(
        self,
        model: str | Path | torch.nn.Module,
        dataset,
        *,
        label_column: str | None = None,
        text_column: str | None = None,
        text_pair_column: str | None = None,
        image_column: str | None = None,
        tokenizer: Any = None,
        image_processor: Any = None,
        revision: str | None = None,
        columns: Columns | None = None,
    ) -> ProxyResult:
        """Score `model` on `dataset` (one `datasets.Dataset` split); ``columns``, when the caller detected them
        already, replace the column names."""
        cfg = self.config
        columns = columns or detect_columns(dataset, label_column=label_column, text_column=text_column,
                                            text_pair_column=text_pair_column, image_column=image_column)
        labels = np.asarray(dataset[columns.label])
        index = stratified_indices(labels, cfg.max_samples, cfg.seed)
        key_parts = None
        if cfg.use_cache and not isinstance(model, torch.nn.Module):
            pre_key = _model_key(model, None, revision)
            if pre_key:
                key_parts = self._key_parts(pre_key, dataset, columns)
                hit = self._cache_get(key_parts)
                if hit:
                    return hit
        loaded = self._load(model, columns, tokenizer=tokenizer, image_processor=image_processor, revision=revision)
        if cfg.use_cache and key_parts is None:
            mkey = _model_key(model, loaded, revision)
            key_parts = self._key_parts(mkey, dataset, columns) if mkey else None
            hit = self._cache_get(key_parts) if key_parts else None
            if hit:
                return hit
        start = time.perf_counter()
        result = self._run(loaded, dataset, columns, index)
        result.seconds = time.perf_counter() - start
        if key_parts:
            self._cache_put(key_parts, result)
        return result

    def features(self, model: str | Path | torch.nn.Module, dataset, *, columns: Columns | None = None,
                 revision: str | None = None, **column_names: str | None) -> tuple[np.ndarray, np.ndarray]:
        """The pooled features of the rows ``score`` samples, and their labels: one forward pass to score a model
        several ways (every function of ``FEATURE_SCORES`` and ``SET_SCORES`` reads these). Never cached."""
        columns = columns or detect_columns(dataset, **column_names)
        index = stratified_indices(np.asarray(dataset[columns.label]), self.config.max_samples, self.config.seed)
        return self._features(self._load(model, columns, revision=revision), dataset, columns, index)

    # ------------------------------------------------------------------ internals
    def _load(self, model, columns: Columns, *, tokenizer: Any = None, image_processor: Any = None,
              revision: str | None = None) -> LoadedModel:
        cfg = self.config
        loaded = load_model(model, tokenizer=tokenizer, image_processor=image_processor, revision=revision,
                            trust_remote_code=cfg.trust_remote_code, allow_pickle=cfg.allow_pickle)
        if loaded.modality != columns.modality:
            raise ModelLoadError(f"model '{loaded.name}' takes {loaded.modality} input but the dataset's input is "
                                 f"{columns.modality} (column '{columns.image or columns.text}')")
        return loaded

    def _run(self, loaded: LoadedModel, dataset, columns: Columns, index: np.ndarray) -> ProxyResult:
        raise NotImplementedError

    def _device(self) -> torch.device:
        if self.config.device:
            return torch.device(self.config.device)
        from accelerate import PartialState

        return PartialState().device

    def _autocast(self, device: torch.device):
        mode = self.config.mixed_precision
        if device.type != "cuda" or mode == "no":
            return nullcontext()
        if mode == "auto":
            mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return torch.autocast("cuda", dtype=torch.bfloat16 if mode == "bf16" else torch.float16)

    def _batches(self, loaded: LoadedModel, dataset, columns: Columns, index: np.ndarray):
        cfg = self.config
        order = index
        if columns.text:  # length-sorted batches: dynamic padding then pads little
            lengths = np.array([len(str(t)) for t in dataset.select(index.tolist())[columns.text]])
            order = index[np.argsort(lengths, kind="stable")]
        batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        if columns.image and type(dataset.features[columns.image]).__name__.startswith("Array"):
            # fixed-shape arrays: read them as numpy blocks, not nested Python lists
            dataset = dataset.with_format("numpy", columns=[columns.image, columns.label])
        device = self._device()
        # on a GPU, encoding must keep up with the model: one worker per spare core (forked workers tokenise
        # single-threaded); on a CPU the cores are the model's
        spare = max(1, min(12, (os.cpu_count() or 2) - 1))
        workers = cfg.num_workers if cfg.num_workers is not None else (spare if device.type == "cuda" else 0)
        self._prep = None
        if columns.image and (cfg.device_preprocess == "yes" or (cfg.device_preprocess == "auto"
                                                                  and device.type == "cuda")):
            self._prep = image_prep(loaded)
        loader = torch.utils.data.DataLoader(
            _Batches(dataset, batches, loaded, columns, cfg.max_length, raw_images=self._prep is not None),
            batch_size=None, shuffle=False, num_workers=workers, pin_memory=device.type == "cuda",
            persistent_workers=False)
        return loader, device

    def _iterate(self, loader, device, desc: str):
        from tqdm.auto import tqdm

        for inputs, labels in tqdm(loader, desc=desc, disable=not self.config.progress, leave=False):
            inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
            if "raw_images" in inputs:
                inputs = {"pixel_values": prepare_on_device(inputs.pop("raw_images"), self._prep)}
            yield inputs, labels.to(device, non_blocking=True)

    def _features(self, loaded, dataset, columns, index) -> tuple[np.ndarray, np.ndarray]:
        loader, device = self._batches(loaded, dataset, columns, index)
        loaded.model.to(device)
        feats, labels = [], []
        with torch.inference_mode(), self._autocast(device):
            for inputs, y in self._iterate(loader, device, f"features {loaded.name}"):
                feats.append(forward_features(loaded, inputs).cpu())
                labels.append(y)
        return torch.cat(feats).numpy(), torch.cat(labels).numpy()

    def _feature_result(self, loaded, dataset, columns, index, method: str = "logme") -> ProxyResult:
        features, labels = self._features(loaded, dataset, columns, index)
        terms = None
        if method in SET_SCORES:  # the score alone is its nearest-centre term until the set is combined
            terms = SET_SCORES[method].terms(features, labels).to_dict()
            score = terms["ncc"]
        else:
            score = FEATURE_SCORES[method](features, labels)
        return ProxyResult(model=loaded.name, method=method, score=score, terms=terms,
                           normalized=None, n_samples=len(labels), path="features", n_source_labels=None,
                           source_labels=f"none (pooled features, D={features.shape[1]})", seconds=0.0)

    def _key_parts(self, model_key: str, dataset, columns: Columns) -> dict:
        cfg = self.config
        return {"method": self.method, "model": model_key, "dataset": getattr(dataset, "_fingerprint", None),
                "columns": asdict(columns), "max_samples": cfg.max_samples, "seed": cfg.seed,
                "max_length": cfg.max_length, "fallback": cfg.fallback}

    def _cache_path(self, parts: dict) -> Path | None:
        if parts.get("dataset") is None:
            return None
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]
        return Path(self.config.cache_dir or default_cache_dir()) / f"{digest}.json"

    def _cache_get(self, parts: dict) -> ProxyResult | None:
        path = self._cache_path(parts)
        if path is None or not path.is_file():
            return None
        try:  # a damaged or foreign cache entry is recomputed, never trusted
            entry = read_state(path, {"key": dict, "result": dict}, what="proxy-score cache entry")
            result = check_fields(entry["result"], _CACHED_RESULT, path=path, what="proxy-score cache entry")
            if entry["key"] != json.loads(json.dumps(parts, sort_keys=True)):
                return None  # a hash collision, or an entry copied from elsewhere
            if not _terms_fit(self.method, result.get("terms")):
                logger.info("recomputing the proxy score: the cached terms of %s do not fit %s", path, self.method)
                return None
            return ProxyResult(**{k: result.get(k) for k in _CACHED_RESULT_NAMES}, cached=True)
        except StateFileError as exc:
            logger.info("recomputing the proxy score: %s", exc)
            return None

    def _cache_put(self, parts: dict, result: ProxyResult) -> None:
        path = self._cache_path(parts)
        if path is None:
            return
        write_json_atomic(path, {"key": parts, "result": result.to_dict()})


class LEEPScorer(_ProxyScorer):
    """LEEP of a checkpoint's own head on the user's labels; LogME on features when there is no head.

    Classifier heads (transformers or timm) give the source label distribution directly; a checkpoint
    with its masked-LM head gives the vocabulary distribution at a mask appended to the input; a bare
    encoder has no source labels, so with `fallback=True` it is scored with LogME and the result says so.
    """

    method = "leep"

    def _run(self, loaded, dataset, columns, index):
        if not loaded.has_head:
            if not self.config.fallback:
                raise ModelLoadError(f"model '{loaded.name}' has no classification or pre-training head, so LEEP "
                                     "is undefined; use LogMEScorer or fallback=True")
            return self._feature_result(loaded, dataset, columns, index)
        n_z = count_source_labels(loaded)
        loader, device = self._batches(loaded, dataset, columns, index)
        acc = LEEPAccumulator(columns.n_classes, n_z, device=device)  # bookkeeping stays on the accelerator
        loaded.model.to(device)
        keep = len(index) * n_z * 4 <= self.config.store_limit_mb * 2**20
        stored: list[tuple[torch.Tensor, torch.Tensor]] = []
        with torch.inference_mode(), self._autocast(device):
            for inputs, y in self._iterate(loader, device, f"LEEP {loaded.name}"):
                log_theta = forward_log_probs(loaded, inputs)
                acc.update_joint(log_theta, y)
                if keep:
                    stored.append((log_theta, y))
            if keep:
                for log_theta, y in stored:
                    acc.score(log_theta, y)
            else:  # the source label space is too large to keep per sample: recompute in a second pass
                for inputs, y in self._iterate(loader, device, f"LEEP {loaded.name} (pass 2)"):
                    acc.score(forward_log_probs(loaded, inputs), y)
        score = acc.result()
        what = "vocabulary tokens at a mask" if loaded.kind == "masked-lm" else "classes of the head"
        return ProxyResult(model=loaded.name, method="leep", score=score, normalized=math.exp(score),
                           n_samples=acc.n, path=PATHS[loaded.kind], n_source_labels=n_z,
                           source_labels=f"{n_z} {what}", seconds=0.0)


class FeatureScorer(_ProxyScorer):
    """A score of pooled penultimate features on the target's labels (``method``: one of ``FEATURE_SCORES``):
    needs no head, so it scores every kind of checkpoint."""

    def __init__(self, method: str = "logme", config: ProxyConfig | None = None, **overrides):
        if method not in FEATURE_SCORES and method not in SET_SCORES:
            names = ", ".join([*FEATURE_SCORES, *SET_SCORES])
            raise ValueError(f"unknown feature score {method!r}; expected one of {names}")
        super().__init__(config, **overrides)
        self.method = method

    def _run(self, loaded, dataset, columns, index):
        return self._feature_result(loaded, dataset, columns, index, self.method)


class LogMEScorer(FeatureScorer):
    """LogME on pooled penultimate features."""

    def __init__(self, config: ProxyConfig | None = None, **overrides):
        super().__init__("logme", config, **overrides)


def make_scorer(method: str, config: ProxyConfig | None = None, **overrides) -> _ProxyScorer:
    """The scorer of one of ``PROXY_METHODS``."""
    if method == "leep":
        return LEEPScorer(config, **overrides)
    if method in FEATURE_SCORES or method in SET_SCORES:
        return FeatureScorer(method, config, **overrides)
    raise ValueError(f"unknown proxy {method!r}; expected one of {', '.join(PROXY_METHODS)}")


def _terms_fit(method: str, terms: Any) -> bool:
    """A set score's cached terms are exactly its own, as finite numbers; other scores carry none."""
    if method not in SET_SCORES:
        return terms is None
    return (isinstance(terms, dict) and set(terms) == set(SET_SCORES[method].term_names)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    for v in terms.values()))


def combine_proxy_scores(results: Mapping[str, ProxyResult]) -> dict[str, float]:
    """Each model's proxy score among ``results``: its own score, or, for a set score (NCTI), the score its terms
    give it among the others' terms. Why here: a set score changes with the set, so it is read once the set is
    scored, never cached."""
    with_terms = {m: r for m, r in results.items() if r.terms is not None}
    combined: dict[str, float] = {}
    for method in {r.method for r in with_terms.values()}:
        combined.update(SET_SCORES[method].combine({m: r.terms for m, r in with_terms.items() if r.method == method}))
    return {m: combined.get(m, r.score) for m, r in results.items()}

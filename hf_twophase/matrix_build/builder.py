"""Build the performance matrix: fine-tune every model on every benchmark, record curves and final scores.

Each (model, benchmark) cell is trained by a plain `Trainer` with a standard recipe; a callback records
the validation metric at every evaluation and the seconds spent; the final test score is measured
after the last step. A finished cell is written atomically to its own file at once, so a crash loses at
most the cell in progress, a re-run skips every finished cell, and adding models later trains only the
new cells. A cell that fails (load error, NaN, out of memory) is written as failed, with its reason,
and the build goes on.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from transformers import TrainerCallback

from hf_twophase.atomic import StateFileError, read_state, write_json_atomic
from hf_twophase.errors import SelectionError
from hf_twophase.inputs.columns import detect_columns
from hf_twophase.matrix_build.benchmarks import BenchmarkSpec, get_benchmark
from hf_twophase.records.matrix import PerformanceMatrix
from hf_twophase.trainer.candidates import Candidate, accuracy, prepare, save_trained
from hf_twophase.trainer.distributed import has_accelerator, single_process_env


@dataclass
class BuildConfig:
    """The fine-tuning recipe of every matrix cell."""

    epochs: float = field(default=3.0, metadata={"help": "Training epochs over the benchmark's training subset."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate (linear decay)."})
    batch_size: int = field(default=16, metadata={"help": "Per-device training batch size."})
    evals_per_epoch: int = field(default=1, metadata={"help": "Validation evaluations (curve points) per epoch."})
    train_subset: int | None = field(default=None, metadata={"help": "Override every benchmark's training size."})
    eval_subset: int | None = field(default=None, metadata={"help": "Override every benchmark's eval size."})
    seed: int = field(default=0, metadata={"help": "Seed of data order, head init and subsets."})
    use_cpu: bool = field(default=False, metadata={"help": "Train on the CPU even when an accelerator exists."})
    image_size: int | None = field(
        default=None, metadata={"help": "Input resolution of timm models (default: each model's own)."})
    max_length: int = field(default=256, metadata={"help": "Longest tokenized text."})


class CurveRecorder(TrainerCallback):
    """Records (evaluation index, validation metric, seconds since the previous evaluation, optimizer step)."""

    def __init__(self, metric: str = "eval_accuracy"):
        self.metric = metric
        self.points: list[tuple[int, float, float, int]] = []
        self._last = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = time.perf_counter()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.metric is None:
            return
        now = time.perf_counter()
        value = float((metrics or {}).get(self.metric, math.nan))
        if self.points and self.points[-1][3] == state.global_step:
            return  # the same step evaluated twice: one curve point
        self.points.append((len(self.points) + 1, value, now - (self._last or now), state.global_step))
        self._last = time.perf_counter()  # evaluation time is not charged to the next step


def _cell_file(out: Path, model: str, benchmark: str) -> Path:
    key = hashlib.sha1(f"{model}\n{benchmark}".encode()).hexdigest()[:12]
    safe = f"{model}__{benchmark}".replace("/", "--")[:150]
    return out / "cells" / f"{safe}.{key}.json"


_CELL_HINT = "delete it to train that cell again"


def _read_cell(path: Path) -> dict:
    """A finished or failed cell, checked: a damaged one is one error naming the file, never a KeyError later."""
    cell = read_state(path, {"model": str, "benchmark": str, "status": str, "config?": dict, "rows?": list,
                             "reason?": str}, what="matrix cell", hint=_CELL_HINT)
    if cell["status"] not in ("done", "failed"):
        raise StateFileError(f"matrix cell {path} is damaged: 'status' should be 'done' or 'failed', found "
                             f"{cell['status'][:40]!r}; {_CELL_HINT}")
    if cell["status"] == "done" and not (isinstance(cell.get("rows"), list)
                                         and all(isinstance(r, dict) for r in cell["rows"])):
        raise StateFileError(f"matrix cell {path} is damaged: a finished cell's 'rows' should be a list of records; "
                             f"{_CELL_HINT}")
    return cell


def _cells_folder(out: Path) -> Path:
    folder = out / "cells"
    if folder.exists() and not folder.is_dir():
        raise SelectionError(f"{folder} should be the folder of matrix cells but is a file; move it away or choose "
                             "another output folder")
    return folder


def recipe(config: BuildConfig) -> dict:
    """The settings that decide what a cell holds (where it trains does not, so ``use_cpu`` is left out)."""
    out = asdict(config)
    out.pop("use_cpu", None)
    return out


def cells_to_train(grid: Sequence[tuple], out: Path, config: BuildConfig, *, overwrite: bool = False) -> list[tuple]:
    """The cells of ``grid`` (model, name, spec) that still need training. A finished cell trained with other
    settings is an error unless ``overwrite`` (then it is trained again): reusing it would silently mix recipes."""
    wanted = recipe(config)
    _cells_folder(out)
    todo, differing = [], {}
    for cell in grid:
        path = _cell_file(out, cell[1], cell[2].name)
        if not path.is_file():
            todo.append(cell)
            continue
        saved = _read_cell(path).get("config") or {}
        # a setting added after the cell was trained held its default then
        saved = {**recipe(BuildConfig()), **{k: v for k, v in saved.items() if k != "use_cpu"}}
        if saved != wanted:
            todo.append(cell)
            for key in sorted(set(saved) | set(wanted)):
                if saved.get(key) != wanted.get(key):
                    differing[key] = (saved.get(key), wanted.get(key))
    if differing and not overwrite:
        changed = sum(1 for cell in todo if _cell_file(out, cell[1], cell[2].name).is_file())
        what = "; ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in differing.items())
        raise SelectionError(f"{changed} finished cell(s) under {out} were trained with other settings ({what}); "
                             "pass overwrite=True (--overwrite) to train them again, or choose another output folder")
    return todo


def train_cell(model: str | Candidate, spec: BenchmarkSpec, config: BuildConfig, work: Path,
               save_to: Path | None = None) -> list[dict]:
    """Fine-tune one model on one benchmark; return its records (one per evaluation). With ``save_to``, also keep
    the fine-tuned model there (how derived models for a repository are made)."""
    from transformers import PrinterCallback, Trainer, TrainingArguments, set_seed

    set_seed(config.seed)  # before anything random is drawn: the new head, dropout, the data order
    candidate = Candidate.of(model)
    train, validation, test = spec.load(seed=config.seed)
    if config.train_subset:
        train = train.select(range(min(config.train_subset, len(train))))
    if config.eval_subset:
        validation = validation.select(range(min(config.eval_subset, len(validation))))
        test = test.select(range(min(config.eval_subset, len(test))))
    columns = detect_columns(train, label_column=spec.label, text_column=spec.text, text_pair_column=spec.text_pair,
                             image_column=spec.image)
    prepared = prepare(candidate, train, validation, columns, max_length=config.max_length,
                       image_size=config.image_size)
    steps_per_epoch = max(1, math.ceil(len(train) / config.batch_size))
    max_steps = max(1, round(config.epochs * steps_per_epoch))
    eval_every = max(1, steps_per_epoch // max(1, config.evals_per_epoch))
    args = TrainingArguments(
        output_dir=str(work), max_steps=max_steps, per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=max(config.batch_size, 64), learning_rate=config.learning_rate,
        eval_strategy="steps", eval_steps=eval_every, save_strategy="no", logging_steps=eval_every,
        report_to=[], seed=config.seed, use_cpu=config.use_cpu, disable_tqdm=True, remove_unused_columns=False,
        dataloader_pin_memory=not config.use_cpu and has_accelerator(),  # pinning without an accelerator only warns
    )
    recorder = CurveRecorder()
    trainer = Trainer(model=prepared.model, args=args, train_dataset=prepared.train_dataset,
                      eval_dataset=prepared.eval_dataset, data_collator=prepared.data_collator,
                      compute_metrics=accuracy, callbacks=[recorder])
    trainer.remove_callback(PrinterCallback)  # the recorder keeps what matters; raw log dicts are noise on stdout
    trainer.train()
    if not recorder.points or recorder.points[-1][3] != trainer.state.global_step:
        trainer.evaluate()  # the last step always has a curve point
    recorder.metric = None  # the test evaluation is not a curve point
    test_score = float(trainer.evaluate(prepared.encode(test), metric_key_prefix="test")["test_accuracy"])
    if any(math.isnan(v) for _, v, _, _ in recorder.points) or math.isnan(test_score):
        raise FloatingPointError("a validation or test score is NaN")
    rows = [{"model": candidate.name, "dataset": spec.name, "step": s, "val": v, "test": None, "cost": round(c, 4),
             "train_step": g} for s, v, c, g in recorder.points]
    rows[-1]["test"] = test_score
    if save_to is not None:
        save_trained(prepared, trainer, save_to, label_names=columns.class_names)
    return rows


def build_matrix(
    models: Sequence[str | Candidate],
    benchmarks: Sequence[str | BenchmarkSpec],
    out_dir: str | os.PathLike,
    config: BuildConfig | None = None,
    *,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    overwrite: bool = False,
) -> PerformanceMatrix:
    """Train every missing cell, then write `records.parquet` from every finished one (and return it).

    `shard=(i, n)` trains only the cells whose position in the models x benchmarks grid is i modulo n: n workers (one
    per GPU, or tasks on any scheduler) share one output folder, each cell file is written atomically by the one
    worker that owns it, and `collect` afterwards gathers them all. Finished cells are reused only if they were
    trained with the same settings (see `cells_to_train`)."""
    from tqdm.auto import tqdm

    config = config or BuildConfig()
    out = Path(out_dir)
    specs = [b if isinstance(b, BenchmarkSpec) else get_benchmark(b) for b in benchmarks]
    names = [Candidate.of(m).name for m in models]
    grid = [(m, n, s) for m, n in zip(models, names, strict=True) for s in specs]
    if shard is not None:
        index, count = shard
        if not 0 <= index < count:
            raise SelectionError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
        grid = [cell for position, cell in enumerate(grid) if position % count == index]
    todo = cells_to_train(grid, out, config, overwrite=overwrite)
    for model, name, spec in tqdm(todo, desc="matrix cells", disable=not progress):
        run_cell(model, name, spec, config, out)
    return collect(out)


def run_cell(model: str | Candidate, name: str, spec: BenchmarkSpec, config: BuildConfig, out: Path) -> str:
    """Train one cell and write its file atomically, done or failed with its reason (a failure never raises)."""
    out = Path(out)
    cell = _cell_file(out, name, spec.name)
    start = time.perf_counter()
    try:
        rows = train_cell(model, spec, config, out / "work" / cell.stem)
        record = {"model": name, "benchmark": spec.name, "status": "done", "rows": rows}
    except Exception as exc:  # noqa: BLE001 - one failed cell never stops the build
        record = {"model": name, "benchmark": spec.name, "status": "failed",
                  "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    record.update(seconds=round(time.perf_counter() - start, 3), config=asdict(config))
    write_json_atomic(cell, record)
    return record["status"]


def build_matrix_on_ray(
    models: Sequence[str | Candidate],
    benchmarks: Sequence[str | BenchmarkSpec],
    out_dir: str | os.PathLike,
    config: BuildConfig | None = None,
    *,
    gpus_per_cell: float | None = None,
    progress: bool = True,
    overwrite: bool = False,
    **init_kwargs,
) -> PerformanceMatrix:
    """The same cells as Ray tasks (``pip install hf-twophase[ray]``): one task per missing cell, each writing its
    cell file atomically into ``out_dir``, which must be storage every Ray node sees. Finished cells are skipped, so a
    re-run after a crash trains only what is missing. ``init_kwargs`` go to ``ray.init`` when Ray is not running yet
    (e.g. ``address="auto"`` to join a cluster)."""
    try:
        import ray
    except ImportError:
        raise SelectionError("building on Ray needs the optional extra: pip install 'hf-twophase[ray]'") from None
    from tqdm.auto import tqdm

    config = config or BuildConfig()
    out = Path(out_dir).resolve()
    specs = [b if isinstance(b, BenchmarkSpec) else get_benchmark(b) for b in benchmarks]
    names = [Candidate.of(m).name for m in models]
    todo = cells_to_train([(m, n, s) for m, n in zip(models, names, strict=True) for s in specs], out, config,
                          overwrite=overwrite)
    if todo:
        if not ray.is_initialized():
            ray.init(**{"include_dashboard": False, "log_to_driver": False, **init_kwargs})
        if gpus_per_cell is None:
            gpus_per_cell = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        task = ray.remote(num_gpus=gpus_per_cell, max_retries=0)(run_cell)
        pending = [task.remote(m, n, s, config, out) for m, n, s in todo]
        with tqdm(total=len(pending), desc="matrix cells (ray)", disable=not progress) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                ray.get(done)
                bar.update(len(done))
    return collect(out)


def run_workers(argv: Sequence[str], workers: int, *, gpus: int | None = None) -> list[int]:
    """Run `hf-twophase build-matrix ARGV --shard i/N` in N local processes, one GPU each when there are GPUs
    (CUDA_VISIBLE_DEVICES), and return their exit codes. Each worker resumes its own finished cells."""
    import subprocess
    import sys

    if workers < 1:
        raise SelectionError(f"workers must be >= 1, got {workers}")
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
    procs = []
    for i in range(workers):
        env = single_process_env()  # independent processes, outside any job that started this one
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        procs.append(subprocess.Popen([sys.executable, "-m", "hf_twophase", "build-matrix", *argv,
                                       "--shard", f"{i}/{workers}"], env=env))
    return [p.wait() for p in procs]


def collect(out_dir: str | os.PathLike) -> PerformanceMatrix:
    """Records of every finished cell under `out_dir`, written to `records.parquet` atomically."""
    out = Path(out_dir)
    rows, failed = [], []
    for f in sorted(_cells_folder(out).glob("*.json")):
        cell = _read_cell(f)
        if cell["status"] == "done":
            rows.extend(cell["rows"])
        else:
            failed.append({"model": cell["model"], "benchmark": cell["benchmark"], "reason": cell.get("reason")})
    write_json_atomic(out / "failed.json", failed, indent=2)
    if not rows:
        raise SelectionError(f"no matrix cell finished under {out}; {len(failed)} failed (see failed.json)")
    matrix = PerformanceMatrix(pd.DataFrame(rows), source=str(out / "records.parquet"))
    matrix.write(out / "records.parquet")
    return matrix

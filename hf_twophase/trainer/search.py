"""The checkpoint as a dimension of `Trainer.hyperparameter_search`, pruned by phase 2's `StageScheduler`.

    search = CheckpointSearch.from_selector(selector, train, validation)          # phase 1 recalls the checkpoints
    trainer = Trainer(model_init=search.model_init, data_collator=search.data_collator, args=args,
                      train_dataset=train, eval_dataset=validation, compute_metrics=accuracy)
    best = trainer.hyperparameter_search(**search.search_kwargs(trainer, backend="optuna", space=space))

Why this shape: the Trainer's search is a closed set of backends, but it passes its keyword arguments on to
``optuna.create_study`` and ``ray.tune.run``, calls ``model_init(trial)`` at the start of every trial, and lets
``hp_space`` return keys that are not training arguments. So the recalled checkpoints become one categorical dimension
of ``hp_space``, ``model_init`` builds the trial's checkpoint with a head sized to the labels, one collator encodes the
raw examples with whichever tokenizer or image processor that checkpoint needs (the Trainer holds one dataset), and
the pruning arrives as a backend argument: an Optuna pruner, or a Ray Tune scheduler, both driving the one
`StageScheduler` with the matrix's curves of each trial's checkpoint, as phase 2 does.

Optuna runs the Trainer's trials one after another, so a pruner that waited for a whole stage would wait for ever: it
runs the scheduler's asynchronous rule (a trial is judged against the trials that reached the same stage before it).
Ray Tune runs trials side by side and can pause them, so its scheduler runs synchronous stages.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from transformers import TrainerCallback

from hf_twophase.errors import SelectionError
from hf_twophase.inputs.columns import Columns, split_columns
from hf_twophase.method.scheduler import StageScheduler
from hf_twophase.trainer.candidates import Candidate, CandidateError, encode_texts, image_pixels, load_candidate
from hf_twophase.trainer.config import SelectionConfig
from hf_twophase.trainer.trials import CHECKPOINT, STEP_KEY, trial_name

logger = logging.getLogger(__name__)

SEARCH_BACKENDS = ("optuna", "ray")


class CheckpointCollator:
    """Encodes raw examples for the checkpoint the current trial trains: `CheckpointModels.model_init` switches it
    when it builds a trial's model, so one dataset serves candidates with different vocabularies and resolutions."""

    def __init__(self, columns: Columns, max_length: int = 256):
        self.columns, self.max_length = columns, max_length
        self._processing: Any = None
        self._kind: str | None = None

    def use(self, processing: Any, kind: str) -> None:
        """Encode with ``processing`` (a tokenizer, an image processor or a timm transform; ``kind`` says which)."""
        self._processing, self._kind = processing, kind

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        if self._processing is None:
            raise SelectionError("the collator encodes for the checkpoint that model_init built last, and none is "
                                 "built yet: pass model_init=search.model_init to the Trainer")
        c = self.columns
        needed = [name for name in (c.label, c.text, c.text_pair, c.image) if name]
        missing = [name for name in needed if name not in features[0]]
        if missing:
            raise SelectionError(f"the batch has no {', '.join(repr(m) for m in missing)} column: the collator needs "
                                 "the raw columns, so set TrainingArguments(remove_unused_columns=False) "
                                 "(search_kwargs(trainer) sets it)")
        labels = torch.as_tensor([int(f[c.label]) for f in features])
        batch = {name: [f[name] for f in features] for name in needed}
        if c.image:
            return {"pixel_values": image_pixels(self._processing, self._kind, batch[c.image]), "labels": labels}
        encoded = encode_texts(self._processing, c, batch, self.max_length, padding=True, return_tensors="pt")
        return {**encoded, "labels": labels}


class CheckpointModels:
    """What every trial needs, kept small because Ray copies it into each trial's worker: the checkpoints, how to
    load one, and the collator."""

    def __init__(self, checkpoints: Sequence[str], columns: Columns, config: SelectionConfig):
        self.checkpoints, self.columns, self.config = list(checkpoints), columns, config
        self.collator = CheckpointCollator(columns, config.max_length)

    def checkpoint_of(self, trial: Any) -> str:
        """The checkpoint a trial trains: an Optuna trial's parameter or a Ray trial's configuration; with no trial
        (the Trainer builds one model when it is created), the first checkpoint."""
        if trial is None:
            return self.checkpoints[0]
        if isinstance(trial, Mapping):
            params = trial
        elif hasattr(trial, "suggest_categorical"):  # the Trainer builds the model before it asks for hp_space
            params = {CHECKPOINT: trial.suggest_categorical(CHECKPOINT, self.checkpoints)}
        else:
            params = getattr(trial, "params", {})
        if CHECKPOINT not in params:
            raise SelectionError(f"the trial has no '{CHECKPOINT}' parameter: use search_kwargs(trainer, ...) (its "
                                 "hp_space adds the recalled checkpoints)")
        checkpoint = str(params[CHECKPOINT])
        if checkpoint not in self.checkpoints:
            raise SelectionError(f"checkpoint {checkpoint!r} is not one of the search's: "
                                 f"{', '.join(self.checkpoints)}")
        return checkpoint

    def model_init(self, trial: Any = None) -> torch.nn.Module:
        checkpoint = self.checkpoint_of(trial)
        module, processing, kind = load_candidate(
            Candidate.of(checkpoint), self.columns, trust_remote_code=self.config.trust_remote_code,
            allow_pickle=self.config.allow_pickle, image_size=self.config.image_size)
        self.collator.use(processing, kind)
        return module


class StageReportCallback(TrainerCallback):
    """Evaluate at every stage end, so that the search backend gets a report there whatever the user's
    ``eval_strategy``; under Ray also checkpoint there (a paused trial starts again from it). The step goes into
    the metrics for the Ray scheduler, which otherwise only counts reports."""

    def __init__(self, stage_ends: Sequence[int], budget: int, save: bool):
        self.stage_ends, self.budget, self.save = list(stage_ends), budget, save

    def on_train_begin(self, args, state, control, **kwargs):
        if state.max_steps != self.budget:
            raise SelectionError(f"this trial trains {state.max_steps} steps, but the search's stages were planned "
                                 f"for {self.budget}: keep max_steps (or num_train_epochs and the batch size) out of "
                                 "the searched space, or plan the search again")

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.stage_ends:
            control.should_evaluate = True
            control.should_save = control.should_save or self.save
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics is not None:
            metrics[STEP_KEY] = state.global_step  # after the Trainer has logged them: the user's logs stay clean
        return control


class MetricObjective:
    """A trial's objective: one metric (the Trainer's default adds every metric together), NaN once the weights
    diverged, so that no pruner keeps the trial and no backend picks it. Small: Ray copies it into every trial."""

    def __init__(self, metric: str):
        self.metric = metric

    def __call__(self, metrics: dict[str, float]) -> float:
        from hf_twophase.trainer.callback import stage_score

        shown = {k: v for k, v in metrics.items() if k != STEP_KEY}
        value, diverged = stage_score(shown, self.metric, True, int(metrics.get(STEP_KEY, 0)))
        if diverged:
            logger.warning("the trial's objective is NaN: %s", diverged)
        return value


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """What the driver knows of one trial: the backend's id and its hyper-parameters (the checkpoint among them)."""

    run_id: str
    hyperparameters: dict


class CheckpointSearch:
    """A search over pre-trained checkpoints (and the user's own hyper-parameters) with the Trainer's
    `hyperparameter_search`, pruned by phase 2's policy.

    Args:
        checkpoints: the checkpoints to search over (Hub ids, local paths, ``packaged:`` names), best first.
        train_dataset / eval_dataset: the user's raw splits (the ones the Trainer gets); their columns are detected
            once here.
        matrix: the performance matrix whose learning curves the policy reads for each trial's checkpoint.
        config: how trials are compared (metric, stage length, columns, trust and pickle settings).
        policy / variant / threshold: the pruning rule, as in phase 2 (`live_policy`); default: fine selection
            with a matrix, successive halving without one.
    """

    def __init__(self, checkpoints: Sequence[str], train_dataset, eval_dataset=None, *, matrix=None,
                 config: SelectionConfig | None = None, policy: str | None = None, variant: str = "calibrated",
                 threshold: float | None = None, columns: Columns | None = None):
        names = [str(c) for c in checkpoints]
        if not names:
            raise SelectionError("no checkpoints to search over")
        if len(set(names)) != len(names):
            raise SelectionError("the checkpoints must be unique")
        self.config = config or SelectionConfig()
        self.columns = columns or split_columns(train_dataset, eval_dataset if eval_dataset is not None
                                                else train_dataset, **self.config.column_names())
        self.models = CheckpointModels(names, self.columns, self.config)
        policy = policy or ("fine-selection" if matrix is not None else "successive-halving")
        self.matrix, self.policy_name, self.variant, self.threshold = matrix, policy, variant, threshold
        self.scheduler: StageScheduler | None = None
        self.trials: dict[str, TrialRecord] = {}  # the scheduler's name of each trial -> what it is
        self.recall = None  # phase 1's outcome, when the checkpoints come from `from_selector`
        self.objective = MetricObjective(self.config.metric)

    @classmethod
    def from_selector(cls, selector, train_dataset, eval_dataset=None, *, k: int | None = None, recall=None,
                      config: SelectionConfig | None = None) -> CheckpointSearch:
        """Phase 1 of ``selector`` (a `RepoSelector`) on ``train_dataset`` recalls the checkpoints; its matrix gives
        the policy its curves, and its settings (policy, stage length, trust, pickles) carry over."""
        config = config or SelectionConfig()
        columns = split_columns(train_dataset, eval_dataset if eval_dataset is not None else train_dataset,
                                **config.column_names())
        recall = recall or selector.recall(train_dataset, k, columns=columns)
        s = selector.config
        config = dataclasses.replace(config, stage_steps=config.stage_steps or s.stage_steps, growth=s.growth,
                                     trust_remote_code=s.trust_remote_code, allow_pickle=s.allow_pickle)
        search = cls(recall.recalled, train_dataset, eval_dataset, matrix=selector.matrix, config=config,
                     policy=s.policy, variant=s.variant, threshold=s.threshold, columns=columns)
        search.recall = recall
        return search

    # ---------------------------------------------------------------- what the Trainer is given
    @property
    def checkpoints(self) -> list[str]:
        return self.models.checkpoints

    @property
    def model_init(self) -> Callable[[Any], torch.nn.Module]:
        return self.models.model_init

    @property
    def data_collator(self) -> CheckpointCollator:
        return self.models.collator

    def hp_space(self, space: Mapping[str, Sequence] | Callable | None = None, *, backend: str = "optuna"):
        """The Trainer's ``hp_space``: the checkpoints as a categorical dimension beside ``space`` (a mapping of
        training-argument names to the values to try, or, with Optuna, your own ``hp_space(trial)``)."""
        _check_backend(backend)
        space = {} if space is None else space
        checkpoints = list(self.checkpoints)  # the functions hold the list only: Ray copies them into every trial
        if backend == "ray":
            from ray import tune

            grid = {k: tune.grid_search(list(v)) for k, v in _grid(space).items()}

            def ray_space(trial=None):
                return {**grid, CHECKPOINT: tune.grid_search(checkpoints)}

            return ray_space
        if callable(space):
            def optuna_space(trial):
                return {**space(trial), CHECKPOINT: trial.suggest_categorical(CHECKPOINT, checkpoints)}

            return optuna_space
        grid = _grid(space)

        def optuna_grid(trial):
            values = {k: trial.suggest_categorical(k, v) for k, v in grid.items()}
            return {**values, CHECKPOINT: trial.suggest_categorical(CHECKPOINT, checkpoints)}

        return optuna_grid

    def search_kwargs(self, trainer, *, backend: str = "optuna",
                      space: Mapping[str, Sequence] | Callable | None = None, n_trials: int | None = None,
                      seed: int | None = None, **backend_kwargs: Any) -> dict:
        """Everything ``trainer.hyperparameter_search`` needs: the space, the objective, the direction, the trial
        count and the pruning for ``backend``. With ``space`` a mapping of value lists, every combination of
        checkpoint and values is tried once (a grid; ``n_trials`` is its size); with your own Optuna ``hp_space``,
        ``n_trials`` trials are drawn. ``backend_kwargs`` go on to ``optuna.create_study`` / ``ray.tune.run``.

        The Trainer is prepared here: the raw columns must reach the collator (``remove_unused_columns=False``),
        and a callback evaluates every trial at the stage ends."""
        from hf_twophase.method.live_policy import live_policy
        from hf_twophase.method.registry import default_stage
        from hf_twophase.trainer.coordinator import budget_of

        _check_backend(backend)
        if getattr(trainer, "model_init", None) is None:
            raise SelectionError("the Trainer needs model_init=search.model_init: every trial builds its own model")
        if callable(space) and backend == "ray":
            raise SelectionError("with Ray, give space as a mapping of value lists; an hp_space(trial) function is "
                                 "Optuna's")
        if callable(space) and n_trials is None:
            raise SelectionError("with your own hp_space function, say how many trials to draw: n_trials=N")
        grid_size = len(self.checkpoints) * math.prod(len(v) for v in _grid(space).values()) \
            if not callable(space) else None
        if grid_size is not None and n_trials is not None and n_trials != grid_size:
            raise SelectionError(f"space is a grid of {grid_size} trials ({len(self.checkpoints)} checkpoints x the "
                                 f"values given); n_trials={n_trials} would not try each combination once. Leave "
                                 "n_trials out, or pass your own hp_space function to draw trials")
        n_trials = grid_size if grid_size is not None else int(n_trials)
        if n_trials < 1:
            raise SelectionError(f"n_trials must be >= 1, got {n_trials}")
        if backend == "ray":
            # a Trainer that stopped mid-epoch earlier in this process (any max_steps run) leaves its dataloader
            # registered in accelerate's shared GradientState, as a weak reference that Ray cannot copy into the
            # trials with the Trainer; no dataloader is being iterated now
            trainer.accelerator.gradient_state.dataloader_references = [None]
        if trainer.args.remove_unused_columns:
            logger.info("remove_unused_columns set to False: the collator encodes the raw columns for each trial's "
                        "checkpoint")
            trainer.args.remove_unused_columns = False
        budget = budget_of(trainer.args, len(trainer.train_dataset))
        stage = self.config.stage_steps or default_stage(budget)
        policy = live_policy(self.policy_name, budget=budget, stage_steps=stage, growth=self.config.growth,
                             matrix=self.matrix, candidates=self.checkpoints, variant=self.variant,
                             threshold=self.threshold, curves_of=self.checkpoint_of_trial)
        # Ray's trials are all known before any runs: a stage barrier; Optuna's come one by one, enrolled as they do
        names = [trial_name(i) for i in range(n_trials)] if backend == "ray" else []
        self.scheduler = StageScheduler(policy, names, budget, mode="sync" if backend == "ray" else "async")
        self.trials = {}
        for old in [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, StageReportCallback)]:
            trainer.remove_callback(old)
        trainer.add_callback(StageReportCallback(self.scheduler.stage_ends, budget, save=backend == "ray"))
        kwargs: dict[str, Any] = {"hp_space": self.hp_space(space, backend=backend), "backend": backend,
                                  "compute_objective": self.objective, "n_trials": n_trials,
                                  "direction": "maximize" if self.config.greater_is_better else "minimize"}
        if backend == "optuna":
            from hf_twophase.trainer.optuna_pruner import StagePruner, grid_sampler

            kwargs["pruner"] = StagePruner(self.scheduler, greater_is_better=self.config.greater_is_better,
                                           on_trial=self.enroll)
            if grid_size is not None and "sampler" not in backend_kwargs:
                kwargs["sampler"] = grid_sampler({**_grid(space), CHECKPOINT: self.checkpoints}, seed)
            kwargs["catch"] = (*backend_kwargs.pop("catch", ()), CandidateError)  # a checkpoint that cannot load
        else:
            from hf_twophase.trainer.ray_engine import SearchTrialScheduler, require_ray

            require_ray()
            kwargs["scheduler"] = SearchTrialScheduler(self)
            kwargs["n_trials"] = 1  # Ray's num_samples: the grid in hp_space makes the trials, each once
            kwargs["raise_on_failed_trial"] = False  # a trial that failed is the search's to report, not an error
            # a worker process serves trial after trial (a paused one resumes from its checkpoint in any of them):
            # one import of torch and transformers per worker, not per trial start (docs/benchmarks.md)
            kwargs["reuse_actors"] = True
            kwargs["resources_per_trial"] = {"cpu": self.config.cpus_per_candidate,
                                             "gpu": self.config.gpus_per_candidate}
        return {**kwargs, **backend_kwargs}

    # ---------------------------------------------------------------- what the pruners share
    def score(self, objective: float) -> float:
        """The scheduler's score of an objective: greater is better."""
        return float(objective) if self.config.greater_is_better else -float(objective)

    def enroll(self, name: str, run_id: str, hyperparameters: Mapping[str, Any]) -> None:
        """Keep what a trial is under the scheduler's ``name`` for it (called by the pruner or the Ray scheduler)."""
        if name not in self.trials:
            self.trials[name] = TrialRecord(run_id, dict(hyperparameters))

    def checkpoint_of_trial(self, name: str) -> str | None:
        record = self.trials.get(name)
        return None if record is None else record.hyperparameters.get(CHECKPOINT)

    def best_run(self):
        """The best trial that trained to the end of the budget, as a `transformers.trainer_utils.BestRun`: the
        selection's own answer, which a Ray search's ``get_best_trial`` can miss (it also weighs the last report of
        trials stopped early)."""
        from transformers.trainer_utils import BestRun

        if self.scheduler is None:
            raise SelectionError("no search has run: call trainer.hyperparameter_search(**search.search_kwargs(...))")
        finals = {c: v for c, v in self.scheduler.reports().get(self.scheduler.budget, {}).items()
                  if c in self.trials and math.isfinite(v)}
        if not finals:
            raise SelectionError("no trial trained to the end of the budget")
        order = {c: i for i, c in enumerate(self.trials)}
        name = max(finals, key=lambda c: (finals[c], -order[c]))  # ties: the earlier trial, as Optuna and Ray pick
        record = self.trials[name]
        return BestRun(record.run_id, self.score(finals[name]), dict(record.hyperparameters))

    def steps_trained(self) -> dict[str, int]:
        """How far each trial trained, by the backend's id: the last stage end it reported."""
        reached: dict[str, int] = {}
        for step, by_trial in sorted((self.scheduler.reports(include_dropped=True) if self.scheduler else {}).items()):
            for name in by_trial:
                if name in self.trials:
                    reached[self.trials[name].run_id] = step
        return reached

    def pruned(self) -> list[str]:
        """The backend ids of the trials the selection stopped before the end of the budget."""
        budget_reports = self.scheduler.reports(include_dropped=True).get(self.scheduler.budget, {}) \
            if self.scheduler else {}
        return [r.run_id for n, r in self.trials.items() if n not in budget_reports]


def _check_backend(backend: str) -> None:
    if backend not in SEARCH_BACKENDS:
        raise SelectionError(f"backend must be one of {', '.join(SEARCH_BACKENDS)}, got {backend!r}")


def _grid(space: Mapping[str, Sequence] | Callable | None) -> dict[str, list]:
    """A mapping of value lists, checked: each name a training argument other than the checkpoint, each list
    non-empty."""
    if space is None or callable(space):
        return {}
    if not isinstance(space, Mapping):
        raise SelectionError(f"space must be a mapping of names to value lists, got {type(space).__name__}")
    grid = {}
    for name, values in space.items():
        if name == CHECKPOINT:
            raise SelectionError(f"'{CHECKPOINT}' is the search's own dimension (the recalled checkpoints)")
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
            raise SelectionError(f"space[{name!r}] must be a non-empty list of values, got {values!r}")
        grid[str(name)] = list(values)
    return grid

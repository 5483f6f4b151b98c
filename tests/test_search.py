"""The checkpoint as a dimension of `Trainer.hyperparameter_search`: a tiny search with each backend finishes, stops
some trials early and picks the trial that the exhaustive search picks; bad spaces, trials and batches get one clear
error each."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import transformers as tf
from PIL import Image

from hf_twophase import SelectionError, StageScheduler, SuccessiveHalving
from hf_twophase.inputs.columns import Columns
from hf_twophase.method.live_policy import live_policy
from hf_twophase.records.matrix import PerformanceMatrix
from hf_twophase.trainer.candidates import CandidateError
from hf_twophase.trainer.config import SelectionConfig
from hf_twophase.trainer.search import CHECKPOINT, CheckpointCollator, CheckpointSearch, StageReportCallback
from tests.coordinator_helpers import make_candidates, make_data, training_args

optuna = pytest.importorskip("optuna")

BUDGET, STAGE = 40, 20
LEARNING_RATES = [3e-3, 1e-4]
# the validation loss decides: accuracy ties on data this small, and a tie says nothing about who is better
CONFIG = SelectionConfig(stage_steps=STAGE, metric="eval_loss", greater_is_better=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("search")
    return {"names": make_candidates(folder / "models")[:3], "train": make_data(256, 0), "eval": make_data(64, 1),
            "out": folder}


def _trainer(search: CheckpointSearch, tiny, out: Path) -> tf.Trainer:
    return tf.Trainer(model_init=search.model_init, data_collator=search.data_collator,
                      args=training_args(out, max_steps=BUDGET, save_strategy="no", log_level="error"),
                      train_dataset=tiny["train"], eval_dataset=tiny["eval"])


def _search(tiny, backend: str, out: Path, **options):
    search = CheckpointSearch(tiny["names"], tiny["train"], tiny["eval"], config=CONFIG)
    trainer = _trainer(search, tiny, out)
    best = trainer.hyperparameter_search(**search.search_kwargs(
        trainer, backend=backend, space={"learning_rate": LEARNING_RATES}, seed=0, **options))
    return search, best


@pytest.fixture(scope="module")
def exhaustive(tiny):
    """Every checkpoint x learning rate trained to the end (Optuna, no pruning): the reference."""
    search, best = _search(tiny, "optuna", tiny["out"] / "exhaustive", pruner=optuna.pruners.NopPruner())
    return best


def _key(hyperparameters: dict) -> tuple[str, float]:
    return hyperparameters[CHECKPOINT], float(hyperparameters["learning_rate"])


@pytest.mark.slow
def test_ray_search_runs_stages_side_by_side_and_picks_the_exhaustive_winner(tiny, exhaustive):
    """After other training in this process (the exhaustive search stops mid-epoch, which leaves its dataloader in
    accelerate's shared state): Ray must still copy the Trainer into its trials."""
    ray = pytest.importorskip("ray")
    out = tiny["out"] / "ray"
    try:
        search, best = _search(tiny, "ray", out, storage_path=str(out / "ray"), verbose=0)
    finally:
        ray.shutdown()  # the Trainer started a local Ray in this process: later tests start and kill their own
    assert len(search.trials) == 6 and search.scheduler.mode == "sync"
    assert len(search.pruned()) >= 1
    assert search.scheduler.decided == [STAGE, BUDGET]
    assert _key(search.best_run().hyperparameters) == _key(exhaustive.hyperparameters)
    assert _key(best.hyperparameters) == _key(exhaustive.hyperparameters)
    # a paused trial resumes from its stage checkpoint: the same winner, with a loss near the uninterrupted one's
    assert best.objective == pytest.approx(exhaustive.objective, abs=0.02)


def test_optuna_search_stops_trials_early_and_picks_the_exhaustive_winner(tiny, exhaustive):
    search, best = _search(tiny, "optuna", tiny["out"] / "optuna")
    assert len(search.trials) == 6
    assert len(search.pruned()) >= 1
    assert _key(best.hyperparameters) == _key(exhaustive.hyperparameters)
    assert best.objective == pytest.approx(exhaustive.objective)
    assert _key(search.best_run().hyperparameters) == _key(best.hyperparameters)
    assert best.objective < 0.6  # a loss: the direction followed the config (lower is better)


# ---------------------------------------------------------------- bad input: one clear error each
@pytest.fixture
def search(tiny):
    return CheckpointSearch(tiny["names"], tiny["train"], tiny["eval"], config=CONFIG)


@pytest.fixture
def trainer(search, tiny, tmp_path):
    return _trainer(search, tiny, tmp_path)


@pytest.mark.parametrize("space, options, expected", [
    ({"learning_rate": [1e-3]}, {"n_trials": 5}, "grid of 3 trials"),
    ({"learning_rate": []}, {}, "non-empty list"),
    ({"learning_rate": "1e-3"}, {}, "non-empty list"),
    ({CHECKPOINT: ["../../etc/passwd"]}, {}, "the search's own dimension"),
    (lambda trial: {}, {}, "n_trials=N"),
    ([1e-3, 1e-4], {}, "mapping of names to value lists"),
    ({"learning_rate": [1e-3]}, {"backend": "wandb"}, "backend must be one of optuna, ray"),
])
def test_bad_search_spaces_are_refused_before_any_trial(search, trainer, space, options, expected):
    with pytest.raises(SelectionError, match=expected):
        search.search_kwargs(trainer, space=space, **options)
    assert search.scheduler is None  # nothing was planned


def test_a_function_space_is_optunas_only(search, trainer):
    with pytest.raises(SelectionError, match="hp_space\\(trial\\) function is Optuna's"):
        search.search_kwargs(trainer, backend="ray", space=lambda trial: {}, n_trials=2)


def test_a_trainer_without_model_init_is_refused(search, tiny, tmp_path):
    trainer = tf.Trainer(model=tf.BertForSequenceClassification.from_pretrained(tiny["names"][0]),
                         args=training_args(tmp_path, max_steps=BUDGET), train_dataset=tiny["train"])
    with pytest.raises(SelectionError, match="model_init=search.model_init"):
        search.search_kwargs(trainer)


@pytest.mark.parametrize("params, expected", [
    ({CHECKPOINT: "../../etc/passwd"}, "not one of the search's"),
    ({CHECKPOINT: "bert-base-uncased"}, "not one of the search's"),
    ({"learning_rate": 1e-3}, "no 'checkpoint' parameter"),
])
def test_a_trial_may_only_name_the_searched_checkpoints(search, params, expected):
    with pytest.raises(SelectionError, match=expected):
        search.model_init(params)


def test_the_collator_needs_the_raw_columns_and_says_how(search, tiny):
    search.model_init(None)  # the Trainer builds the first checkpoint when it is created
    batch = search.data_collator([tiny["train"][i] for i in range(4)])
    assert batch["input_ids"].shape[0] == 4 and batch["labels"].tolist() == tiny["train"]["label"][:4]
    with pytest.raises(SelectionError, match="remove_unused_columns=False"):
        search.data_collator([{"label": 1, "input_ids": [1, 2]}])
    fresh = CheckpointCollator(search.columns)
    with pytest.raises(SelectionError, match="model_init"):
        fresh([tiny["train"][0]])


def test_search_kwargs_prepares_the_trainer_once(search, trainer):
    assert trainer.args.remove_unused_columns
    kwargs = search.search_kwargs(trainer, space={"learning_rate": LEARNING_RATES})
    search.search_kwargs(trainer, space={"learning_rate": LEARNING_RATES})  # a second search replaces the callback
    assert not trainer.args.remove_unused_columns
    assert sum(isinstance(cb, StageReportCallback) for cb in trainer.callback_handler.callbacks) == 1
    assert kwargs["n_trials"] == 6 and kwargs["direction"] == "minimize" and kwargs["backend"] == "optuna"
    assert search.scheduler.stage_ends == [STAGE, BUDGET] and search.scheduler.mode == "async"
    assert CandidateError in kwargs["catch"]  # a checkpoint that cannot load fails its trial, not the search


def test_search_kwargs_for_ray_hand_over_a_stage_barrier_and_the_grid(search, trainer):
    pytest.importorskip("ray")
    from hf_twophase.trainer.ray_engine import SearchTrialScheduler

    kwargs = search.search_kwargs(trainer, backend="ray", space={"learning_rate": LEARNING_RATES})
    assert isinstance(kwargs["scheduler"], SearchTrialScheduler) and search.scheduler.mode == "sync"
    assert search.scheduler.candidates == [f"trial-{i}" for i in range(6)]  # the whole grid, known before any runs
    assert kwargs["n_trials"] == 1  # Ray's num_samples: each grid point once
    assert kwargs["reuse_actors"] and not kwargs["raise_on_failed_trial"]
    space = kwargs["hp_space"](None)
    assert space["checkpoint"] == {"grid_search": search.checkpoints}
    assert space["learning_rate"] == {"grid_search": LEARNING_RATES}


def test_a_trial_that_trains_another_budget_is_stopped_with_the_reason():
    callback = StageReportCallback([10, 20], 20, save=False)
    with pytest.raises(SelectionError, match="trains 30 steps.*planned for 20"):
        callback.on_train_begin(None, tf.TrainerState(max_steps=30), tf.TrainerControl())


def test_the_objective_is_the_configured_metric_and_nan_when_the_weights_diverged(search):
    assert search.objective({"eval_loss": 0.4, "eval_accuracy": 0.9, "epoch": 1.0}) == 0.4
    assert search.score(0.4) == -0.4  # the scheduler's scores are greater-is-better
    assert math.isnan(search.objective({"eval_loss": float("nan")}))
    with pytest.raises(SelectionError, match="metric 'eval_loss' not in the evaluation metrics"):
        search.objective({"eval_accuracy": 0.9})


def test_the_image_collator_uses_the_trials_own_transform():
    columns = Columns(label="label", n_classes=2, image="image")
    collator = CheckpointCollator(columns)

    def to_tensor(image):
        import torch

        return torch.as_tensor(np.array(image), dtype=torch.float32).permute(2, 0, 1) / 255

    collator.use(to_tensor, "timm")
    gray = Image.fromarray(np.full((4, 4), 255, dtype=np.uint8))  # grey images become RGB, as in phase 2
    batch = collator([{"image": gray, "label": 1}, {"image": gray, "label": 0}])
    assert tuple(batch["pixel_values"].shape) == (2, 3, 4, 4) and batch["labels"].tolist() == [1, 0]


# ---------------------------------------------------------------- the decision object's side
def test_an_asynchronous_selection_takes_candidates_as_they_come_a_synchronous_one_does_not():
    open_ended = StageScheduler(SuccessiveHalving(), [], 4, mode="async")  # a search knows no trial yet
    open_ended.enroll("trial-0")
    open_ended.enroll("trial-1")
    open_ended.enroll("trial-1")  # once
    assert open_ended.candidates == ["trial-0", "trial-1"]
    with pytest.raises(SelectionError, match="no candidates to select from"):
        StageScheduler(SuccessiveHalving(), [], 4)
    fixed = StageScheduler(SuccessiveHalving(), ["a", "b"], 4)
    with pytest.raises(SelectionError, match="fixed set of candidates"):
        fixed.enroll("c")
    copy = StageScheduler(SuccessiveHalving(), [], 4, mode="async")
    copy.load_state_dict(open_ended.state_dict())  # a saved open-ended search brings its newcomers along
    assert copy.candidates == open_ended.candidates


def test_each_trial_is_judged_with_the_matrix_curves_of_its_checkpoint():
    rows = [{"model": m, "dataset": d, "step": s, "val": v, "test": None, "cost": 1.0}
            for m, base in (("good", 0.5), ("bad", 0.2)) for d in ("d1", "d2", "d3")
            for s, v in ((1, base), (2, base + 0.2))]
    matrix = PerformanceMatrix(pd.DataFrame(rows))
    checkpoint = {"trial-0": "good", "trial-1": "bad", "trial-2": "unknown"}
    policy = live_policy("fine-selection", budget=2, stage_steps=1, matrix=matrix, candidates=["good", "bad"],
                         curves_of=checkpoint.get)
    assert np.allclose(policy.curves_of("trial-0").val, [[0.5, 0.7]] * 3)
    assert np.allclose(policy.curves_of("trial-1").val, [[0.2, 0.4]] * 3)
    assert policy.curves_of("trial-2") is None  # a checkpoint the matrix does not know: judged by its score


def test_from_selector_searches_the_recalled_checkpoints_with_the_matrix_curves(tiny):
    from hf_twophase.selector import RepoSelector

    names = tiny["names"]
    rows = [{"model": m, "dataset": d, "step": s, "val": base + 0.1 * s, "test": base + 0.2 if s == 2 else None,
             "cost": 1.0}
            for m, base in zip(names, (0.5, 0.2, 0.4), strict=True) for d in ("d1", "d2", "d3") for s in (1, 2)]
    selector = RepoSelector.from_models(names, PerformanceMatrix(pd.DataFrame(rows)), k=2)
    search = CheckpointSearch.from_selector(selector, tiny["train"], tiny["eval"])
    assert search.checkpoints == [names[0], names[2]]  # the top 2 of the matrix's prior, best first
    assert search.policy_name == "fine-selection" and search.matrix is selector.matrix


@pytest.mark.parametrize("argv", [["--max-steps", "0"], ["--max-steps", "-8"], ["--learning-rates", "0"],
                                  ["--learning-rates", "nan"], ["--backend", "wandb"]])
def test_the_example_refuses_bad_arguments_before_any_work(argv, capsys):
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "examples" / "hyperparameter_search.py"
    spec = importlib.util.spec_from_file_location("hyperparameter_search_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with pytest.raises(SystemExit) as exit_:
        example.parse_args(argv)
    assert exit_.value.code == 2 and "error: argument" in capsys.readouterr().err

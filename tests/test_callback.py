"""FineSelectionCallback in plain Trainers, and the shared scheduler it reports to."""

import threading
import time

import pytest
import torch
import transformers as tf

from hf_twophase import SelectionError, StageSchedule, StageScheduler, SuccessiveHalving
from hf_twophase.inputs.columns import detect_columns
from hf_twophase.trainer.callback import FineSelectionCallback
from hf_twophase.trainer.candidates import Candidate, accuracy, prepare
from hf_twophase.trainer.storage import directory_scheduler
from tests.coordinator_helpers import make_candidates, make_data, training_args


def _sh(stage=10):
    return SuccessiveHalving(StageSchedule(stage))


@pytest.mark.parametrize("kind", ["memory", "directory"])
def test_sync_state_waits_for_every_live_candidate(tmp_path, kind):
    names = ["a", "b", "c", "d"]
    state = StageScheduler(_sh(), names, 30) if kind == "memory" else directory_scheduler(
        tmp_path, _sh(), names, 30, poll=0.01)
    out = {}

    def worker(name, val, delay):
        time.sleep(delay)
        state.report(name, 10, val)
        out[name] = state.await_answer(name, 10, poll=0.01)

    threads = [threading.Thread(target=worker, args=(n, v, d)) for n, v, d in
               [("a", 0.9, 0.0), ("b", 0.1, 0.2), ("c", 0.5, 0.1), ("d", 0.7, 0.3)]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {n: v.go_on for n, v in out.items()} == {"a": True, "b": False, "c": False, "d": True}
    assert out["b"].reason == "halved"


def test_sync_timeout_drops_a_candidate_that_never_arrives(tmp_path):
    state = directory_scheduler(tmp_path, _sh(), ["a", "ghost"], 30, poll=0.01)
    state.report("a", 10, 0.5)
    start = time.monotonic()
    verdict = state.await_answer("a", 10, timeout=0.5)
    assert verdict.go_on and time.monotonic() - start >= 0.5
    later = directory_scheduler(tmp_path, _sh(), ["a", "ghost"], 30)  # another process reads the same decision
    assert later.answer("ghost", 10).go_on is False and later.answer("ghost", 10).decision.note == (
        "no report by the deadline")


def test_async_state_judges_each_stage_among_those_that_reached_it(tmp_path):
    state = directory_scheduler(tmp_path, _sh(), ["a", "b", "c"], 30, mode="async")
    state.report("a", 10, 0.5)
    assert state.answer("a", 10).go_on  # first at this stage: goes on
    state.report("b", 10, 0.3)
    assert not state.answer("b", 10).go_on  # worse than a at the same stage
    state.report("c", 10, 0.8)
    assert state.answer("c", 10).go_on
    assert state.answer("a", 10).go_on  # an answer once given is frozen: c's later report does not change it
    state.drop("c", "loss became NaN")
    assert not state.answer("c", 20).go_on
    assert state.dropped() == {"c": "loss became NaN"}  # what the report says of it
    assert "c" not in state.reports()[10] and state.reports(include_dropped=True)[10]["c"] == 0.8


def test_unknown_candidate_and_mode(tmp_path):
    state = StageScheduler(_sh(), ["a"], 30)
    with pytest.raises(SelectionError, match="unknown candidate"):
        state.report("zzz", 10, 0.1)
    with pytest.raises(SelectionError, match="mode"):
        StageScheduler(_sh(), ["a"], 30, mode="eventually")


@pytest.mark.slow
def test_callback_in_plain_trainers_run_one_after_another(tmp_path):
    names = make_candidates(tmp_path / "cands", hidden=(32, 8))
    train, ev = make_data(256, 0), make_data(64, 1)
    columns = detect_columns(train)
    state = directory_scheduler(tmp_path / "state", _sh(), names, 40, mode="async")
    callbacks = {}
    for name in names:
        p = prepare(Candidate.of(name), train, ev, columns)
        trainer = tf.Trainer(model=p.model, args=training_args(tmp_path / "out", max_steps=40),
                             train_dataset=p.train_dataset, eval_dataset=p.eval_dataset,
                             data_collator=p.data_collator, compute_metrics=accuracy)
        callbacks[name] = FineSelectionCallback(state, name)
        trainer.add_callback(callbacks[name])
        trainer.train()
        callbacks[name].steps = trainer.state.global_step
    first, second = (callbacks[n] for n in names)
    assert first.steps == 40 and sorted(first.curve) == [10, 20, 30, 40]
    stopped = [s for s, v in second.verdicts if not v.go_on]
    worse = [s for s in sorted(second.curve) if second.curve[s] < first.curve[s]]
    assert worse, "the tiny second model should fall behind"
    assert stopped == [worse[0]] and second.steps == worse[0]  # it stops at the first stage it is behind
    with pytest.raises(SelectionError, match="max_steps=40"):
        p = prepare(Candidate.of(names[0]), train, ev, columns)
        tf.Trainer(model=p.model, args=training_args(tmp_path / "x", max_steps=25), train_dataset=p.train_dataset,
                   eval_dataset=p.eval_dataset, data_collator=p.data_collator, compute_metrics=accuracy,
                   callbacks=[FineSelectionCallback(state, names[0])]).train()


@pytest.mark.slow
def test_callback_stops_a_plain_trainer_whose_weights_diverge(tmp_path):
    name = make_candidates(tmp_path / "cands", hidden=(16,))[0]
    train, ev = make_data(128, 0), make_data(32, 1)
    p = prepare(Candidate.of(name), train, ev, detect_columns(train))
    with torch.no_grad():
        p.model.classifier.weight.fill_(float("nan"))  # the training loss is NaN at every step, logged as a number
    state = StageScheduler(_sh(), [name, "other"], 40, mode="async")
    callback = FineSelectionCallback(state, name)
    trainer = tf.Trainer(model=p.model, args=training_args(tmp_path / "out", max_steps=40),
                         train_dataset=p.train_dataset, eval_dataset=p.eval_dataset, data_collator=p.data_collator,
                         compute_metrics=accuracy, callbacks=[callback])
    trainer.train()
    assert trainer.state.global_step == 10  # stopped at the first stage end
    assert state.dropped() == {name: "validation loss is nan at step 10: the weights diverged"}
    assert callback.verdicts[-1][1].reason == "dropped: validation loss is nan at step 10: the weights diverged"

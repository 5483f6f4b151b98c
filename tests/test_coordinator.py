"""The multi-model coordinator with real (tiny) Trainers on CPU."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
import transformers as tf

from hf_twophase import SelectionError
from hf_twophase.inputs.columns import detect_columns
from hf_twophase.method.policies import SelectionPolicy, StageSchedule
from hf_twophase.paths import folder_name
from hf_twophase.proxy import DatasetError
from hf_twophase.trainer.candidates import Candidate, prepare
from hf_twophase.trainer.checkpoints import COMPLETE_MARKER
from hf_twophase.trainer.config import SelectionConfig
from hf_twophase.trainer.coordinator import SelectionCoordinator
from tests.coordinator_helpers import make_candidates, make_data, training_args

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    return make_candidates(tmp_path_factory.mktemp("cands"))


@pytest.fixture(scope="module")
def data():
    return make_data(256, 0), make_data(64, 1)


class NeverPrune(SelectionPolicy):
    """Stages and pauses, but nobody stops before the budget: every candidate is interleaved to the end."""

    name = "never-prune"


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_pausing_does_not_change_training(tmp_path, candidates, data):
    train, ev = data
    args = training_args(tmp_path / "sel", max_steps=30)
    result = SelectionCoordinator(candidates[:2], train, ev, args,
                                  config=SelectionConfig(save_stages=False),
                                                         policy=NeverPrune(StageSchedule(7))).run()
    # the same candidate trained 30 steps in one go, by a plain Trainer
    prepared = prepare(Candidate.of(result.winner), train, ev, detect_columns(train))
    plain = tf.Trainer(model=prepared.model, args=training_args(tmp_path / "plain", max_steps=30),
                       train_dataset=prepared.train_dataset, data_collator=prepared.data_collator)
    plain.train()
    paused, straight = _weights(result.model), _weights(plain.model)
    assert paused.keys() == straight.keys()
    for key in paused:
        torch.testing.assert_close(paused[key], straight[key], rtol=1e-5, atol=1e-6)
    # and the interleaving really happened: both trained to the budget in 5 stages
    assert {c.name: c.steps_trained for c in result.report.candidates} == dict.fromkeys(candidates[:2], 30)
    assert all(len(c.curve) == 5 for c in result.report.candidates)


def test_selection_report_and_cleanup(tmp_path, candidates, data):
    train, ev = data
    result = SelectionCoordinator(candidates, train, ev, training_args(tmp_path / "out"),
                                  config=SelectionConfig(stage_steps=10)).run()
    report = result.report
    statuses = {c.name: c.status for c in report.candidates}
    assert list(statuses.values()).count("winner") == 1 and statuses[result.winner] == "winner"
    assert report.steps_spent == 10 * 4 + 10 * 2 + 20  # successive halving: 4 -> 2 -> 1, winner to 40
    assert report.steps_spent == report.successive_halving_steps() < report.brute_force_steps == 160
    files = result.files
    for key in ("json", "markdown", "plot"):
        assert Path(files[key]).is_file()
    data_json = json.loads(Path(files["json"]).read_text())
    assert data_json["winner"] == result.winner and len(data_json["candidates"]) == 4
    assert "halved" in Path(files["markdown"]).read_text()
    reloaded = tf.AutoModelForSequenceClassification.from_pretrained(files["winner"])
    assert reloaded.config.num_labels == 2 and (Path(files["winner"]) / "tokenizer.json").is_file()
    left = [p.name for p in (tmp_path / "out" / "candidates").iterdir()]
    assert left == [folder_name(result.winner)]  # pruned candidates freed their checkpoints at once
    # the winner's last checkpoint, kept as the resume point, shares the winner's weights file: stored once
    weights, resume_point = Path(files["winner"]) / "model.safetensors", tmp_path / "out" / "candidates" / left[0]
    last = resume_point / "checkpoint-40" / "model.safetensors"
    assert os.path.samefile(weights, last) and os.stat(last).st_nlink == 2
    with pytest.raises(SelectionError, match="resume=True"):
        SelectionCoordinator(candidates, train, ev, training_args(tmp_path / "out"),
                             config=SelectionConfig(stage_steps=10)).run()
    # resumed when already finished, the winner is saved again and shares its weights with the checkpoint again
    again = SelectionCoordinator(candidates, train, ev, training_args(tmp_path / "out"),
                                 config=SelectionConfig(stage_steps=10)).run(
        resume=True)
    assert again.winner == result.winner and os.path.samefile(weights, last)
    saved, trained = safetensors.torch.load_file(last), _weights(result.model)
    assert saved and all(torch.equal(v, trained[k]) for k, v in saved.items())  # still the winner's weights, whole


def test_failed_candidates_are_dropped_and_the_rest_go_on(tmp_path, candidates, data):
    train, ev = data
    missing = str(tmp_path / "no-such-model")
    pickled = tmp_path / "pickle-only"  # weights as pytorch_model.bin: never unpickled unless the user allows it
    model = tf.AutoModelForSequenceClassification.from_pretrained(candidates[0])
    model.config.save_pretrained(pickled)
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    tf.AutoTokenizer.from_pretrained(candidates[0]).save_pretrained(pickled)
    result = SelectionCoordinator([missing, str(pickled), *candidates[:2]], train, ev, training_args(tmp_path / "out"),
                                  config=SelectionConfig(stage_steps=10)).run()
    dropped = next(c for c in result.report.candidates if c.name == missing)
    assert dropped.status == "dropped" and "could not load" in dropped.reason and dropped.steps_trained == 0
    unsafe = next(c for c in result.report.candidates if c.name == str(pickled))
    assert unsafe.status == "dropped" and "pass allow_pickle=True" in unsafe.reason and unsafe.steps_trained == 0
    assert result.winner in candidates[:2]
    with pytest.raises(SelectionError, match="no candidate finished"):
        SelectionCoordinator([missing], train, ev, training_args(tmp_path / "none"),
                             config=SelectionConfig(stage_steps=10)).run()


def test_a_candidate_whose_loss_becomes_nan_is_dropped_and_counted_on_resume(tmp_path, candidates, data):
    train, ev = data
    model = tf.AutoModelForSequenceClassification.from_pretrained(candidates[0])
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))  # every loss from the first step on is NaN
    diverging = Candidate("diverging", model, tokenizer=tf.AutoTokenizer.from_pretrained(candidates[0]))
    args = training_args(tmp_path / "out", max_steps=30)
    result = SelectionCoordinator([diverging, *candidates[1:3]], train, ev, args,
                                  config=SelectionConfig(stage_steps=10)).run()
    dropped = next(c for c in result.report.candidates if c.name == "diverging")
    assert dropped.status == "dropped" and "validation loss is nan at step 10" in dropped.reason
    assert dropped.steps_trained == 10 and dropped.curve == {}  # stopped at the first stage end; no score to plot
    assert result.winner in candidates[1:3]
    # resumed after the end, the report tells the same story: the dropped candidate's stage is still counted
    again = SelectionCoordinator([diverging, *candidates[1:3]], train, ev, args,
                                 config=SelectionConfig(stage_steps=10)).run(resume=True)
    assert [(c.name, c.status, c.steps_trained) for c in again.report.candidates] == [
        (c.name, c.status, c.steps_trained) for c in result.report.candidates]


def test_a_failed_winner_save_raises_after_the_report_is_written(tmp_path, candidates, data, monkeypatch):
    """The winner is saved on a worker thread while the report is drawn: its failure must still surface."""
    train, ev = data

    def full_disk(self, slot, folder):
        raise OSError("No space left on device")

    monkeypatch.setattr(SelectionCoordinator, "_save_winner", full_disk)
    with pytest.raises(OSError, match="No space left"):
        SelectionCoordinator(candidates[:2], train, ev, training_args(tmp_path / "out", max_steps=20),
                             config=SelectionConfig(stage_steps=10)).run()
    report = json.loads((tmp_path / "out" / "report.json").read_text())  # the selection's story is not lost
    assert report["winner"] in candidates[:2] and (tmp_path / "out" / "curves.png").is_file()
    # the checkpoint at the end of the budget holds no optimizer state (nothing trains after it) and is enough to
    # resume: the winner is saved without training a single step again
    last = tmp_path / "out" / "candidates" / folder_name(report["winner"]) / "checkpoint-20"
    assert (last / COMPLETE_MARKER).is_file() and (last / "model.safetensors").is_file()
    assert not (last / "optimizer.pt").exists() and not (last / "scheduler.pt").exists()
    assert not (last / "tokenizer.json").exists()  # a resume loads the tokenizer from the candidate itself
    monkeypatch.undo()
    steps, original_step = [], tf.Trainer.training_step
    monkeypatch.setattr(tf.Trainer, "training_step", lambda *a, **k: steps.append(1) or original_step(*a, **k))
    result = SelectionCoordinator(candidates[:2], train, ev, training_args(tmp_path / "out", max_steps=20),
                                  config=SelectionConfig(stage_steps=10)).run(resume=True)
    assert steps == [] and result.winner == report["winner"]
    assert {c.name: c.steps_trained for c in result.report.candidates} == {c["name"]: c["steps_trained"]
                                                                             for c in report["candidates"]}
    saved = safetensors.torch.load_file(tmp_path / "out" / "winner" / "model.safetensors")
    assert (tmp_path / "out" / "winner" / "tokenizer.json").is_file()  # the winner's folder does get it
    assert all(torch.equal(v, saved[k]) for k, v in safetensors.torch.load_file(last / "model.safetensors").items())


def test_bad_input_fails_before_training(tmp_path, candidates, data):
    train, ev = data
    with pytest.raises(DatasetError, match="no label column"):
        SelectionCoordinator(candidates, train.remove_columns("label"), ev, training_args(tmp_path / "a"))
    with pytest.raises(DatasetError, match="empty"):
        SelectionCoordinator(candidates, train, ev.select([]), training_args(tmp_path / "b"))
    fixed = tf.BertForSequenceClassification(tf.BertConfig(vocab_size=100, hidden_size=8, num_hidden_layers=1,
                                                            num_attention_heads=1, intermediate_size=8, num_labels=5))
    with pytest.raises(SelectionError, match="5 outputs but the dataset has 2 classes"):
        SelectionCoordinator([Candidate("fixed", fixed, tokenizer=object())], train, ev, training_args(tmp_path / "c"))
    with pytest.raises(SelectionError, match="set training_args.max_steps, or num_train_epochs > 0"):
        SelectionCoordinator(candidates, train, ev, tf.TrainingArguments(str(tmp_path / "d"), use_cpu=True,
                                                                         num_train_epochs=0))
    epochs = SelectionCoordinator(candidates, train, ev, tf.TrainingArguments(str(tmp_path / "e"), use_cpu=True))
    assert epochs.budget == 3 * -(-len(train) // 8)  # without max_steps: the template's 3 epochs in batches of 8
    assert not (tmp_path / "a").exists()  # nothing was trained or written


@pytest.mark.parametrize("background", ["1"], ids=["checkpoints-behind"])  # in place: tests/test_resume_anywhere.py
def test_crash_and_resume_reaches_the_same_winner(tmp_path, candidates, data, background):
    folder = Path(candidates[0]).parent
    helper = Path(__file__).with_name("coordinator_helpers.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(helper.parent.parent), os.environ.get("PYTHONPATH", "")]),
           "HF_TWOPHASE_TEST_BACKGROUND_CHECKPOINTS": background}
    straight = tmp_path / "straight"  # the same selection as the helper's, never killed (in this process)
    SelectionCoordinator(make_candidates(folder), make_data(256, 0), make_data(64, 1), training_args(straight),
                         SelectionConfig(stage_steps=10, background_checkpoints=background == "1")).run()
    crashed = tmp_path / "crashed"
    proc = subprocess.Popen([sys.executable, str(helper), str(folder), str(crashed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    decision = crashed / "selection_state" / "records" / f"{20:08d}.json"

    def stage_two_saved():  # the survivor checkpointed stage 2 (4 -> 2 at step 10, 2 -> 1 at step 20)
        # the pruned candidate's folder is gone, so the complete checkpoint is the survivor's own (a pruned one's,
        # written in the background just before its folder is removed, does not count)
        folders = list(crashed.glob("candidates/*"))
        return decision.exists() and len(folders) == 1 and (folders[0] / "checkpoint-20" / COMPLETE_MARKER).is_file()

    deadline = time.time() + 240
    while not stage_two_saved() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # mid-selection: stage 2 decided and saved, the winner training on
    proc.wait()
    assert stage_two_saved()
    early = {p.name: p.stat().st_mtime_ns for p in (crashed / "selection_state" / "reports").glob("000000[12]0__*")}
    subprocess.run([sys.executable, str(helper), str(folder), str(crashed), "resume"], check=True, env=env,
                   timeout=300, capture_output=True)
    later = {p.name: p.stat().st_mtime_ns for p in (crashed / "selection_state" / "reports").glob("000000[12]0__*")}
    assert early == later  # the completed stages were not trained or reported again
    a = json.loads((straight / "report.json").read_text())
    b = json.loads((crashed / "report.json").read_text())
    assert a["winner"] == b["winner"]
    assert a["candidates"] == [dict(c, seconds=x["seconds"]) for c, x in zip(b["candidates"], a["candidates"],
                                                                            strict=True)]
    assert a["steps_spent"] == b["steps_spent"]  # the stages trained before the crash count
    wa = tf.AutoModelForSequenceClassification.from_pretrained(straight / "winner").state_dict()
    wb = tf.AutoModelForSequenceClassification.from_pretrained(crashed / "winner").state_dict()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6)


def test_two_processes_reach_the_same_decisions(tmp_path, candidates):
    """`torchrun --nproc_per_node 2` on CPU (gloo): rank 0 decides, every rank acts on it, both end cleanly."""
    helper = Path(__file__).with_name("ddp_helper.py")
    out = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(helper),
                           str(out), str(Path(candidates[0]).parent)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["winner"] == ranks[1]["winner"] and ranks[0]["decisions"] == ranks[1]["decisions"]
    assert (out / "selection" / "winner" / "model.safetensors").is_file()


def test_a_damaged_selection_manifest_is_one_clear_error_on_resume(tmp_path, candidates, data):
    from hf_twophase.atomic import StateFileError

    train, ev = data
    args = training_args(tmp_path / "sel", max_steps=4)
    SelectionCoordinator(candidates[:2], train, ev, args,
                         config=SelectionConfig(stage_steps=2, save_stages=False, progress=False)).run()
    manifest = tmp_path / "sel" / "selection.json"
    assert json.loads(manifest.read_text())["candidates"]  # written whole
    manifest.write_text('{"candidates": ["a", "b"], "bud')  # what a crash mid-write left before atomic writes
    with pytest.raises(StateFileError, match="selection.json is damaged"):
        SelectionCoordinator(candidates[:2], train, ev, args,
                             config=SelectionConfig(stage_steps=2, save_stages=False, progress=False)).run(resume=True)


def test_class_name_labels_are_accepted_as_the_command_line_accepts_them(tmp_path, candidates, data):
    import datasets

    names = ["neg", "pos"]
    train, ev = (split.cast_column("label", datasets.Value("int64")).map(lambda row: {"label": names[row["label"]]})
                 for split in data)
    assert train.features["label"].dtype == "string"
    result = SelectionCoordinator(candidates[:2], train, ev, training_args(tmp_path / "sel", max_steps=4),
                                  config=SelectionConfig(stage_steps=2, save_stages=False)).run()
    assert result.report.extra["labels"] == names
    assert result.model.config.id2label == {0: "neg", 1: "pos"}

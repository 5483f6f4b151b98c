"""Stage checkpoints written on a worker thread hold exactly what the Trainer would have written at that step."""

from __future__ import annotations

import os

import pytest
import safetensors.torch
import torch
import transformers as tf

from hf_twophase.inputs.columns import detect_columns
from hf_twophase.trainer.candidates import Candidate, prepare
from hf_twophase.trainer.checkpoints import (
    COMPLETE_MARKER,
    BackgroundCheckpointTrainer,
    CheckpointWriter,
    host_copy,
    latest_complete,
    mark_complete,
    share_identical_weights,
    unshare_weights,
)
from tests.coordinator_helpers import make_candidates, make_data, training_args


def test_host_copy_is_frozen_and_keeps_shared_storage():
    weight = torch.randn(4, 3)
    state = {"a": weight, "tied": weight, "view": weight[1:], "opt": {"step": torch.tensor(2.0), "betas": (0.9, 0.99)}}
    copied = host_copy(state)
    weight.add_(1.0)  # training goes on after the snapshot
    assert not torch.equal(copied["a"], weight) and torch.equal(copied["a"] + 1.0, weight)
    assert copied["a"] is copied["tied"]  # tied weights stay one tensor, as save_pretrained expects
    assert torch.equal(copied["view"], copied["a"][1:])
    assert copied["opt"]["betas"] == (0.9, 0.99) and copied["opt"]["step"].item() == 2.0


def test_a_checkpoint_counts_only_once_marked_and_then_replaces_the_older_one(tmp_path):
    old, new = tmp_path / "checkpoint-10", tmp_path / "checkpoint-20"
    for folder in (old, new):
        folder.mkdir()
    mark_complete(old)
    assert latest_complete(tmp_path) == old  # checkpoint-20 is still being written: it does not count
    assert old.exists()
    mark_complete(new)
    assert latest_complete(tmp_path) == new and not old.exists()


def test_a_failed_write_reaches_the_candidate_that_made_it():
    writer = CheckpointWriter()
    try:
        def full_disk():
            raise OSError("No space left on device")

        writer.submit("a", full_disk)
        writer.submit("b", lambda: None)
        with pytest.raises(OSError, match="No space left"):
            writer.wait("a")
        writer.wait("b")
        writer.submit("c", full_disk)
        assert list(writer.wait_all()) == ["c"]
    finally:
        writer.close()


class SaveOnlyAt(tf.TrainerCallback):
    """No save at the end of training: the one checkpoint is taken while training still has steps to go."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        control.should_save = state.global_step == self.step


@pytest.mark.slow
def test_background_checkpoint_equals_the_trainers_own(tmp_path):
    """Saved at step 5 while training runs on to step 8: the files must hold step 5, as a plain Trainer's do."""
    train, ev = make_data(128, 0), make_data(32, 1)
    name = make_candidates(tmp_path / "cands", hidden=(16,))[0]
    columns = detect_columns(train)
    folders, final = {}, {}
    writer = CheckpointWriter()
    try:
        for background in (False, True):
            tf.set_seed(0)
            p = prepare(Candidate.of(name), train, ev, columns)
            out = tmp_path / ("background" if background else "plain")
            args = training_args(out, max_steps=8, save_strategy="steps", save_steps=5, save_total_limit=None)
            kwargs = dict(model=p.model, args=args, train_dataset=p.train_dataset, data_collator=p.data_collator,
                          callbacks=[SaveOnlyAt(5)])
            trainer = BackgroundCheckpointTrainer(**kwargs, checkpoint_writer=writer, writer_key="c",
                                                  background=True) if background else tf.Trainer(**kwargs)
            trainer.train()
            writer.wait("c")
            folders[background] = out / "checkpoint-5"
            final[background] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    finally:
        writer.close()
    plain, background = folders[False], folders[True]
    assert (background / COMPLETE_MARKER).is_file()
    a, b = (safetensors.torch.load_file(f / "model.safetensors") for f in (plain, background))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    oa, ob = (torch.load(f / "optimizer.pt", weights_only=True) for f in (plain, background))
    assert oa["param_groups"] == ob["param_groups"]
    for i, state in oa["state"].items():
        assert all(torch.equal(v, ob["state"][i][k]) for k, v in state.items())
    sa, sb = (torch.load(f / "scheduler.pt", weights_only=True) for f in (plain, background))
    assert sa == sb
    # the same files but the tokenizer (the plain Trainer writes its collator's): a resume never reads it
    p.processing.save_pretrained(str(tmp_path / "tokenizer"))
    tokenizer_files = {f.name for f in (tmp_path / "tokenizer").iterdir()}
    assert tokenizer_files and not tokenizer_files & {f.name for f in background.iterdir()}
    assert {f.name for f in plain.iterdir()} - tokenizer_files | {COMPLETE_MARKER} == {f.name for f in
                                                                                       background.iterdir()}
    # training went on after the snapshot (the same way on both sides), and the snapshot did not follow it
    assert all(torch.equal(final[False][k], final[True][k]) for k in final[False])
    assert any(not torch.equal(final[True][k], b[k]) for k in b if k in final[True])
    # and the Trainer resumes from it to the very weights of the run that never stopped
    tf.set_seed(0)
    p = prepare(Candidate.of(name), train, ev, columns)
    resumed = tf.Trainer(model=p.model, args=training_args(tmp_path / "resumed", max_steps=8),
                         data_collator=p.data_collator, train_dataset=p.train_dataset)
    resumed.train(resume_from_checkpoint=str(background))
    assert all(torch.allclose(v, final[False][k]) for k, v in resumed.model.state_dict().items())


def test_identical_weights_are_stored_once_and_unshared_before_a_rewrite(tmp_path):
    saved, checkpoint = tmp_path / "winner", tmp_path / "checkpoint-8"
    saved.mkdir(), checkpoint.mkdir()
    weights = {"w": torch.arange(6.0)}
    for folder in (saved, checkpoint):
        safetensors.torch.save_file(weights, folder / "model.safetensors")
    safetensors.torch.save_file({"w": torch.arange(6.0) + 1}, saved / "other.safetensors")
    safetensors.torch.save_file(weights, checkpoint / "other.safetensors")  # same size, other bytes
    share_identical_weights(saved, checkpoint)
    assert os.path.samefile(saved / "model.safetensors", checkpoint / "model.safetensors")
    assert not os.path.samefile(saved / "other.safetensors", checkpoint / "other.safetensors")
    assert torch.equal(safetensors.torch.load_file(checkpoint / "other.safetensors")["w"], weights["w"])
    unshare_weights(saved)  # the winner is about to be written again: the checkpoint keeps its own copy
    assert not (saved / "model.safetensors").exists() and (saved / "other.safetensors").is_file()
    assert torch.equal(safetensors.torch.load_file(checkpoint / "model.safetensors")["w"], weights["w"])
    assert os.stat(checkpoint / "model.safetensors").st_nlink == 1

"""The main job (examples/select.py, hf-twophase select): bad arguments stop early; a small run end to end."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from hf_twophase.cli.main import main as cli_main
from hf_twophase.cli.select import main
from tests.coordinator_helpers import make_candidates, make_data


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("job")
    models = make_candidates(root / "models", hidden=(16, 8, 12))
    rows = []
    for i, model in enumerate(models):
        for j, bench in enumerate(("b1", "b2", "b3")):
            final = 0.9 - 0.2 * i - 0.01 * j
            for step in (1, 2, 3, 4):
                rows.append({"model": model, "dataset": bench, "step": step, "val": final - 0.05 * (4 - step),
                             "test": final if step == 4 else None, "cost": 1.0})
    pd.DataFrame(rows).to_csv(root / "records.csv", index=False)
    data = make_data(160, 0)
    pd.DataFrame({"text": data["text"], "label": data["label"]}).to_csv(root / "data.csv", index=False)
    pd.DataFrame({"text": data["text"]}).to_csv(root / "unlabelled.csv", index=False)
    return root, models


def _run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_bad_arguments_end_early_with_one_message(setup, capsys, tmp_path):
    root, models = setup
    common = ["--output-dir", tmp_path / "out", "--cpu", "--task", "text-classification"]
    code, err = _run(capsys, "--task", "translation", "--output-dir", tmp_path / "out")
    assert code == 2 and "unknown task 'translation'" in err
    code, err = _run(capsys, *common, "--dataset", root / "unlabelled.csv", "--models", *models,
                     "--matrix", root / "records.csv")
    assert code == 2 and "label" in err
    code, err = _run(capsys, *common, "--dataset", root / "data.csv", "--models", "someone/else", "other/model",
                     "--matrix", root / "records.csv", "--cold-budget", 0)
    assert code == 2 and "covers none" in err
    code, err = _run(capsys, *common, "--dataset", root / "data.csv", "--models", *models,
                     "--matrix", root / "records.csv", "--k", 7)
    assert code == 2 and "k=7" in err
    code, err = _run(capsys, "--task", "image-classification", "--dataset", root / "data.csv", "--models", *models,
                     "--matrix", root / "records.csv", "--output-dir", tmp_path / "out")
    assert code == 2 and "image" in err
    assert not (tmp_path / "out" / "selection_state").exists()  # nothing was trained
    assert cli_main(["select", "--task", "translation"]) == 2


def test_small_selection_end_to_end(setup, capsys, tmp_path, monkeypatch):
    root, models = setup
    out = tmp_path / "out"
    monkeypatch.setenv("HF_TWOPHASE_SELECT_JSON", str(tmp_path / "summary.json"))
    argv = ["--task", "text-classification", "--dataset", root / "data.csv", "--models", *models, "--matrix",
            root / "records.csv", "--k", 2, "--budget", 8, "--stage-steps", 2, "--batch-size", 16,
            "--learning-rate", 3e-3, "--proxy-samples", 64, "--output-dir", out, "--cpu"]
    assert main([str(a) for a in argv]) == 0
    screen = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["winner"] in summary["recalled"] and len(summary["recalled"]) == 2
    assert summary["steps_spent"] <= summary["brute_force_steps"] == 2 * 8
    assert "winner:" in screen and "brute force would spend 16" in screen and "phase 1: 3 candidates" in screen
    assert 0.3 < summary["majority_baseline"] <= 1 and "majority class alone: eval_accuracy" in screen
    assert "best other candidate:" in screen
    assert "majority class alone" in (out / "report.md").read_text()
    for name in ("summary.txt", "report.md", "report.json", "curves.png", "winner/config.json"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert [c["status"] for c in report["candidates"]].count("not-recalled") == 1
    code, err = _run(capsys, *argv)
    assert code == 2 and "--overwrite" in err  # an earlier selection is never silently replaced


@pytest.mark.parametrize("argv, message", [
    (["--k", "0"], "--k: expected a positive integer, got 0"),
    (["--budget", "0"], "--budget: expected a positive integer, got 0"),
    (["--budget=-2"], "--budget: expected a positive integer, got -2"),
    (["--stage-steps", "0"], "--stage-steps: expected a positive integer"),
    (["--limit", "x"], "--limit: expected a positive integer, got 'x'"),
    (["--growth", "0"], "--growth: expected a number >= 1"),
    (["--growth", "0.5"], "--growth: expected a number >= 1"),
    (["--learning-rate=-1e-3"], "--learning-rate: expected a positive number"),
    (["--cold-budget=-1"], "--cold-budget: expected an integer >= 0"),
    (["--backend", "ray", "--cpus-per-candidate", "0"], "--cpus-per-candidate: expected a positive number"),
    (["--backend", "ray", "--cpus-per-candidate", "nan"], "--cpus-per-candidate: expected a positive number"),
    (["--backend", "ray", "--gpus-per-candidate=-1"], "--gpus-per-candidate: expected a number >= 0"),
    (["--backend", "spark"], "argument --backend: invalid choice: 'spark'"),
])
def test_impossible_numbers_are_refused_before_anything_loads(capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_empty_and_header_only_files_end_with_one_message(setup, capsys, tmp_path):
    root, models = setup
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("text,label\n")
    for name, message in (("empty.csv", "is empty"), ("header.csv", "has no rows")):
        code, err = _run(capsys, "--task", "text-classification", "--dataset", tmp_path / name, "--models",
                         *models, "--matrix", root / "records.csv", "--output-dir", tmp_path / "out", "--cpu")
        assert code == 2 and message in err and "Traceback" not in err, err


def test_class_name_labels_are_encoded_and_kept_in_the_winner(setup, capsys, tmp_path):
    import transformers as tf

    root, models = setup
    data = make_data(160, 0)
    names = ["neg", "pos"]
    pd.DataFrame({"text": data["text"], "label": [names[y] for y in data["label"]]}).to_csv(
        tmp_path / "named.csv", index=False)
    out = tmp_path / "out"
    argv = ["--task", "text-classification", "--dataset", tmp_path / "named.csv", "--models", *models, "--matrix",
            root / "records.csv", "--k", 2, "--budget", 4, "--stage-steps", 2, "--proxy-samples", 64,
            "--output-dir", out, "--cpu", "--json"]
    assert main([str(a) for a in argv]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # --json: one object on stdout, the screen on stderr
    assert summary["winner"] in models and "hf-twophase select:" in captured.err
    config = tf.AutoConfig.from_pretrained(out / "winner")
    assert config.id2label == {0: "neg", 1: "pos"} and config.label2id == {"neg": 0, "pos": 1}
    assert json.loads((out / "report.json").read_text())["extra"]["labels"] == names
    classifier = tf.pipeline("text-classification", model=str(out / "winner"))  # as the model card says
    assert {p["label"] for p in classifier(list(data["text"][:8]))} <= set(names)


@pytest.mark.slow
def test_ctrl_c_ends_with_one_line_and_the_resume_command(setup, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root, models = setup
    repo = Path(__file__).resolve().parent.parent
    out = tmp_path / "out"
    cmd = [sys.executable, str(repo / "examples" / "select.py"), "--task", "text-classification", "--dataset",
           str(root / "data.csv"), "--models", *models, "--matrix", str(root / "records.csv"), "--k", "2",
           "--budget", "400", "--stage-steps", "2", "--proxy-samples", "64", "--output-dir", str(out), "--cpu"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(repo)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list(out.glob("selection_state/reports/*.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends, mid-selection
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted; the stages finished so far are kept" in err
    assert err.rstrip().endswith("--resume") and str(out) in err


def test_an_unreachable_hub_ends_at_once_with_the_offline_command(setup, capsys, tmp_path, monkeypatch):
    import time

    from huggingface_hub import constants

    root, _ = setup
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    started = time.perf_counter()
    code, err = _run(capsys, "--task", "text-classification", "--dataset", root / "data.csv", "--output-dir",
                     tmp_path / "out", "--cpu")
    assert code == 2 and time.perf_counter() - started < 30  # no half-minute of retries
    assert "HF_ENDPOINT=http://127.0.0.1:9" in err and "could not be reached" in err
    assert "HF_HUB_OFFLINE=1 " in err and f"--dataset {root / 'data.csv'}" in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1
    assert not (tmp_path / "out" / "selection_state").exists()


def test_offline_without_models_or_matrix_means_the_embedded_repository(setup, monkeypatch):
    from hf_twophase.cli.select import build_parser, resolve_plan

    root, _ = setup
    args = build_parser().parse_args(["--task", "text-classification", "--dataset", str(root / "data.csv")])
    assert not resolve_plan(args).embedded  # online: the Hub's models and the packaged matrix
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_plan(args).embedded


def test_a_dataset_alone_selects_among_the_hubs_models(setup, capsys, tmp_path, local_hub):
    import uuid

    from huggingface_hub import HfApi

    root, models = setup
    api, ns = HfApi(), f"top{uuid.uuid4().hex[:6]}"
    for i, folder in enumerate(models[:2]):
        (tmp_path / f"card{i}").mkdir()
        api.create_repo(f"{ns}/m{i}")
        api.upload_folder(repo_id=f"{ns}/m{i}", folder_path=folder)
        api.upload_file(path_or_fileobj=b"---\npipeline_tag: text-classification\n---\n", path_in_repo="README.md",
                        repo_id=f"{ns}/m{i}")
        local_hub.storage.update_settings("models", f"{ns}/m{i}", downloads=10**9 - i)  # the most downloaded
    out = tmp_path / "out"
    code = main(["--task", "text-classification", "--dataset", str(root / "data.csv"), "--limit", "2", "--budget",
                 "4", "--output-dir", str(out), "--cpu", "--json"])
    assert code == 0, capsys.readouterr().err[-2000:]
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["recalled"]) == {f"{ns}/m0", f"{ns}/m1"}  # both cold, both proxy-scored and recalled
    report = json.loads((out / "report.json").read_text())
    assert report["policy"]["note"].startswith("no benchmark curves")  # the packaged matrix has final scores only
    assert report["extra"]["matrix"]["source"] == "packaged:text-classification"
    assert {r["origin"] for r in report["extra"]["phase1"]["candidates"]} == {"cold"}


def test_a_cost_above_successive_halving_is_explained():
    from hf_twophase.cli.select import _above_halving
    from hf_twophase.trainer.report import CandidateReport, SelectionReport

    guarded = CandidateReport(name="b", status="pruned", reason="halved",
                              note="a kept as runner-up: its paper trend predicts 0.9100, above b's 0.9000")
    report = SelectionReport(candidates=[CandidateReport(name="a", status="winner"), guarded], winner="a", budget=8,
                             stage_ends=[2, 4, 6, 8], metric="eval_accuracy",
                             policy={"policy": "fine-selection", "stage": 2, "growth": 1.0})
    assert "runner-up" in _above_halving(report) and "--variant calibrated never does" in _above_halving(report)
    report.candidates[1] = CandidateReport(name="b", status="pruned", reason="trend-pruned")
    assert "kept candidates that halving would have cut" in _above_halving(report)


def test_a_loading_script_dataset_and_a_folder_without_data_end_with_one_message(capsys, tmp_path, local_hub):
    from huggingface_hub import HfApi

    api = HfApi()
    repo = api.create_repo(f"tests/scripted-{tmp_path.name[-10:]}", repo_type="dataset", exist_ok=True).repo_id
    script = "import datasets\nclass Scripted(datasets.GeneratorBasedBuilder):\n    pass\n"
    api.upload_file(path_or_fileobj=script.encode(), path_in_repo=f"{repo.split('/')[1]}.py", repo_id=repo,
                    repo_type="dataset")
    empty, no_images = tmp_path / "empty", tmp_path / "no_images"
    empty.mkdir()
    (no_images / "cat").mkdir(parents=True)
    (no_images / "cat" / "notes.txt").write_text("no image here")
    for spec, message in ((repo, "loading script"), (str(empty), "holds no files"),
                          (str(no_images), "holds no image files")):
        code, err = _run(capsys, "--dataset", spec, "--output-dir", tmp_path / "out", "--cpu")
        assert code == 2 and message in err and "Traceback" not in err, err


@pytest.mark.slow
def test_two_processes_killed_mid_selection_resume_to_the_end(setup, tmp_path):
    """torchrun killed after the first stage's decision, then `--resume` under `accelerate launch --multi_gpu
    --num_processes 2`: every rank starts from rank 0's state (a rank that knew less resumed its candidates from
    other stages, and the ranks deadlocked); one process prints one summary and writes one set of files."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root, models = setup
    repo = Path(__file__).resolve().parent.parent
    out = tmp_path / "out"
    argv = ["--task", "text-classification", "--dataset", str(root / "data.csv"), "--models", *models, "--matrix",
            str(root / "records.csv"), "--k", "3", "--budget", "24", "--stage-steps", "4", "--proxy-samples", "64",
            "--cpu", "--json", "--output-dir", str(out)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "examples/select.py"]
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "examples/select.py"]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    first = subprocess.Popen([*torchrun, *argv], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    deadline = time.time() + 180
    while not list(out.glob("selection_state/records/*.json")) and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate(timeout=60)
    decided = sorted(p.name for p in out.glob("selection_state/records/*.json"))
    assert decided, "the first run ended before its first decision"
    before = {p.name: p.read_text() for p in out.glob("selection_state/reports/*.json")}
    # resumed with the other launcher: `accelerate launch --multi_gpu` runs CPU processes over gloo just the same
    done = subprocess.run([*accelerate, *argv, "--resume"], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["processes"] == 2 and done.stderr.count("  done in ") == 1
    assert done.stderr.count("phase 1: ranking") == 1 and "{'loss'" not in done.stderr
    assert summary["winner"] in models and (out / "winner" / "config.json").is_file()
    assert all((out / "selection_state" / "reports" / name).read_text() == text for name, text in before.items())


def test_labels_that_cannot_be_used_say_what_is_wrong_in_the_users_words(setup, capsys, tmp_path):
    from PIL import Image

    root, models = setup
    rows = "".join(f"t{i},{'' if i == 7 else i % 2}\n" for i in range(20))
    (tmp_path / "holes.csv").write_text("text,label\n" + rows)
    (tmp_path / "one" / "cat").mkdir(parents=True)
    for i in range(12):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(tmp_path / "one" / "cat" / f"{i}.png")
    (tmp_path / "nolabel.csv").write_text("text,score\n" + "".join(f"t{i},{i}\n" for i in range(20)))
    cases = [("text-classification", tmp_path / "holes.csv", "has 1 empty value(s); expected a class id"),
             ("image-classification", tmp_path / "one", "needs at least two"),
             ("text-classification", tmp_path / "nolabel.csv", "--label-column on the command line")]
    for task, dataset, message in cases:
        code, err = _run(capsys, "--task", task, "--dataset", dataset, "--models", *models, "--matrix",
                         root / "records.csv", "--output-dir", tmp_path / "out", "--cpu")
        assert code == 2 and message in err and "Traceback" not in err, err


def test_an_epoch_budget_is_counted_in_steps_as_the_trainer_counts_them(setup, capsys, tmp_path):
    import transformers as tf

    from hf_twophase.trainer.coordinator import budget_of

    args = tf.TrainingArguments(str(tmp_path / "a"), num_train_epochs=2, per_device_train_batch_size=16,
                                use_cpu=True, report_to=[])
    assert args.max_steps <= 0 and budget_of(args, 100) == 2 * 7  # ceil(100 / 16) batches an epoch
    accumulated = tf.TrainingArguments(str(tmp_path / "b"), num_train_epochs=1.5, per_device_train_batch_size=16,
                                       gradient_accumulation_steps=3, use_cpu=True, report_to=[])
    assert budget_of(accumulated, 100) == 5  # ceil(1.5 * ceil(7 / 3))
    assert budget_of(tf.TrainingArguments(str(tmp_path / "c"), max_steps=9, num_train_epochs=5, use_cpu=True,
                                          report_to=[]), 100) == 9  # max_steps wins, as in the Trainer
    root, models = setup
    out = tmp_path / "out"
    argv = ["--task", "text-classification", "--dataset", root / "data.csv", "--models", *models, "--matrix",
            root / "records.csv", "--k", 2, "--epochs", 1, "--batch-size", 16, "--learning-rate", 3e-3,
            "--proxy-samples", 64, "--output-dir", out, "--cpu", "--json"]
    assert main([str(a) for a in argv]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["brute_force_steps"] == 2 * 8  # 128 training examples (20% of 160 held out) in batches of 16
    report = json.loads((out / "report.json").read_text())
    assert report["budget"] == 8 and max(c["steps_trained"] for c in report["candidates"]) == 8
    with pytest.raises(SystemExit) as stop:
        main([*map(str, argv[:-1]), "--budget", "4"])
    assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_each_task_has_its_own_default_output_folder(monkeypatch, capsys):
    """The documented text run after the image default must not find the image selection in its folder."""
    import hf_twophase.cli.select as job

    seen = []
    monkeypatch.setattr(job, "run", lambda args: seen.append(args.output_dir) or {"screen": "", "main": True})
    assert job.main([]) == 0 and job.main(["--task", "text-classification"]) == 0
    assert job.main(["--output-dir", "mine"]) == 0
    assert seen == ["runs/select/image-classification", "runs/select/text-classification", "mine"]

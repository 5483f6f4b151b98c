"""Names from outside never become paths as they are: a candidate named ``..`` or ``.`` keeps its folder inside
``candidates/``, a pruned candidate never deletes anything else, and links planted in the output folder are replaced,
never written through."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from hf_twophase.cli.select import main
from hf_twophase.paths import UnsafePathError, folder_name, real_folder, remove_tree
from tests.coordinator_helpers import make_candidates, make_data


@pytest.mark.parametrize("name", ["..", ".", "", "/", "/etc/passwd", "../../m0", "a/../../b", "..\\..", "~root",
                                  ".hidden", "x" * 500, "é/ü", "a\x00b", "-rf"])
def test_every_name_becomes_one_ordinary_component(name):
    slug = folder_name(name)
    assert "/" not in slug and "\\" not in slug and "\x00" not in slug
    assert slug not in ("", ".", "..") and not slug.startswith((".", "-")) and len(slug) <= 80
    assert Path(slug).name == slug and not Path(slug).is_absolute()


def test_names_that_differ_only_in_dropped_characters_get_their_own_folders():
    names = ["a/b", "a--b", "a b", "a?b", "../a b", "A/B"]
    assert len({folder_name(n) for n in names}) == len(names)
    assert folder_name("org/model") == folder_name("org/model")  # stable across calls and processes


def test_remove_tree_refuses_the_root_and_what_lies_outside(tmp_path):
    root, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (root / "candidates").mkdir(parents=True)
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    for target in (root / "candidates" / "..", root, root / "candidates" / ".." / ".." / "elsewhere"):
        with pytest.raises(UnsafePathError):
            remove_tree(root, target)
    (root / "candidates" / "link").symlink_to(elsewhere)
    remove_tree(root, root / "candidates" / "link")  # the link goes, its target stays
    assert not (root / "candidates" / "link").exists() and (elsewhere / "keep.txt").read_text() == "mine"
    assert root.is_dir() and (root / "candidates").is_dir()


def test_real_folder_replaces_links_instead_of_following_them(tmp_path):
    root, victim = tmp_path / "out", tmp_path / "victim"
    victim.mkdir()
    (victim / "secret.txt").write_text("theirs")
    root.mkdir()
    (root / "winner").symlink_to(victim)
    real_folder(root, root / "winner")
    assert not (root / "winner").is_symlink() and list((root / "winner").iterdir()) == []
    (root / "winner" / "config.json").symlink_to(victim / "secret.txt")
    real_folder(root, root / "winner")
    assert not (root / "winner" / "config.json").exists() and (victim / "secret.txt").read_text() == "theirs"


@pytest.fixture(scope="module")
def relative_candidates(tmp_path_factory):
    """cands/m0, cands/m1 (named ``..`` from cands/m1/sub), cands/m1/sub (named ``.``), cands/m2; a matrix that
    recalls all four; a user's output folder with a file of their own."""
    root = tmp_path_factory.mktemp("hostile")
    made = make_candidates(root / "made", hidden=(16, 8, 12, 10))
    places = [root / "cands" / "m0", root / "cands" / "m1", root / "cands" / "m1" / "sub", root / "cands" / "m2"]
    for source, place in zip(made, places, strict=True):
        shutil.copytree(source, place, dirs_exist_ok=True)
    names = ["../../m0", "..", ".", "../../m2"]
    rows = [{"model": m, "dataset": b, "step": s, "val": 0.9 - 0.1 * i - 0.05 * (3 - s), "test": 0.9 - 0.1 * i,
             "cost": 1.0} for i, m in enumerate(names) for b in ("b1", "b2", "b3") for s in (1, 2, 3)]
    pd.DataFrame(rows).to_csv(root / "records.csv", index=False)
    data = make_data(96, 0)
    pd.DataFrame({"text": data["text"], "label": data["label"]}).to_csv(root / "data.csv", index=False)
    return root, names


def _select(root: Path, names: list[str], out: str, *extra: str) -> int:
    argv = ["--task", "text-classification", "--dataset", str(root / "data.csv"), "--models", *names, "--matrix",
            str(root / "records.csv"), "--k", "4", "--budget", "4", "--stage-steps", "1", "--proxy-samples", "32",
            "--output-dir", out, "--cpu", "--json", *extra]
    return main(argv)


def test_candidates_named_dot_and_dotdot_never_touch_the_output_folder(relative_candidates, monkeypatch, capsys):
    root, names = relative_candidates
    workdir = root / "cands" / "m1" / "sub"
    out = workdir / "OUT"
    out.mkdir(exist_ok=True)
    (out / "notes.txt").write_text("the user's own file")
    monkeypatch.chdir(workdir)
    assert _select(root, names, "OUT") == 0
    summary = json.loads(capsys.readouterr().out)
    assert (out / "notes.txt").read_text() == "the user's own file"
    assert (out / "selection_state").is_dir() and (out / "select.log").is_file()
    assert (out / "winner" / "config.json").is_file() and summary["winner"] in names
    assert not list(out.glob("checkpoint-*")) and not list((out / "winner").glob("checkpoint-*"))
    report = json.loads((out / "report.json").read_text())
    pruned = [c["name"] for c in report["candidates"] if c["status"] == "pruned"]
    assert pruned, "the test needs a pruned candidate"
    left = [p.name for p in (out / "candidates").iterdir()]
    assert all(p not in (".", "..") and "/" not in p for p in left)
    assert (root / "cands" / "m0" / "config.json").is_file() and (root / "cands" / "m1" / "config.json").is_file()


def test_links_planted_in_the_winner_folder_are_replaced_on_resume(relative_candidates, monkeypatch, capsys,
                                                                   tmp_path):
    root, names = relative_candidates
    monkeypatch.chdir(root / "cands" / "m1" / "sub")
    out = tmp_path / "out"
    assert _select(root, names, str(out)) == 0
    capsys.readouterr()
    victim_file = tmp_path / "victim.json"
    victim_file.write_text("not a model config")
    (out / "winner" / "config.json").unlink()
    (out / "winner" / "config.json").symlink_to(victim_file)
    assert _select(root, names, str(out), "--resume") == 0
    assert victim_file.read_text() == "not a model config"
    assert not (out / "winner" / "config.json").is_symlink() and (out / "winner" / "config.json").is_file()
    victim_dir = tmp_path / "victim_dir"
    victim_dir.mkdir()
    shutil.rmtree(out / "winner")
    (out / "winner").symlink_to(victim_dir)
    assert _select(root, names, str(out), "--resume") == 0
    assert list(victim_dir.iterdir()) == [] and not (out / "winner").is_symlink()
    assert (out / "winner" / "config.json").is_file()

"""The one helper every state file goes through: whole files or none, the first exclusive writer wins, the umask
decides permissions, and a damaged file is one clear error."""

from __future__ import annotations

import os
import threading

import pytest

from hf_twophase.atomic import StateFileError, atomic_path, read_json, write_json_atomic, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"v": 2, "half')
        raise RuntimeError("crash mid-write")
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_exclusive_publishes_the_first_whole_file_only(tmp_path):
    target = tmp_path / "decision.json"
    winners, errors = [], []

    def write(i):
        try:
            write_json_atomic(target, {"writer": i, "pad": "x" * 100_000}, exclusive=True)
            winners.append(i)
        except FileExistsError:
            errors.append(i)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(errors) == 7
    assert read_json(target)["writer"] == winners[0]
    assert [p.name for p in tmp_path.iterdir()] == ["decision.json"]


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("content", [b"", b'{"a": ', b"\xff\xfe", b"not json"])
def test_a_damaged_file_is_one_clear_error(tmp_path, content):
    path = tmp_path / "selection.json"
    path.write_bytes(content)
    with pytest.raises(StateFileError, match=r"the selection manifest .*selection.json is damaged.*delete it"):
        read_json(path, what="the selection manifest", hint="delete it to start over")

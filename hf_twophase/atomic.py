"""Writing state files so that a crash never leaves half of one, and reading them back with one clear error.

Every file the library writes and later trusts (the coordinator's manifest and shared state, matrix-build cells and
manifests, proxy-score caches, the local Hub's repositories and blobs) goes through here. A write lands in a
temporary file in the destination's own folder (a rename is atomic only within one file system), is flushed and
fsynced, then renamed over the destination: a reader sees the old file or the new one, never a torn one.
Temporary files are created with mode 0o666 so the user's umask decides the final permissions, as it would for
a plain ``open(path, "w")``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hf_twophase.errors import HFTwoPhaseError

_counter = iter(range(1 << 62))
_counter_lock = threading.Lock()


class StateFileError(HFTwoPhaseError, ValueError):
    """A state file exists but cannot be read back (cut short by a crash before atomic writes, or edited by hand)."""


def _temporary_name(path: Path) -> Path:
    with _counter_lock:
        n = next(_counter)
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{n}.tmp")


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot open a folder; the rename is still atomic there
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for any writer (pandas, torch, ...); on success it replaces ``path``.

    With ``exclusive``, the file is published only if ``path`` does not exist yet (``FileExistsError`` otherwise):
    the first of several concurrent writers wins and every reader sees its whole content, which an ``O_EXCL``
    create followed by a write cannot promise.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, path)  # fails if path exists: an atomic "create with this content"
            tmp.unlink()
        else:
            os.replace(tmp, path)
        _fsync_folder(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, exclusive: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_path(path, exclusive=exclusive) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, *, exclusive: bool = False) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), exclusive=exclusive)


def write_json_atomic(path: str | os.PathLike, data: Any, *, exclusive: bool = False,
                      indent: int | None = None) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=indent), exclusive=exclusive)


def read_json(path: str | os.PathLike, *, what: str = "state file", hint: str = "") -> Any:
    """Read a JSON state file; a damaged one raises :class:`StateFileError` naming the file, what it is, and
    ``hint`` (what the user can do about it), instead of a bare ``JSONDecodeError`` traceback."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        message = f"{what} {path} is damaged and cannot be read ({type(error).__name__}: {error})"
        raise StateFileError(message + (f"; {hint}" if hint else "")) from None


_KINDS = {  # what a field of a state file may hold, by the name the error message uses
    str: ("a string", lambda v: isinstance(v, str)),
    int: ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    float: ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    bool: ("true or false", lambda v: isinstance(v, bool)),
    dict: ("an object", lambda v: isinstance(v, dict)),
    list: ("a list", lambda v: isinstance(v, list)),
}


def check_fields(data: Any, fields: dict[str, type], *, path: str | os.PathLike, what: str, hint: str = "") -> dict:
    """``data`` if it is a JSON object whose fields hold what ``fields`` says (a name ending in ``?`` may be absent
    or null); otherwise one :class:`StateFileError` that names the file, the field and what was expected."""

    def fail(problem: str) -> StateFileError:
        return StateFileError(f"{what} {path} is damaged: {problem}" + (f"; {hint}" if hint else ""))

    if not isinstance(data, dict):
        raise fail(f"expected a JSON object, found {type(data).__name__}")
    for name, kind in fields.items():
        optional = name.endswith("?")
        key = name.rstrip("?")
        value = data.get(key)
        if value is None and optional:
            continue
        if key not in data:
            raise fail(f"field {key!r} is missing")
        expected, accepts = _KINDS[kind]
        if not accepts(value):
            raise fail(f"field {key!r} should be {expected}, found {json.dumps(value)[:60]}")
    return data


def read_state(path: str | os.PathLike, fields: dict[str, type], *, what: str, hint: str = "") -> dict:
    """Read a JSON state file and check its fields (see :func:`check_fields`): one clear error, never a traceback
    deep in the code that trusted it."""
    return check_fields(read_json(path, what=what, hint=hint), fields, path=path, what=what, hint=hint)


__all__ = ["StateFileError", "atomic_path", "check_fields", "read_json", "read_state", "write_bytes_atomic",
           "write_json_atomic", "write_text_atomic"]

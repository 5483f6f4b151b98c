"""Folders and files named after things that arrive from outside (candidate names, Hub ids, local paths), kept
inside the folder they belong to.

Why it exists: a candidate is named by whatever the user passed (``../../m0``, ``..``, ``/abs/path``, a Hub id),
and the job creates, writes and deletes folders named after it inside the output folder. A name used as a path
component as it is can point anywhere: ``candidates/..`` is the output folder itself, and deleting it when the
candidate is pruned deletes everything the user kept there. So every such name becomes a slug that can only be a
single, ordinary path component, made unique by a hash of the whole name; every folder the job deletes is checked
to lie inside its root first; and a folder the job writes into is made a real folder whose links are removed, never
followed, so a link planted there cannot redirect a write to a file elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from hf_twophase.errors import HFTwoPhaseError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_SLUG = 64  # characters of the readable part; the hash keeps longer names apart


class UnsafePathError(HFTwoPhaseError, ValueError):
    """A path the library was about to write or delete lies outside the folder it belongs to."""


def folder_name(name: str) -> str:
    """A single path component for ``name``: its readable letters, then 8 hex digits of its sha256.

    ``org/model`` -> ``org--model-1a2b3c4d``; ``/cache/models/lite2`` -> ``lite2-...``; ``..`` -> ``x-4f1b...``; never
    empty, ``.``, ``..``, absolute or hidden,
    and two names that differ only in characters the slug drops still get different folders.
    """
    text = str(name)
    if text.startswith(("/", ".", "~")):  # a local path: its last part says which model it is
        text = text.rstrip("/").rsplit("/", 1)[-1] or text
    readable = _UNSAFE.sub("-", text.replace("/", "--").replace("\\", "--")).strip(".-")[:MAX_SLUG].strip(".-")
    digest = hashlib.sha256(str(name).encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{readable or 'x'}-{digest}"


def display_name(name: str) -> str:
    """A candidate as people read it: a local folder by its own name (the embedded repository's models live deep in
    a cache), anything else (a Hub id, ``packaged:NAME``) as it is. Machine-readable reports keep the full names."""
    return Path(name).name if Path(name).is_absolute() else name


def inside(root: str | os.PathLike, path: str | os.PathLike, *, or_root: bool = False) -> Path:
    """``path`` resolved (every link followed); :class:`UnsafePathError` unless it lies strictly inside ``root``
    (or is ``root`` itself, with ``or_root``)."""
    root_resolved = Path(root).resolve()
    resolved = Path(path).resolve()
    if root_resolved not in resolved.parents and not (or_root and resolved == root_resolved):
        raise UnsafePathError(f"{path} resolves to {resolved}, outside {root_resolved}; nothing was written or "
                              "deleted there")
    return resolved


def remove_tree(root: str | os.PathLike, path: str | os.PathLike) -> None:
    """Delete the folder ``path`` inside ``root``: a link there is removed itself (its target is never touched),
    and a path that resolves outside ``root``, or to ``root`` itself, is refused before anything is deleted."""
    path = Path(path)
    if path.is_symlink():
        inside(root, path.parent, or_root=True)
        path.unlink()
        return
    if not path.exists():
        return
    shutil.rmtree(inside(root, path))


def real_folder(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Make ``path`` (inside ``root``) a real folder that holds no links, and return it.

    A link at ``path`` itself, or any link below it, is removed rather than followed: writers such as
    ``save_pretrained`` open files by name and would otherwise write through a planted link to a file elsewhere.
    """
    path = Path(path)
    if path.is_symlink():
        path.unlink()
    inside(root, path.parent, or_root=True)
    path.mkdir(parents=True, exist_ok=True)
    inside(root, path)
    for base, folders, files in os.walk(path):  # os.walk does not descend into links to folders
        for name in folders + files:
            entry = Path(base) / name
            if entry.is_symlink():
                entry.unlink()
    return path


__all__ = ["UnsafePathError", "display_name", "folder_name", "inside", "real_folder", "remove_tree"]

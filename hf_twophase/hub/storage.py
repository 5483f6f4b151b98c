"""The local Hub's repositories on disk: ``repos/{type}/{id}.json`` holds refs, commits and settings, ``blobs/`` the
content-addressed bytes.

Every name it is given has passed ``hub.guard``; every path it opens is resolved and must lie inside the root, and
every file it writes is written atomically, so a server killed at any instant leaves whole files only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hf_twophase.atomic import atomic_path, read_json, write_bytes_atomic, write_json_atomic
from hf_twophase.errors import HFTwoPhaseError
from hf_twophase.hub import guard
from hf_twophase.hub.guard import RequestRejected

_CHUNK = 1 << 20


class HubServerError(HFTwoPhaseError, ValueError):
    """Raised for a bad server configuration, such as a non-loopback address."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def _git_blob_oid_of_file(path: Path, size: int) -> str:
    digest = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _safetensors_parameters(head: bytes) -> dict[str, int] | None:
    """Parameter counts per dtype from a safetensors header, as the Hub reports them in ``safetensors``."""
    if len(head) < 8:
        return None
    (length,) = struct.unpack("<Q", head[:8])
    try:
        header = json.loads(head[8 : 8 + length])
        counts: dict[str, int] = {}
        for name, entry in header.items():
            if name == "__metadata__" or not isinstance(entry, dict):
                continue
            n = 1
            for dim in entry.get("shape", []):
                n *= int(dim)
            dtype = str(entry.get("dtype", "F32"))
            counts[dtype] = counts.get(dtype, 0) + n
        return counts
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError, OverflowError):
        return None  # a file that only looks like safetensors: no parameter count, not an error


class HubStorage:
    """Repositories on disk: ``repos/{type}/{id}.json`` holds refs, commits and settings; ``blobs/`` the bytes.

    Every write goes through one lock and an atomic rename, so a crashed server never leaves a half-written repo.
    Every path is built from names the guard accepted and is resolved inside the root before it is opened.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "repos").mkdir(parents=True, exist_ok=True)
        self.root = self.root.resolve()
        self._blobs = self.root / "blobs"
        for folder in (self._blobs, self.root / "repos"):
            if folder.is_symlink() or not folder.is_dir():
                raise HubServerError(f"{folder} must be a real folder inside the hub's root, not a link")
        self.lock = threading.RLock()
        self._parameters: dict[str, dict[str, int]] = {}

    # --- repositories -------------------------------------------------------------------------------------------
    def _repo_file(self, repo_type: str, repo_id: str) -> Path:
        repo_type = guard.repo_type_folder(repo_type, singular=False)
        return guard.inside(self.root, self.root / "repos" / repo_type / f"{guard.repo_id(repo_id)}.json")

    def exists(self, repo_type: str, repo_id: str) -> bool:
        return self._repo_file(repo_type, repo_id).is_file()

    def load(self, repo_type: str, repo_id: str) -> dict:
        path = self._repo_file(repo_type, repo_id)
        if not path.is_file():
            raise RequestRejected(404, f"Repository {repo_type[:-1]} '{repo_id}' not found.", "RepoNotFound")
        return read_json(path, what="local hub repository file")

    def save(self, repo_type: str, repo_id: str, repo: dict) -> None:
        write_json_atomic(self._repo_file(repo_type, repo_id), repo)

    def create(self, repo_type: str, repo_id: str, *, private: bool = False) -> dict:
        with self.lock:
            if self.exists(repo_type, repo_id):
                raise RequestRejected(409, f"You already created this {repo_type[:-1]} repo: {repo_id}", "RepoExists")
            created = _now()
            gitattributes = b"".join(f"*.{ext} filter=lfs diff=lfs merge=lfs -text\n".encode()
                                     for ext in ("parquet", "safetensors", "bin", "arrow"))
            entry = self._store_blob(gitattributes, lfs=False)
            oid = hashlib.sha1(f"{repo_type}/{repo_id}@{created}@{time.time_ns()}".encode()).hexdigest()
            repo = {
                "id": repo_id, "type": repo_type, "created_at": created,
                "settings": {"private": bool(private), "gated": False, "downloads": 0, "likes": 0},
                "refs": {"main": oid},
                "commits": {oid: {"parent": None, "title": "initial commit", "date": created,
                                  "files": {".gitattributes": entry}}},
            }
            self.save(repo_type, repo_id, repo)
            return repo

    def delete(self, repo_type: str, repo_id: str) -> None:
        with self.lock:
            path = self._repo_file(repo_type, repo_id)
            if not path.is_file():
                raise RequestRejected(404, f"Repository {repo_type[:-1]} '{repo_id}' not found.", "RepoNotFound")
            path.unlink()

    def list(self, repo_type: str) -> list[dict]:
        """Every repository of a type; files that are not a valid repository inside the root are passed over."""
        folder = self.root / "repos" / guard.repo_type_folder(repo_type, singular=False)
        out = []
        for base, _, names in os.walk(folder):  # os.walk does not follow links to folders
            for name in sorted(names):
                if not name.endswith(".json") or name.startswith("."):
                    continue
                repo_id = (Path(base) / name[: -len(".json")]).relative_to(folder).as_posix()
                with contextlib.suppress(RequestRejected, HFTwoPhaseError, OSError):
                    out.append(self.load(repo_type, repo_id))
        return sorted(out, key=lambda r: r.get("id", ""))

    def update_settings(self, repo_type: str, repo_id: str, **settings: Any) -> None:
        """Set ``private``, ``gated`` (False, "auto", "manual"), ``downloads`` or ``likes`` of a repository."""
        with self.lock:
            repo = self.load(repo_type, repo_id)
            repo["settings"].update({k: v for k, v in settings.items() if v is not None})
            self.save(repo_type, repo_id, repo)

    # --- blobs and commits --------------------------------------------------------------------------------------
    def _blob_path(self, sha256: str) -> Path:
        """Where a blob is read from: resolved, and refused if a link leads it out of the root."""
        return guard.inside(self.root, self._blobs / guard.sha256_oid(sha256))

    def has_blob(self, sha256: str) -> bool:
        try:
            return self._blob_path(sha256).is_file()
        except RequestRejected:
            return False  # a link planted under that name is not a blob; an upload replaces the link itself

    def put_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.has_blob(sha):
            write_bytes_atomic(self._blobs / sha, data)  # the rename replaces a link by that name, never its target
        return sha

    def put_blob_stream(self, chunks: Iterator[bytes], sha256: str, size: int) -> None:
        """Stream an upload to a temporary file; keep it as blob ``sha256`` only if its hash and size match."""
        digest, received = hashlib.sha256(), 0
        with atomic_path(self._blobs / guard.sha256_oid(sha256)) as tmp:
            with open(tmp, "wb") as handle:
                for chunk in chunks:
                    received += len(chunk)
                    if received > size:
                        raise RequestRejected(400, f"Upload is larger than the {size} bytes announced for {sha256}.")
                    digest.update(chunk)
                    handle.write(chunk)
            if received != size or digest.hexdigest() != sha256:
                raise RequestRejected(400, f"Uploaded bytes ({received}) do not hash to {sha256} of size {size}; "
                                           "nothing was kept.")

    def _store_blob(self, data: bytes, *, lfs: bool) -> dict:
        sha = self.put_blob(data)
        return {"sha256": sha, "size": len(data), "lfs": lfs,
                "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}

    def parameter_counts(self, sha256: str) -> dict[str, int]:
        """Parameters per dtype of a safetensors blob, read from its header once (blobs never change)."""
        if sha256 not in self._parameters:
            with open(self._blob_path(sha256), "rb") as handle:
                head = handle.read(8)
                length = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
                self._parameters[sha256] = _safetensors_parameters(head + handle.read(min(length, 100_000_000))) or {}
        return self._parameters[sha256]

    def open_blob(self, sha256: str):
        return open(self._blob_path(sha256), "rb")

    def read_blob(self, sha256: str) -> bytes:
        return self._blob_path(sha256).read_bytes()

    def resolve(self, repo: dict, revision: str) -> tuple[str, dict]:
        revision = guard.revision(revision)
        if revision in repo["refs"]:
            oid = repo["refs"][revision]
        elif revision in repo["commits"]:
            oid = revision
        else:
            raise RequestRejected(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return oid, repo["commits"][oid]

    def commit(self, repo_type: str, repo_id: str, revision: str, header: dict, operations: list[dict]) -> str:
        """Apply every operation or none: the new file table is built in memory and saved in one atomic write."""
        with self.lock:
            repo = self.load(repo_type, repo_id)
            revision = guard.revision(revision)
            if revision not in repo["refs"]:
                raise RequestRejected(404, f"Branch {revision} not found; commits go to an existing branch.",
                                           "RevisionNotFound")
            parent, current = self.resolve(repo, revision)
            wanted_parent = header.get("parentCommit")
            if wanted_parent and wanted_parent != parent:
                raise RequestRejected(412, f"A commit has happened since {wanted_parent}; the branch is at {parent}.")
            files = dict(current["files"])
            for key, value in operations:
                if key == "file":
                    files[value["path"]] = self._store_blob(value["data"], lfs=False)
                elif key == "lfsFile":
                    oid = value["oid"]
                    if not self.has_blob(oid):
                        raise RequestRejected(400, f"LFS object {oid} for {value['path']} was never uploaded.")
                    size = self._blob_path(oid).stat().st_size
                    if value.get("size") is not None and value["size"] != size:
                        raise RequestRejected(400, f"LFS object {oid} has {size} bytes, not {value['size']}.")
                    files[value["path"]] = {"sha256": oid, "size": size, "lfs": True,
                                            "oid": _git_blob_oid_of_file(self._blob_path(oid), size)}
                elif key == "deletedFile":
                    if value["path"] not in files:
                        raise RequestRejected(404, f"File {value['path']} does not exist.", "EntryNotFound")
                    del files[value["path"]]
                elif key == "deletedFolder":
                    prefix = value["path"] + "/"
                    files = {p: e for p, e in files.items() if not p.startswith(prefix)}
            date = _now()
            oid = hashlib.sha1(json.dumps([parent, sorted(files), header, date, time.time_ns()]).encode()).hexdigest()
            repo["commits"][oid] = {"parent": parent, "title": str(header.get("summary", "")), "date": date,
                                    "files": files}
            repo["refs"][revision] = oid
            self.save(repo_type, repo_id, repo)
            return oid

    def count_download(self, repo_type: str, repo_id: str) -> None:
        with self.lock:
            repo = self.load(repo_type, repo_id)
            repo["settings"]["downloads"] = int(repo["settings"].get("downloads", 0)) + 1
            self.save(repo_type, repo_id, repo)

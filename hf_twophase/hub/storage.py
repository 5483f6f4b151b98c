"""The local Hub's repositories on disk: ``repos/{type}/{id}.json`` holds refs, commits and settings, ``blobs/`` the
content-addressed bytes, ``downloads.json`` the download counts.

Every name it is given has passed ``hub.guard``; every repository path is resolved and must lie inside the root;
blobs are opened relative to the blob folder's own descriptor without following links, and a blob that is a hard
link or belongs to another user is not served (a local user who can write into the root cannot make the server read
or write a file elsewhere). Every file is written atomically, so a server killed at any instant leaves whole files
only, and temporary files a killed upload left behind are removed at start.

A commit stores what it changed against its parent (every 64th commit stores its whole file table), so a commit to a
repository of many files writes what changed, not the whole table again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hf_twophase.atomic import read_json, write_json_atomic
from hf_twophase.errors import HFTwoPhaseError
from hf_twophase.hub import guard
from hf_twophase.hub.front_matter import card_metadata
from hf_twophase.hub.guard import RequestRejected

_CHUNK = 1 << 20
SNAPSHOT_EVERY = 64  # commits between two whole file tables
DOWNLOADS_FLUSH_SECONDS = 10.0
STALE_TEMPORARY_SECONDS = 60.0
_TABLE_CACHE = 256  # resolved file tables kept in memory


class HubServerError(HFTwoPhaseError, ValueError):
    """Raised for a bad server configuration, such as a non-loopback address."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


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

    Each repository has its own lock, so a large commit to one never holds up another. Blobs need no lock: they are
    content-addressed and written by an atomic rename.
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
        self._blobs_fd = os.open(self._blobs, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        self._locks: dict[tuple[str, str], threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self._parameters: dict[str, dict[str, int]] = {}
        self._cards: dict[str, dict] = {}
        self._tables: OrderedDict[tuple, tuple[dict, int]] = OrderedDict()
        self._tables_lock = threading.Lock()  # request threads resolve commits at once
        self._downloads_lock = threading.Lock()
        self._downloads_file = self.root / "downloads.json"
        self._downloads: dict[str, int] = self._read_downloads()
        self._downloads_dirty = False
        self._downloads_flushed = time.monotonic()
        self._remove_stale_temporaries()

    def close(self) -> None:
        self.flush_downloads()
        with contextlib.suppress(OSError):
            os.close(self._blobs_fd)

    def lock(self, repo_type: str, repo_id: str) -> threading.RLock:
        with self._locks_guard:
            return self._locks.setdefault((repo_type, repo_id), threading.RLock())

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of uploads and writes that a killed server never finished."""
        cutoff = time.time() - STALE_TEMPORARY_SECONDS
        for name in os.listdir(self._blobs_fd):
            if name.startswith(".") and name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    if os.stat(name, dir_fd=self._blobs_fd, follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(name, dir_fd=self._blobs_fd)
        for base, _, names in os.walk(self.root / "repos"):
            for name in names:
                path = Path(base) / name
                if name.startswith(".") and name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        if path.lstat().st_mtime < cutoff:
                            path.unlink()

    # --- repositories -------------------------------------------------------------------------------------------
    def _repo_file(self, repo_type: str, repo_id: str) -> Path:
        repo_type = guard.repo_type_folder(repo_type, singular=False)
        return guard.inside(self.root, self.root / "repos" / repo_type / f"{guard.repo_id(repo_id)}.json")

    def exists(self, repo_type: str, repo_id: str) -> bool:
        return self._repo_file(repo_type, repo_id).is_file()

    def load(self, repo_type: str, repo_id: str) -> dict:
        path = self._repo_file(repo_type, repo_id)
        if not path.is_file():
            raise guard.repo_not_found(repo_id)
        return read_json(path, what="local hub repository file")

    def save(self, repo_type: str, repo_id: str, repo: dict) -> None:
        write_json_atomic(self._repo_file(repo_type, repo_id), repo)

    def create(self, repo_type: str, repo_id: str, *, private: bool = False) -> dict:
        with self.lock(repo_type, repo_id):
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
        with self.lock(repo_type, repo_id):
            path = self._repo_file(repo_type, repo_id)
            if not path.is_file():
                raise guard.repo_not_found(repo_id)
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
        with self.lock(repo_type, repo_id):
            repo = self.load(repo_type, repo_id)
            repo["settings"].update({k: v for k, v in settings.items() if v is not None})
            self.save(repo_type, repo_id, repo)
            if settings.get("downloads") is not None:
                with self._downloads_lock:
                    if self._downloads.pop(f"{repo_type}/{repo_id}", None) is not None:
                        self._downloads_dirty = True  # never clear a flag that other counts have set

    # --- download counts ----------------------------------------------------------------------------------------
    def _read_downloads(self) -> dict[str, int]:
        if not self._downloads_file.is_file():
            return {}
        try:
            data = read_json(self._downloads_file, what="local hub download counts")
        except HFTwoPhaseError:
            return {}  # counts are a convenience: damaged ones start again from the repositories' settings
        return {str(k): int(v) for k, v in data.items() if isinstance(v, int)} if isinstance(data, dict) else {}

    def downloads(self, repo: dict) -> int:
        with self._downloads_lock:
            counted = self._downloads.get(f"{repo['type']}/{repo['id']}", 0)
        return int(repo["settings"].get("downloads", 0)) + counted

    def count_download(self, repo_type: str, repo_id: str) -> None:
        """Counted in memory and written at most every few seconds: a download never waits for a disk write."""
        with self._downloads_lock:
            key = f"{repo_type}/{repo_id}"
            self._downloads[key] = self._downloads.get(key, 0) + 1
            self._downloads_dirty = True
            due = time.monotonic() - self._downloads_flushed > DOWNLOADS_FLUSH_SECONDS
        if due:
            self.flush_downloads()

    def flush_downloads(self) -> None:
        with self._downloads_lock:
            if not self._downloads_dirty:
                return
            snapshot, self._downloads_dirty = dict(self._downloads), False
            self._downloads_flushed = time.monotonic()
        write_json_atomic(self._downloads_file, snapshot)

    # --- blobs --------------------------------------------------------------------------------------------------
    @staticmethod
    def _trusted(st: os.stat_result) -> bool:
        """A blob the server wrote: a regular file, with no other name (no hard link), owned by this user."""
        return stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid == os.geteuid()

    def has_blob(self, sha256: str) -> bool:
        try:
            st = os.stat(guard.sha256_oid(sha256), dir_fd=self._blobs_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return self._trusted(st)  # a link or foreign file by that name is not a blob; an upload replaces it

    def open_blob(self, sha256: str):
        """The blob's bytes, opened relative to the blob folder without following a link; refused unless trusted."""
        try:
            fd = os.open(guard.sha256_oid(sha256), os.O_RDONLY | os.O_NOFOLLOW, dir_fd=self._blobs_fd)
        except OSError:
            raise RequestRejected(404, "Not found.", "EntryNotFound") from None
        if not self._trusted(os.fstat(fd)):
            os.close(fd)
            raise RequestRejected(404, "Not found.", "EntryNotFound")
        return os.fdopen(fd, "rb")

    def read_blob(self, sha256: str) -> bytes:
        with self.open_blob(sha256) as handle:
            return handle.read()

    def _write_blob(self, sha256: str, chunks: Iterator[bytes], size: int | None = None) -> None:
        """Stream ``chunks`` into blob ``sha256``, relative to the blob folder's descriptor, keeping it only if the
        bytes hash to ``sha256`` (and number ``size``); the rename replaces a link by that name, never its target."""
        name = guard.sha256_oid(sha256)
        tmp = f".{name}.{os.getpid()}.{threading.get_ident()}.{time.time_ns()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=self._blobs_fd)
        try:
            digest, received = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    received += len(chunk)
                    if size is not None and received > size:
                        raise RequestRejected(400, f"Upload is larger than the {size} bytes announced for {name}.")
                    digest.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            if (size is not None and received != size) or digest.hexdigest() != name:
                raise RequestRejected(400, f"Uploaded bytes ({received}) do not hash to {name}"
                                           + (f" of size {size}" if size is not None else "") + "; nothing was kept.")
            os.replace(tmp, name, src_dir_fd=self._blobs_fd, dst_dir_fd=self._blobs_fd)
            os.fsync(self._blobs_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=self._blobs_fd)
            raise

    def put_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.has_blob(sha):
            self._write_blob(sha, iter([data]))
        return sha

    def put_blob_stream(self, chunks: Iterator[bytes], sha256: str, size: int) -> None:
        """Stream an upload to a temporary file; keep it as blob ``sha256`` only if its hash and size match."""
        self._write_blob(sha256, chunks, size)

    @staticmethod
    def check_stream(chunks: Iterator[bytes], sha256: str, size: int) -> None:
        """Read an upload of a blob that is already stored, and check that it is those bytes (keeping nothing)."""
        digest, received = hashlib.sha256(), 0
        for chunk in chunks:
            received += len(chunk)
            digest.update(chunk)
        if received != size or digest.hexdigest() != sha256:
            raise RequestRejected(400, f"Uploaded bytes ({received}) do not hash to {sha256} of size {size}.")

    def _store_blob(self, data: bytes, *, lfs: bool) -> dict:
        sha = self.put_blob(data)
        return {"sha256": sha, "size": len(data), "lfs": lfs,
                "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}

    def parameter_counts(self, sha256: str) -> dict[str, int]:
        """Parameters per dtype of a safetensors blob, read from its header once (blobs never change)."""
        if sha256 not in self._parameters:
            with self.open_blob(sha256) as handle:
                head = handle.read(8)
                length = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
                self._parameters[sha256] = _safetensors_parameters(head + handle.read(min(length, 100_000_000))) or {}
        return self._parameters[sha256]

    def card_metadata(self, sha256: str) -> dict:
        """A README blob's metadata, parsed once under the front-matter limits (blobs never change)."""
        if sha256 not in self._cards:
            with self.open_blob(sha256) as handle:
                text = handle.read(1 << 20).decode("utf-8", "replace")
            self._cards[sha256] = card_metadata(text)
        return self._cards[sha256]

    def readable_blobs(self, can_read: Callable[[dict], bool]) -> set[str]:
        """The blobs that some repository ``can_read`` accepts holds at any of its commits."""
        out: set[str] = set()
        for repo_type in guard.REPO_TYPES.values():
            for repo in self.list(repo_type):
                if not can_read(repo):
                    continue
                for commit in repo.get("commits", {}).values():
                    for entry in [*(commit.get("files") or {}).values(), *(commit.get("changes") or {}).values()]:
                        if isinstance(entry, dict) and isinstance(entry.get("sha256"), str):
                            out.add(entry["sha256"])
        return out

    # --- commits ------------------------------------------------------------------------------------------------
    def _table(self, repo: dict, oid: str) -> tuple[dict, int]:
        """The file table at commit ``oid`` and how many commits lie between it and the last whole table."""
        key = (repo["type"], repo["id"], oid)
        with self._tables_lock:
            if key in self._tables:
                self._tables.move_to_end(key)
                return self._tables[key]
        chain, at = [], oid
        while "files" not in repo["commits"][at]:
            chain.append(repo["commits"][at])
            at = repo["commits"][at]["parent"]
        files = dict(repo["commits"][at]["files"])
        for commit in reversed(chain):
            for path in commit.get("deleted", []):
                files.pop(path, None)
            files.update(commit.get("changes", {}))
        with self._tables_lock:
            self._tables[key] = (files, len(chain))
            if len(self._tables) > _TABLE_CACHE:
                self._tables.popitem(last=False)
        return files, len(chain)

    def resolve(self, repo: dict, revision: str) -> tuple[str, dict]:
        """(commit id, the commit with its whole file table under ``files``) for a branch or a commit id."""
        revision = guard.revision(revision)
        if revision in repo["refs"]:
            oid = repo["refs"][revision]
        elif revision in repo["commits"]:
            oid = revision
        else:
            raise RequestRejected(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        commit = repo["commits"][oid]
        return oid, {"parent": commit.get("parent"), "title": commit.get("title", ""), "date": commit["date"],
                     "files": self._table(repo, oid)[0]}

    def commit(self, repo_type: str, repo_id: str, revision: str, header: dict, operations: list[dict],
               *, may_reference: Callable[[str], bool] = lambda oid: True) -> str:
        """Apply every operation or none: the new file table is built in memory and saved in one atomic write.

        An ``lfsFile`` may name only a blob that ``may_reference`` accepts (its writer uploaded it, or can read a
        repository that holds it); any other is answered as if it had never been uploaded.
        """
        with self.lock(repo_type, repo_id):
            repo = self.load(repo_type, repo_id)
            revision = guard.revision(revision)
            if revision not in repo["refs"]:
                raise RequestRejected(404, f"Branch {revision} not found; commits go to an existing branch.",
                                           "RevisionNotFound")
            parent, current = self.resolve(repo, revision)
            wanted_parent = header.get("parentCommit")
            if wanted_parent and wanted_parent != parent:
                raise RequestRejected(412, f"A commit has happened since {wanted_parent}; the branch is at {parent}.")
            before = current["files"]
            files = dict(before)
            for key, value in operations:
                if key == "file":
                    files[value["path"]] = self._store_blob(value["data"], lfs=False)
                elif key == "lfsFile":
                    oid = value["oid"]
                    if not self.has_blob(oid) or not may_reference(oid):
                        raise RequestRejected(400, f"LFS object {oid} for {value['path']} was never uploaded.")
                    with self.open_blob(oid) as handle:
                        size = os.fstat(handle.fileno()).st_size
                        if value.get("size") is not None and value["size"] != size:
                            raise RequestRejected(400, f"LFS object {oid} has {size} bytes, not {value['size']}.")
                        git_oid = hashlib.sha1(b"blob %d\0" % size)
                        for chunk in iter(lambda h=handle: h.read(_CHUNK), b""):
                            git_oid.update(chunk)
                    files[value["path"]] = {"sha256": oid, "size": size, "lfs": True, "oid": git_oid.hexdigest()}
                elif key == "deletedFile":
                    if value["path"] not in files:
                        raise RequestRejected(404, f"File {value['path']} does not exist.", "EntryNotFound")
                    del files[value["path"]]
                elif key == "deletedFolder":
                    prefix = value["path"] + "/"
                    files = {p: e for p, e in files.items() if not p.startswith(prefix)}
            date = _now()
            oid = hashlib.sha1(json.dumps([parent, sorted(files), header, date, time.time_ns()]).encode()).hexdigest()
            record: dict[str, Any] = {"parent": parent, "title": str(header.get("summary", "")), "date": date}
            if self._table(repo, parent)[1] + 1 >= SNAPSHOT_EVERY:
                record["files"] = files
            else:
                record["changes"] = {p: e for p, e in files.items() if before.get(p) != e}
                record["deleted"] = sorted(p for p in before if p not in files)
            repo["commits"][oid] = record
            repo["refs"][revision] = oid
            self.save(repo_type, repo_id, repo)
            return oid

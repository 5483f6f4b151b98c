"""A small Hugging Face Hub-compatible HTTP server that keeps its repositories in a folder.

Why it exists: the Hub is unreachable from air-gapped machines (ours included), yet the code that talks to it
must be the real ``huggingface_hub`` / ``datasets`` / ``transformers`` client code, exercised over real HTTP.
Point ``HF_ENDPOINT`` at this server (with ``HF_HUB_DISABLE_XET=1``) and ``list_models``, ``model_info``,
``hf_hub_download``, ``create_repo``, ``upload_file`` / ``create_commit`` (regular and LFS files),
``load_dataset`` and ``from_pretrained`` work as they do against huggingface.co, for the subset of the API they
use. It is a test and air-gap tool, not a production Hub: one JSON file per repository, content-addressed blobs,
no access control beyond "write needs a token", gated repositories refuse downloads.

It binds to loopback only: handing it any other address is an error.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from .errors import HFTwoPhaseError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
_REPO = r"(?P<repo>[^/]+(?:/[^/]+)?)"
_TYPE = r"(?P<type>models|datasets|spaces)"
_TEXT_SUFFIXES = (".md", ".txt", ".json", ".yaml", ".yml", ".py", ".csv", ".gitattributes", ".model", ".jinja")


class HubServerError(HFTwoPhaseError, ValueError):
    """Raised for a bad server configuration, such as a non-loopback address."""


class _HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra or {}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _card_metadata(text: str) -> dict:
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, flags=re.S)
    if not match:
        return {}
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _safetensors_parameters(data: bytes) -> dict[str, int] | None:
    """Parameter counts per dtype from a safetensors header, as the Hub reports them in ``safetensors``."""
    if len(data) < 8:
        return None
    (length,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + length])
    except (ValueError, UnicodeDecodeError):
        return None
    counts: dict[str, int] = {}
    for name, entry in header.items():
        if name == "__metadata__" or not isinstance(entry, dict):
            continue
        n = 1
        for dim in entry.get("shape", []):
            n *= int(dim)
        counts[entry.get("dtype", "F32")] = counts.get(entry.get("dtype", "F32"), 0) + n
    return counts


class HubStorage:
    """Repositories on disk: ``repos/{type}/{id}.json`` holds refs, commits and settings; ``blobs/`` the bytes.

    Every write goes through one lock and an atomic rename, so a crashed server never leaves a half-written repo.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self._parameters: dict[str, dict[str, int]] = {}

    # --- repositories -------------------------------------------------------------------------------------------
    def _repo_file(self, repo_type: str, repo_id: str) -> Path:
        return self.root / "repos" / repo_type / f"{repo_id}.json"

    def exists(self, repo_type: str, repo_id: str) -> bool:
        return self._repo_file(repo_type, repo_id).exists()

    def load(self, repo_type: str, repo_id: str) -> dict:
        path = self._repo_file(repo_type, repo_id)
        if not path.exists():
            raise _HttpError(404, f"Repository {repo_type[:-1]} '{repo_id}' not found.", "RepoNotFound")
        return json.loads(path.read_text())

    def save(self, repo_type: str, repo_id: str, repo: dict) -> None:
        path = self._repo_file(repo_type, repo_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(repo, handle)
        os.replace(tmp, path)

    def create(self, repo_type: str, repo_id: str, *, private: bool = False) -> dict:
        with self.lock:
            if self.exists(repo_type, repo_id):
                raise _HttpError(409, f"You already created this {repo_type[:-1]} repo: {repo_id}", "RepoExists")
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

    def list(self, repo_type: str) -> list[dict]:
        folder = self.root / "repos" / repo_type
        return [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))] if folder.exists() else []

    def update_settings(self, repo_type: str, repo_id: str, **settings: Any) -> None:
        """Set ``private``, ``gated`` (False, "auto", "manual"), ``downloads`` or ``likes`` of a repository."""
        with self.lock:
            repo = self.load(repo_type, repo_id)
            repo["settings"].update({k: v for k, v in settings.items() if v is not None})
            self.save(repo_type, repo_id, repo)

    # --- blobs and commits --------------------------------------------------------------------------------------
    def _blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def has_blob(self, sha256: str) -> bool:
        return self._blob_path(sha256).exists()

    def put_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self._blob_path(sha)
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        return sha

    def _store_blob(self, data: bytes, *, lfs: bool) -> dict:
        sha = self.put_blob(data)
        return {"sha256": sha, "size": len(data), "lfs": lfs, "oid": _git_blob_oid(data)}

    def parameter_counts(self, sha256: str) -> dict[str, int]:
        """Parameters per dtype of a safetensors blob, read from its header once (blobs never change)."""
        if sha256 not in self._parameters:
            with open(self._blob_path(sha256), "rb") as handle:
                head = handle.read(8)
                length = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
                self._parameters[sha256] = _safetensors_parameters(head + handle.read(min(length, 100_000_000))) or {}
        return self._parameters[sha256]

    def read_blob(self, sha256: str) -> bytes:
        return self._blob_path(sha256).read_bytes()

    def resolve(self, repo: dict, revision: str) -> tuple[str, dict]:
        revision = unquote(revision)
        if revision in repo["refs"]:
            oid = repo["refs"][revision]
        elif revision in repo["commits"]:
            oid = revision
        else:
            raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return oid, repo["commits"][oid]

    def commit(self, repo_type: str, repo_id: str, revision: str, header: dict, operations: list[dict]) -> str:
        with self.lock:
            repo = self.load(repo_type, repo_id)
            if unquote(revision) not in repo["refs"]:
                raise _HttpError(404, f"Branch {revision} not found; commits go to an existing branch.",
                                 "RevisionNotFound")
            parent, current = self.resolve(repo, revision)
            wanted_parent = header.get("parentCommit")
            if wanted_parent and wanted_parent != parent:
                raise _HttpError(412, f"A commit has happened since {wanted_parent}; the branch is at {parent}.")
            files = dict(current["files"])
            for op in operations:
                key, value = op.get("key"), op.get("value", {})
                if key == "file":
                    data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else \
                        value["content"].encode()
                    files[value["path"]] = self._store_blob(data, lfs=False)
                elif key == "lfsFile":
                    if not self.has_blob(value["oid"]):
                        raise _HttpError(400, f"LFS object {value['oid']} for {value['path']} was never uploaded.")
                    data = self.read_blob(value["oid"])
                    entry = {"sha256": value["oid"], "size": len(data), "lfs": True, "oid": _git_blob_oid(data)}
                    files[value["path"]] = entry
                elif key == "deletedFile":
                    if value["path"] not in files:
                        raise _HttpError(404, f"File {value['path']} does not exist.", "EntryNotFound")
                    del files[value["path"]]
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: e for p, e in files.items() if not p.startswith(prefix)}
                elif key == "header":
                    continue
                else:
                    raise _HttpError(400, f"Unsupported commit operation {key!r}.")
            date = _now()
            oid = hashlib.sha1(json.dumps([parent, files, header, date, time.time_ns()]).encode()).hexdigest()
            repo["commits"][oid] = {"parent": parent, "title": header.get("summary", ""), "date": date,
                                    "files": files}
            repo["refs"][unquote(revision)] = oid
            self.save(repo_type, repo_id, repo)
            return oid

    def count_download(self, repo_type: str, repo_id: str) -> None:
        with self.lock:
            repo = self.load(repo_type, repo_id)
            repo["settings"]["downloads"] = int(repo["settings"].get("downloads", 0)) + 1
            self.save(repo_type, repo_id, repo)


def _is_private(payload: dict) -> bool | None:
    """Older clients send ``private``, newer ones ``visibility`` ("public", "private", "protected")."""
    if payload.get("visibility") is not None:
        return payload["visibility"] != "public"
    return None if payload.get("private") is None else bool(payload["private"])


def _entry_json(path: str, entry: dict) -> dict:
    out = {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}
    if entry["lfs"]:
        out["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": 134}
    return out


def _tree(files: dict[str, dict], folder: str, recursive: bool) -> list[dict] | None:
    prefix = folder.strip("/") + "/" if folder.strip("/") else ""
    if prefix and not any(p.startswith(prefix) for p in files):
        return None
    entries, folders = [], set()
    for path in sorted(files):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix):]
        parts = rest.split("/")
        for depth in range(1, len(parts)):
            if recursive or depth == 1:
                folders.add(prefix + "/".join(parts[:depth]))
        if recursive or len(parts) == 1:
            entries.append(_entry_json(path, files[path]))
    dirs = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
            for d in sorted(folders)]
    return dirs + entries


def _info(storage: HubStorage, repo: dict, revision: str = "main") -> dict:
    oid, commit = storage.resolve(repo, revision)
    files = commit["files"]
    card = {}
    if "README.md" in files:
        card = _card_metadata(storage.read_blob(files["README.md"]["sha256"]).decode("utf-8", "replace"))
    settings = repo["settings"]
    tags = [str(t) for t in card.get("tags", []) or []]
    for key in ("library_name",):
        if card.get(key):
            tags.append(str(card[key]))
    languages = card.get("language") or []
    tags += [str(x) for x in ([languages] if isinstance(languages, str) else languages)]
    if card.get("license"):
        tags.append(f"license:{card['license']}")
    if card.get("pipeline_tag"):
        tags.append(str(card["pipeline_tag"]))
    info = {
        "_id": hashlib.sha1(repo["id"].encode()).hexdigest()[:24], "id": repo["id"], "sha": oid,
        "private": bool(settings.get("private")), "gated": settings.get("gated") or False, "disabled": False,
        "downloads": int(settings.get("downloads", 0)), "likes": int(settings.get("likes", 0)),
        "tags": sorted(set(tags)), "createdAt": repo["created_at"], "lastModified": commit["date"],
        "cardData": card or None, "author": repo["id"].split("/")[0] if "/" in repo["id"] else None,
        "siblings": [{"rfilename": p, "size": e["size"], "blobId": e["oid"],
                      **({"lfs": {"sha256": e["sha256"], "size": e["size"], "pointerSize": 134}} if e["lfs"] else {})}
                     for p, e in sorted(files.items())],
        "usedStorage": sum(e["size"] for e in files.values()),
    }
    if repo["type"] == "models":
        info["modelId"] = repo["id"]
        info["pipeline_tag"] = card.get("pipeline_tag")
        info["library_name"] = card.get("library_name")
        counts: dict[str, int] = {}
        for path, entry in files.items():
            if path.endswith(".safetensors"):
                for dtype, n in storage.parameter_counts(entry["sha256"]).items():
                    counts[dtype] = counts.get(dtype, 0) + n
        if counts:
            info["safetensors"] = {"parameters": counts, "total": sum(counts.values())}
    return info


class _Handler(BaseHTTPRequestHandler):
    server_version = "hf-twophase-local-hub/1"
    protocol_version = "HTTP/1.1"
    storage: HubStorage

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        if os.environ.get("HF_TWOPHASE_HUB_LOG"):
            super().log_message(format, *args)

    # --- plumbing -----------------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _send(self, status: int, payload: Any = None, *, headers: dict | None = None, raw: bytes | None = None,
              content_type: str = "application/json") -> None:
        data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, error: _HttpError) -> None:
        headers = {"X-Error-Message": error.message}
        if error.code:
            headers["X-Error-Code"] = error.code
        self._send(error.status, {"error": error.message, **error.extra}, headers=headers)

    def _require_token(self) -> None:
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            raise _HttpError(401, "Writing needs a token (any value works on the local hub).")

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        path = url.path
        body = self._body() if self.command in ("POST", "PUT", "DELETE") else b""
        try:
            for method, pattern, handler in _ROUTES:
                if method == self.command or (method == "GET" and self.command == "HEAD"):
                    match = re.fullmatch(pattern, path)
                    if match:
                        groups = {k: unquote(v) if v is not None else None for k, v in match.groupdict().items()}
                        handler(self, body=body, **groups)
                        return
            raise _HttpError(404, f"No route for {self.command} {path} on the local hub.")
        except _HttpError as error:
            self._error(error)
        except (ValueError, KeyError) as error:
            self._error(_HttpError(400, f"Bad request: {error}"))

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    # --- API ----------------------------------------------------------------------------------------------------
    def whoami(self, body: bytes) -> None:
        self._send(200, {"type": "user", "name": "local-user", "fullname": "Local Hub user", "orgs": [],
                         "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}}})

    def list_repos(self, body: bytes, type: str) -> None:  # noqa: A002 - route group name
        q = self.query
        items = []
        for repo in self.storage.list(type):
            info = _info(self.storage, repo)
            if q.get("pipeline_tag") and info.get("pipeline_tag") != q["pipeline_tag"][0]:
                continue
            if q.get("author") and info.get("author") != q["author"][0]:
                continue
            if q.get("search") and q["search"][0].lower() not in info["id"].lower():
                continue
            if any(tag not in info["tags"] for tag in q.get("filter", [])):
                continue
            items.append(info)
        sort = (q.get("sort") or ["downloads"])[0]
        key = {"downloads": "downloads", "likes": "likes", "createdAt": "createdAt",
               "lastModified": "lastModified"}.get(sort, "downloads")
        items.sort(key=lambda i: (i.get(key) or 0, i["id"]), reverse=(q.get("direction") or ["-1"])[0] == "-1")
        if q.get("limit"):
            items = items[: int(q["limit"][0])]
        self._send(200, items)

    def repo_info(self, body: bytes, type: str, repo: str, rev: str | None = None) -> None:  # noqa: A002
        self._send(200, _info(self.storage, self.storage.load(type, repo), rev or "main"))

    def tree(self, body: bytes, type: str, repo: str, rev: str, path: str | None = None) -> None:  # noqa: A002
        _, commit = self.storage.resolve(self.storage.load(type, repo), rev)
        recursive = (self.query.get("recursive") or ["false"])[0].lower() in ("1", "true")
        entries = _tree(commit["files"], path or "", recursive)
        if entries is None:
            raise _HttpError(404, f"Folder {path!r} does not exist at {rev}.", "EntryNotFound")
        self._send(200, entries)

    def paths_info(self, body: bytes, type: str, repo: str, rev: str) -> None:  # noqa: A002
        _, commit = self.storage.resolve(self.storage.load(type, repo), rev)
        form = parse_qs(body.decode()) if body else {}
        if self.headers.get("Content-Type", "").startswith("application/json"):
            form = {"paths": json.loads(body).get("paths", [])}
        files = commit["files"]
        out = []
        for wanted in form.get("paths", []):
            wanted = wanted.strip("/")
            if wanted in files:
                out.append(_entry_json(wanted, files[wanted]))
            elif any(p.startswith(wanted + "/") for p in files) or wanted == "":
                out.append({"type": "directory", "oid": hashlib.sha1(wanted.encode()).hexdigest(), "size": 0,
                            "path": wanted})
        self._send(200, out)

    def create_repo(self, body: bytes) -> None:
        self._require_token()
        payload = json.loads(body or b"{}")
        name = payload.get("name") or ""
        organization = payload.get("organization")
        repo_id = f"{organization}/{name}" if organization else (name if "/" in name else f"local-user/{name}")
        if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", repo_id):
            raise _HttpError(400, f"Invalid repo name {repo_id!r}.")
        repo_type = (payload.get("type") or "model") + "s"
        prefix = "" if repo_type == "models" else f"{repo_type}/"
        url = f"http://{self.headers.get('Host')}/{prefix}{repo_id}"
        try:
            self.storage.create(repo_type, repo_id, private=_is_private(payload) or False)
        except _HttpError as error:
            error.extra = {"url": url}
            raise
        self._send(200, {"url": url, "name": repo_id})

    def delete_repo(self, body: bytes) -> None:
        self._require_token()
        payload = json.loads(body or b"{}")
        name, organization = payload.get("name"), payload.get("organization")
        repo_id = f"{organization}/{name}" if organization else name
        repo_type = (payload.get("type") or "model") + "s"
        with self.storage.lock:
            self.storage.load(repo_type, repo_id)
            self.storage._repo_file(repo_type, repo_id).unlink()
        self._send(200, {})

    def settings(self, body: bytes, type: str, repo: str) -> None:  # noqa: A002
        self._require_token()
        payload = json.loads(body or b"{}")
        self.storage.update_settings(type, repo, private=_is_private(payload), gated=payload.get("gated"))
        self._send(200, {})

    def validate_yaml(self, body: bytes) -> None:
        content = json.loads(body or b"{}").get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, flags=re.S)
        try:
            yaml.safe_load(match.group(1) if match else content)
        except yaml.YAMLError as error:
            self._send(400, {"errors": [{"message": str(error)}]})
            return
        self._send(200, {"errors": [], "warnings": []})

    def preupload(self, body: bytes, type: str, repo: str, rev: str) -> None:  # noqa: A002
        self._require_token()
        repo_data = self.storage.load(type, repo)
        _, commit = self.storage.resolve(repo_data, rev)
        files = []
        for item in json.loads(body).get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            binary = b"\0" in sample or not item["path"].lower().endswith(_TEXT_SUFFIXES)
            lfs = binary or item.get("size", 0) > 10 * 1024 * 1024
            existing = commit["files"].get(item["path"])
            files.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": existing["oid"] if existing else None})
        self._send(200, {"files": files, "commitOid": self.storage.resolve(repo_data, rev)[0]})

    def commit(self, body: bytes, type: str, repo: str, rev: str) -> None:  # noqa: A002
        self._require_token()
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line.get("key") == "header"), {})
        oid = self.storage.commit(type, repo, rev, header, lines)
        prefix = "" if type == "models" else f"{type}/"
        host = self.headers.get("Host")
        self._send(200, {"success": True, "commitOid": oid, "commitUrl": f"http://{host}/{prefix}{repo}/commit/{oid}",
                         "commitMessage": header.get("summary", ""), "pullRequestUrl": None})

    def lfs_batch(self, body: bytes, repo: str, prefix: str | None = None) -> None:
        self._require_token()
        repo_type = "datasets" if prefix == "datasets" else "spaces" if prefix == "spaces" else "models"
        self.storage.load(repo_type, repo)
        payload = json.loads(body)
        host = self.headers.get("Host")
        objects = []
        for obj in payload.get("objects", []):
            entry = {"oid": obj["oid"], "size": int(obj["size"]), "authenticated": True}
            if not self.storage.has_blob(obj["oid"]):
                entry["actions"] = {"upload": {"href": f"http://{host}/api/lfs-upload/{obj['oid']}"}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects}, content_type="application/vnd.git-lfs+json")

    def lfs_upload(self, body: bytes, oid: str) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            raise _HttpError(400, f"Uploaded bytes do not hash to {oid}.")
        self.storage.put_blob(body)
        self._send(200, {})

    def resolve_file(self, body: bytes, repo: str, rev: str, path: str, prefix: str | None = None) -> None:
        repo_type = "datasets" if prefix == "datasets" else "spaces" if prefix == "spaces" else "models"
        repo_data = self.storage.load(repo_type, repo)
        oid, commit = self.storage.resolve(repo_data, rev)
        if repo_data["settings"].get("gated"):
            raise _HttpError(403, f"Access to {repo_type[:-1]} {repo} is restricted: you must be authenticated and "
                                  "have accepted its conditions.", "GatedRepo")
        entry = commit["files"].get(path)
        if entry is None:
            raise _HttpError(404, f"Entry not found: {path} at {rev}.", "EntryNotFound")
        data = self.storage.read_blob(entry["sha256"])
        etag = entry["sha256"] if entry["lfs"] else entry["oid"]
        headers = {"X-Repo-Commit": oid, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if entry["lfs"]:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(entry["size"])})
        if self.command == "GET" and path == ("config.json" if repo_type == "models" else path):
            if repo_type == "models":
                self.storage.count_download(repo_type, repo)
        byte_range = self.headers.get("Range")
        if byte_range and self.command == "GET":
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", byte_range.strip())
            if not match:
                raise _HttpError(416, f"Unsupported range {byte_range!r}.")
            start = int(match.group(1)) if match.group(1) else max(0, len(data) - int(match.group(2)))
            end = int(match.group(2)) if match.group(1) and match.group(2) else len(data) - 1
            end = min(end, len(data) - 1)
            if start > end and data:
                raise _HttpError(416, f"Range {byte_range!r} outside a file of {len(data)} bytes.")
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._send(206, raw=data[start : end + 1], headers=headers, content_type="application/octet-stream")
            return
        self._send(200, raw=data, headers=headers, content_type="application/octet-stream")


_ROUTES = [
    ("GET", r"/api/whoami-v2", _Handler.whoami),
    ("GET", rf"/api/{_TYPE}", _Handler.list_repos),
    ("GET", rf"/api/{_TYPE}/{_REPO}/revision/(?P<rev>[^/]+)", _Handler.repo_info),
    ("GET", rf"/api/{_TYPE}/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", _Handler.tree),
    ("POST", rf"/api/{_TYPE}/{_REPO}/paths-info/(?P<rev>[^/]+)", _Handler.paths_info),
    ("POST", rf"/api/{_TYPE}/{_REPO}/preupload/(?P<rev>[^/]+)", _Handler.preupload),
    ("POST", rf"/api/{_TYPE}/{_REPO}/commit/(?P<rev>[^/]+)", _Handler.commit),
    ("PUT", rf"/api/{_TYPE}/{_REPO}/settings", _Handler.settings),
    ("GET", rf"/api/{_TYPE}/{_REPO}", _Handler.repo_info),
    ("POST", r"/api/repos/create", _Handler.create_repo),
    ("DELETE", r"/api/repos/delete", _Handler.delete_repo),
    ("POST", r"/api/validate-yaml", _Handler.validate_yaml),
    ("PUT", r"/api/lfs-upload/(?P<oid>[0-9a-f]{64})", _Handler.lfs_upload),
    ("POST", rf"/(?:(?P<prefix>datasets|spaces)/)?{_REPO}\.git/info/lfs/objects/batch", _Handler.lfs_batch),
    ("GET", rf"/(?:(?P<prefix>datasets|spaces)/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", _Handler.resolve_file),
]


@dataclass
class LocalHub:
    """A running local hub: ``url`` goes into ``HF_ENDPOINT``; ``storage`` seeds settings such as downloads."""

    root: Path
    host: str = "127.0.0.1"
    port: int = 0
    storage: HubStorage = field(init=False)
    _server: ThreadingHTTPServer | None = field(init=False, default=None, repr=False)
    _thread: threading.Thread | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if self.host not in LOOPBACK:
            raise HubServerError(f"the local hub binds to loopback only (127.0.0.1, localhost or ::1), got "
                                 f"{self.host!r}")
        self.root = Path(self.root)
        self.storage = HubStorage(self.root)

    @property
    def url(self) -> str:
        if self._server is None:
            raise HubServerError("the local hub is not running; call start() or use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> LocalHub:
        handler = type("Handler", (_Handler,), {"storage": self.storage})
        self._server = ThreadingHTTPServer(("127.0.0.1" if self.host == "localhost" else self.host, self.port),
                                           handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-hub", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve until interrupted (Ctrl-C)."""
        if self._server is None:
            self.start()
        with contextlib.suppress(KeyboardInterrupt):
            assert self._thread is not None
            while self._thread.is_alive():
                self._thread.join(0.5)
        self.stop()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def hub_environment(url: str, home: str | os.PathLike, token: str = "hf_local_dummy_token") -> dict[str, str]:
    """The variables that point the Hub client libraries at a local hub; set them before importing those."""
    return {"HF_ENDPOINT": url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(home), "HF_TOKEN": token,
            "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0"}


__all__ = ["HubServerError", "HubStorage", "LocalHub", "hub_environment"]

"""A small Hugging Face Hub-compatible HTTP server that keeps its repositories in a folder.

Why it exists: the Hub is unreachable from air-gapped machines (ours included), yet the code that talks to it
must be the real ``huggingface_hub`` / ``datasets`` / ``transformers`` client code, exercised over real HTTP.
Point ``HF_ENDPOINT`` at this server (with ``HF_HUB_DISABLE_XET=1``) and ``list_models``, ``model_info``,
``hf_hub_download``, ``create_repo``, ``upload_file`` / ``create_commit`` (regular and LFS files),
``load_dataset`` and ``from_pretrained`` work as they do against huggingface.co, for the subset of the API they
use. It is a test and air-gap tool, not a production Hub: one JSON file per repository, content-addressed blobs.

What it promises, because anything on the machine can send it requests:
- it binds to loopback only (127.0.0.1, localhost or ::1); any other address is an error;
- it never reads or writes a file outside its root: names are checked by ``hub.guard`` before any I/O, and every
  path is resolved (links included) and must lie inside the root;
- every write (create, delete, commit, settings, LFS upload) needs a token; with a tokens file, only to the
  token's namespaces; private repositories are visible only to tokens of their namespace;
- request bodies are bounded (413 past the limit), read whole before anything is applied (a body cut short
  changes nothing), and LFS uploads are streamed to a temporary file and kept only if their sha256 and size match;
- every malformed request gets a 4xx JSON answer and the server keeps serving; slow clients time out; an answer
  sent before the body was read (a 413) reaches the client, because the rest of the body is drained, within bounds;
- state files and blobs are written atomically, so a server killed at any instant loses no acknowledged commit
  and never serves a torn file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from hf_twophase.hub import guard
from hf_twophase.hub.front_matter import FrontMatterError, front_matter_text, parse_yaml
from hf_twophase.hub.guard import AccessPolicy, Identity, RequestRejected
from hf_twophase.hub.storage import HubServerError, HubStorage

logger = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_MAX_BODY_BYTES = 64 * 2**20  # JSON and NDJSON requests (a commit carries its small files inline)
DEFAULT_MAX_UPLOAD_BYTES = 20 * 2**30  # one LFS object, streamed to disk
DEFAULT_TIMEOUT = 30.0  # seconds a client may stay silent in the middle of a request
DEFAULT_MAX_CONNECTIONS = 64
UPLOAD_TICKET_SECONDS = 3600
DEFAULT_REQUEST_DEADLINE = 60.0  # seconds one request may take to arrive whole (LFS uploads: more, by their size)
UPLOAD_MIN_BYTES_PER_SECOND = 1 << 20  # the slowest upload rate a deadline allows for
LISTEN_BACKLOG = 128
MAX_JSON_DEPTH = 64
MAX_PATHS_INFO = 1000  # paths in one paths-info request
MAX_LFS_BATCH = 1000  # objects in one LFS batch request (huggingface_hub sends at most 256)
MAX_CONTROL_BODY = 2 * 2**20  # bytes of a request body other than a commit (paths-info, LFS batch, create, ...)
_SEGMENT = r"[^/]+"
_REPO = rf"(?P<repo>{_SEGMENT}(?:/{_SEGMENT})?)"
_TYPE = r"(?P<type>models|datasets|spaces)"
_TEXT_SUFFIXES = (".md", ".txt", ".json", ".yaml", ".yml", ".py", ".csv", ".gitattributes", ".model", ".jinja")
_CHUNK = 1 << 20
_LINGER_SECONDS = 2.0  # how long a refused body is drained after the answer, so the client reads the answer
_LINGER_BYTES = 64 * 2**20  # and how much of it, at most: a client cannot hold the thread or fill anything




def _header_value(value: object) -> str:
    """A header value that cannot end the header or start another: printable ASCII only, anything else as '?'."""
    return re.sub(r"[^\x20-\x7e]", "?", str(value))


def _strings(value: Any) -> list[str]:
    """A card field that should be a list of strings, whatever a user wrote there."""
    if value is None:
        return []
    if isinstance(value, (str, int, float)):
        return [str(value)]
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, (str, int, float))]
    return []


def _parse_commit(body: bytes) -> tuple[dict, list[tuple[str, dict]]]:
    """The NDJSON lines of a commit, checked one by one: (header, [(operation, value)])."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestRejected(400, "A commit body must be UTF-8 NDJSON.") from None
    header: dict = {}
    operations: list[tuple[str, dict]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        item = _json(line.encode(), what=f"commit line {number}")
        key, value = item.get("key"), item.get("value")
        if not isinstance(value, dict):
            raise RequestRejected(400, f"commit line {number}: 'value' must be an object.")
        if key == "header":
            summary, parent = value.get("summary", ""), value.get("parentCommit")
            if not isinstance(summary, str) or (parent is not None and not isinstance(parent, str)):
                raise RequestRejected(400, f"commit line {number}: the header's summary and parentCommit are strings.")
            header = value
        elif key == "file":
            content, encoding = value.get("content"), value.get("encoding")
            if not isinstance(content, str) or encoding not in (None, "base64"):
                raise RequestRejected(400, f"commit line {number}: a file needs string content, encoding base64 "
                                           "or none.")
            try:
                data = base64.b64decode(content, validate=True) if encoding == "base64" else content.encode()
            except (binascii.Error, ValueError):
                raise RequestRejected(400, f"commit line {number}: content is not valid base64.") from None
            operations.append((key, {"path": guard.file_path(value.get("path")), "data": data}))
        elif key == "lfsFile":
            size = value.get("size")
            if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
                raise RequestRejected(400, f"commit line {number}: an LFS file's size is a non-negative integer.")
            operations.append((key, {"path": guard.file_path(value.get("path")),
                                     "oid": guard.sha256_oid(value.get("oid")), "size": size}))
        elif key == "deletedFile":
            operations.append((key, {"path": guard.file_path(value.get("path"))}))
        elif key == "deletedFolder":
            operations.append((key, {"path": guard.folder_path(value.get("path"))}))
        else:
            raise RequestRejected(400, f"commit line {number}: unsupported operation {str(key)[:40]!r}.")
    return header, operations


def _depth_ok(data: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """No list or object nested deeper than ``limit`` (checked without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return True


def _json(body: bytes, *, what: str = "request body", kind: type = dict) -> Any:
    try:
        data = json.loads(body or (b"{}" if kind is dict else b"[]"))
    except RecursionError:
        raise RequestRejected(400, f"The {what} is nested deeper than {MAX_JSON_DEPTH} levels.") from None
    except (ValueError, UnicodeDecodeError):
        raise RequestRejected(400, f"The {what} is not valid JSON.") from None
    if not _depth_ok(data):
        raise RequestRejected(400, f"The {what} is nested deeper than {MAX_JSON_DEPTH} levels.")
    if not isinstance(data, kind):
        raise RequestRejected(400, f"The {what} must be a JSON {'object' if kind is dict else 'array'}, "
                                   f"got {type(data).__name__}.")
    return data


def _optional_bool(payload: dict, key: str) -> bool | None:
    value = payload.get(key)
    if value is not None and not isinstance(value, bool):
        raise RequestRejected(400, f"'{key}' must be true or false, got {value!r}.")
    return value


def _is_private(payload: dict) -> bool | None:
    """Older clients send ``private``, newer ones ``visibility`` ("public", "private", "protected")."""
    visibility = payload.get("visibility")
    if visibility is not None:
        if visibility not in ("public", "private", "protected"):
            raise RequestRejected(400, f"'visibility' must be public, private or protected, got {visibility!r}.")
        return visibility != "public"
    return _optional_bool(payload, "private")


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
    card = storage.card_metadata(files["README.md"]["sha256"]) if "README.md" in files else {}
    settings = repo["settings"]
    tags = _strings(card.get("tags")) + _strings(card.get("library_name")) + _strings(card.get("language"))
    tags += [f"license:{x}" for x in _strings(card.get("license"))] + _strings(card.get("pipeline_tag"))
    info = {
        "_id": hashlib.sha1(repo["id"].encode()).hexdigest()[:24], "id": repo["id"], "sha": oid,
        "private": bool(settings.get("private")), "gated": settings.get("gated") or False, "disabled": False,
        "downloads": storage.downloads(repo), "likes": int(settings.get("likes", 0)),
        "tags": sorted(set(tags)), "createdAt": repo["created_at"], "lastModified": commit["date"],
        "cardData": card or None, "author": repo["id"].split("/")[0] if "/" in repo["id"] else None,
        "siblings": [{"rfilename": p, "size": e["size"], "blobId": e["oid"],
                      **({"lfs": {"sha256": e["sha256"], "size": e["size"], "pointerSize": 134}} if e["lfs"] else {})}
                     for p, e in sorted(files.items())],
        "usedStorage": sum(e["size"] for e in files.values()),
    }
    if repo["type"] == "models":
        info["modelId"] = repo["id"]
        info["pipeline_tag"] = next(iter(_strings(card.get("pipeline_tag"))), None)
        info["library_name"] = next(iter(_strings(card.get("library_name"))), None)
        counts: dict[str, int] = {}
        for path, entry in files.items():
            if path.endswith(".safetensors"):
                for dtype, n in storage.parameter_counts(entry["sha256"]).items():
                    counts[dtype] = counts.get(dtype, 0) + n
        if counts:
            info["safetensors"] = {"parameters": counts, "total": sum(counts.values())}
    return info


@dataclass
class _Upload:
    oid: str
    size: int
    expires: float
    writer: str  # the token's name that asked for it: a finished upload lets that writer reference the blob


class _Watchdog:
    """Cuts off every request still arriving after its deadline, with one thread for all connections."""

    def __init__(self) -> None:
        self._deadlines: dict[Any, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="local-hub-deadlines", daemon=True)
        self._thread.start()

    def arm(self, handler: Any, seconds: float) -> None:
        with self._lock:
            self._deadlines[handler] = time.monotonic() + seconds

    def disarm(self, handler: Any) -> None:
        with self._lock:
            self._deadlines.pop(handler, None)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            now = time.monotonic()
            with self._lock:
                late = [h for h, at in self._deadlines.items() if at < now]
                for handler in late:
                    del self._deadlines[handler]
            for handler in late:
                handler.close_connection = True
                with contextlib.suppress(OSError):
                    handler.connection.shutdown(socket.SHUT_RDWR)  # the handler's next read ends at once

    def stop(self) -> None:
        self._stop.set()


class _Handler(BaseHTTPRequestHandler):
    """One request: route it, check every name and the sender before any I/O, answer JSON (errors too)."""

    server_version = "hf-twophase-local-hub/1"
    protocol_version = "HTTP/1.1"
    hub: LocalHub  # set on the per-server subclass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        if os.environ.get("HF_TWOPHASE_HUB_LOG"):  # the access log, on request
            super().log_message(format, *args)

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        logger.error("%s: " + format, self.address_string(), *args)  # always: errors are never silent

    # --- plumbing -----------------------------------------------------------------------------------------------
    def setup(self) -> None:
        self.timeout = self.hub.timeout  # socket timeout of every read and write on this connection
        self._linger = False  # set when an answer went out before the body was read
        super().setup()

    def finish(self) -> None:
        """Close after an answer sent before the body was read (413, 401, ...) without losing that answer.

        Closing a socket with unread input makes the kernel send a reset, which can discard the answer before the
        client reads it: the client sees a broken pipe instead of the 413. So, as web servers do, send the answer,
        stop writing, and drain (and drop) what the client still sends, for a bounded time and size."""
        super().finish()
        if self._linger:
            self._drain_refused_body()

    def _drain_refused_body(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + _LINGER_SECONDS
            drained = 0
            while drained < _LINGER_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.connection.settimeout(left)
                piece = self.connection.recv(_CHUNK)
                if not piece:
                    return
                drained += len(piece)

    def handle_one_request(self) -> None:
        """One request, under a deadline for all of it to arrive: a client that sends a byte now and then (each
        read within ``timeout``) is still cut off, and frees its connection slot."""
        self.hub.watchdog.arm(self, self.hub.request_deadline)
        try:
            super().handle_one_request()
        finally:
            self.hub.watchdog.disarm(self)

    def _extend_deadline(self, seconds: float) -> None:
        self.hub.watchdog.arm(self, self.hub.request_deadline + seconds)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Requests that fail before routing (bad request line, too long, too many headers) also get JSON."""
        self.close_connection = True
        if self.request_version in ("HTTP/0.9", ""):  # an unparsable request line still gets a status line
            self.request_version = "HTTP/1.0"
        code = {501: 405, 505: 400}.get(code, code)  # no route for the method; an HTTP version it cannot speak
        with contextlib.suppress(OSError):
            self._send(code, {"error": message or explain or "Bad request."})

    def _send(self, status: int, payload: Any = None, *, headers: dict | None = None, raw: bytes | None = None,
              content_type: str = "application/json") -> None:
        data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        self._start(status, len(data), headers, content_type)
        if self.command != "HEAD":
            self.wfile.write(data)

    def _start(self, status: int, length: int, headers: dict | None, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for key, value in (headers or {}).items():
            self.send_header(key, _header_value(value))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _error(self, error: RequestRejected) -> None:
        if self._unread_body:  # what the client still sends must not be read as the next request
            self.close_connection = True
            self._linger = True
        headers = {"X-Error-Message": error.message[:500]}
        if error.code:
            headers["X-Error-Code"] = error.code
        self._send(error.status, {"error": error.message, **getattr(error, "extra", {})}, headers=headers)

    def _content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None
        if not re.fullmatch(r"[0-9]{1,19}", raw.strip()):
            raise RequestRejected(400, f"Content-Length must be a non-negative integer, got {raw[:40]!r}.")
        return int(raw)

    def _body_chunks(self, limit: int) -> Iterator[bytes]:
        """The body in pieces, refused with 413 past ``limit`` and 400 if it ends before what it announced."""
        encoding = self.headers.get("Transfer-Encoding")
        length = self._content_length()
        if encoding is not None:
            if encoding.strip().lower() != "chunked" or length is not None:
                raise RequestRejected(400, "Transfer-Encoding must be 'chunked' alone, without Content-Length.")
            yield from self._chunked(limit)
            return
        if not length:
            self._unread_body = False
            return
        if length > limit:
            raise RequestRejected(413, f"Request body of {length} bytes exceeds the limit of {limit} bytes.",
                                       "PayloadTooLarge")
        left = length
        while left:
            piece = self.rfile.read(min(left, _CHUNK))
            if not piece:
                self.close_connection = True
                raise RequestRejected(400, f"Request body ended after {length - left} of {length} bytes; nothing was "
                                           "applied.")
            left -= len(piece)
            yield piece
        self._unread_body = False

    def _chunked(self, limit: int) -> Iterator[bytes]:
        total = 0
        while True:
            line = self.rfile.readline(1026)
            size_text = line.split(b";", 1)[0].strip()
            if not line.endswith(b"\n") or not re.fullmatch(rb"[0-9a-fA-F]{1,16}", size_text):
                self.close_connection = True
                raise RequestRejected(400, "Bad chunk size line in a chunked body.")
            size = int(size_text, 16)
            if size == 0:
                for _ in range(100):  # trailers, then the blank line
                    trailer = self.rfile.readline(8194)
                    if trailer in (b"\r\n", b"\n", b""):
                        break
                self._unread_body = False
                return
            total += size
            if total > limit:
                self.close_connection = True
                raise RequestRejected(413, f"Request body exceeds the limit of {limit} bytes.", "PayloadTooLarge")
            left = size
            while left:
                piece = self.rfile.read(min(left, _CHUNK))
                if not piece:
                    self.close_connection = True
                    raise RequestRejected(400, "Chunked body ended before its last chunk; nothing was applied.")
                left -= len(piece)
                yield piece
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                self.close_connection = True
                raise RequestRejected(400, "A chunk is longer than its size line says.")

    def _body(self, *, commit: bool = False) -> bytes:
        """The whole body: a commit (which carries its small files inline) up to ``--max-body-mb``; every other
        request, a small JSON document, up to ``MAX_CONTROL_BODY`` bytes, so parallel requests cannot fill memory."""
        return b"".join(self._body_chunks(self.hub.max_body_bytes if commit else
                                          min(self.hub.max_body_bytes, MAX_CONTROL_BODY)))

    def _dispatch(self) -> None:
        self._readable_blobs: set[str] | None = None  # per request: a connection may carry another sender next
        self._unread_body = bool(self.headers.get("Transfer-Encoding") or self.headers.get("Content-Length")
                                 not in (None, "0"))
        try:
            self._route()
        except RequestRejected as error:
            self._error(error)
        except TimeoutError:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._error(RequestRejected(408, "The client was silent for too long; request abandoned."))
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
        except Exception as error:  # noqa: BLE001 - a bug must cost one request, never the connection or server
            self.close_connection = True
            logger.exception("internal error on %s %s", self.command, _header_value(self.path[:200]))
            with contextlib.suppress(OSError):
                self._error(RequestRejected(500, f"Internal error of the local hub ({type(error).__name__})."))

    def _route(self) -> None:
        url = urlsplit(self.path)
        try:
            self.query = parse_qs(url.query, max_num_fields=200)
        except ValueError:
            raise RequestRejected(400, "Too many or malformed query parameters.") from None
        self.identity: Identity | None = self.hub.policy.identify(self.headers.get("Authorization"))
        for method, pattern, handler, writes in _ROUTES:
            if method == self.command or (method == "GET" and self.command == "HEAD"):
                match = re.fullmatch(pattern, url.path)
                if match:
                    if writes and self.identity is None:
                        raise RequestRejected(401, "Writing needs a token: send 'Authorization: Bearer <token>'.",
                                                   "Unauthorized")
                    try:
                        groups = {k: unquote(v, errors="strict") if v is not None else None
                                  for k, v in match.groupdict().items()}
                    except UnicodeDecodeError:
                        raise RequestRejected(400, "The request path is not valid percent-encoded UTF-8.") from None
                    handler(self, **groups)
                    return
        raise RequestRejected(404, f"No route for {self.command} {url.path[:200]} on the local hub.", "NotFound")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def _visible_repo(self, repo_type: str, repo: str) -> dict:
        data = self.hub.storage.load(repo_type, guard.repo_id(repo))
        guard.check_visible(self.identity, repo, bool(data["settings"].get("private")))
        return data

    def _writable_repo(self, repo_type: str, repo: str) -> dict:
        guard.check_writable(self.identity, guard.repo_id(repo))
        return self._visible_repo(repo_type, repo)

    @staticmethod
    def _prefix(repo_type: str) -> str:
        return "" if repo_type == "models" else f"{repo_type}/"

    # --- API ----------------------------------------------------------------------------------------------------
    def whoami(self) -> None:
        if self.identity is None:
            raise RequestRejected(401, "Invalid credentials: send 'Authorization: Bearer <token>'.", "Unauthorized")
        orgs = sorted(n for n in self.identity.namespaces if n not in (guard.ALL_NAMESPACES, self.identity.name))
        self._send(200, {"type": "user", "name": self.identity.name, "fullname": "Local Hub user",
                         "orgs": [{"name": n, "type": "org"} for n in orgs],
                         "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}}})

    def list_repos(self, type: str) -> None:  # noqa: A002 - route group name
        q = self.query
        limit = (q.get("limit") or [None])[0]
        if limit is not None and not re.fullmatch(r"[0-9]{1,9}", limit):
            raise RequestRejected(400, f"limit must be a non-negative integer, got {limit[:40]!r}.")
        items = []
        for repo in self.hub.storage.list(type):
            if repo["settings"].get("private") and (self.identity is None or not self.identity.owns(repo["id"])):
                continue
            info = _info(self.hub.storage, repo)
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
        if limit is not None:
            items = items[: int(limit)]
        self._send(200, items)

    def repo_info(self, type: str, repo: str, rev: str | None = None) -> None:  # noqa: A002
        self._send(200, _info(self.hub.storage, self._visible_repo(type, repo), rev or "main"))

    def tree(self, type: str, repo: str, rev: str, path: str | None = None) -> None:  # noqa: A002
        _, commit = self.hub.storage.resolve(self._visible_repo(type, repo), rev)
        recursive = (self.query.get("recursive") or ["false"])[0].lower() in ("1", "true")
        entries = _tree(commit["files"], guard.folder_path(path), recursive)
        if entries is None:
            raise RequestRejected(404, f"Folder {path!r} does not exist at {rev}.", "EntryNotFound")
        self._send(200, entries)

    def paths_info(self, type: str, repo: str, rev: str) -> None:  # noqa: A002
        _, commit = self.hub.storage.resolve(self._visible_repo(type, repo), rev)
        body = self._body()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            wanted_paths = _json(body).get("paths", [])
        else:
            try:
                wanted_paths = parse_qs(body.decode("utf-8"), max_num_fields=10_000).get("paths", [])
            except (UnicodeDecodeError, ValueError):
                raise RequestRejected(400, "paths-info takes a form or JSON body with 'paths'.") from None
        if not isinstance(wanted_paths, list) or not all(isinstance(p, str) for p in wanted_paths):
            raise RequestRejected(400, "'paths' must be a list of strings.")
        if len(wanted_paths) > MAX_PATHS_INFO:
            raise RequestRejected(400, f"paths-info takes at most {MAX_PATHS_INFO} paths, got {len(wanted_paths)}.")
        files = commit["files"]
        folders = {path.rsplit("/", depth)[0] for path in files for depth in range(1, path.count("/") + 1)}
        out = []
        for wanted in wanted_paths:
            wanted = guard.folder_path(wanted.strip("/"))
            if wanted in files:
                out.append(_entry_json(wanted, files[wanted]))
            elif wanted in folders or wanted == "":
                out.append({"type": "directory", "oid": hashlib.sha1(wanted.encode()).hexdigest(), "size": 0,
                            "path": wanted})
        self._send(200, out)

    def _repo_from_payload(self, payload: dict) -> tuple[str, str]:
        name, organization = payload.get("name"), payload.get("organization")
        if not isinstance(name, str) or (organization is not None and not isinstance(organization, str)):
            raise RequestRejected(400, "'name' (and 'organization', if given) must be strings.")
        if organization:
            repo = f"{organization}/{name}"
        else:
            owner = self.identity.name if self.identity else guard.DEFAULT_NAMESPACE
            repo = name if "/" in name else f"{owner}/{name}"
        return guard.repo_type_folder(payload.get("type"), singular=True), guard.repo_id(repo)

    def create_repo(self) -> None:
        payload = _json(self._body())
        repo_type, repo = self._repo_from_payload(payload)
        guard.check_writable(self.identity, repo)
        private = _is_private(payload)
        url = f"{self.hub.url}/{self._prefix(repo_type)}{repo}"
        try:
            self.hub.storage.create(repo_type, repo, private=bool(private))
        except RequestRejected as error:
            error.extra = {"url": url}
            raise
        self._send(200, {"url": url, "name": repo})

    def delete_repo(self) -> None:
        repo_type, repo = self._repo_from_payload(_json(self._body()))
        self._writable_repo(repo_type, repo)
        self.hub.storage.delete(repo_type, repo)
        self._send(200, {})

    def settings(self, type: str, repo: str) -> None:  # noqa: A002
        payload = _json(self._body())
        self._writable_repo(type, repo)
        gated = payload.get("gated")
        if gated not in (None, False, "auto", "manual"):
            raise RequestRejected(400, f"'gated' must be false, 'auto' or 'manual', got {gated!r}.")
        self.hub.storage.update_settings(type, repo, private=_is_private(payload), gated=gated)
        self._send(200, {})

    def validate_yaml(self) -> None:
        content = _json(self._body()).get("content", "")
        if not isinstance(content, str):
            raise RequestRejected(400, "'content' must be a string.")
        text = front_matter_text(content)
        try:
            parse_yaml(content if text is None else text)
        except FrontMatterError as error:
            self._send(400, {"errors": [{"message": str(error)}]})
            return
        self._send(200, {"errors": [], "warnings": []})

    def preupload(self, type: str, repo: str, rev: str) -> None:  # noqa: A002
        payload = _json(self._body())
        repo_data = self._writable_repo(type, repo)
        oid, commit = self.hub.storage.resolve(repo_data, rev)
        items = payload.get("files", [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise RequestRejected(400, "'files' must be a list of objects.")
        files = []
        for item in items:
            path, size, sample = guard.file_path(item.get("path")), item.get("size", 0), item.get("sample", "")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or not isinstance(sample, str):
                raise RequestRejected(400, "each file needs an integer 'size' >= 0 and a base64 'sample'.")
            try:
                sample_bytes = base64.b64decode(sample, validate=True)
            except (binascii.Error, ValueError):
                raise RequestRejected(400, f"the sample of {path} is not valid base64.") from None
            binary = b"\0" in sample_bytes or not path.lower().endswith(_TEXT_SUFFIXES)
            existing = commit["files"].get(path)
            files.append({"path": path, "uploadMode": "lfs" if binary or size > 10 * 2**20 else "regular",
                          "shouldIgnore": False, "oid": existing["oid"] if existing else None})
        self._send(200, {"files": files, "commitOid": oid})

    def commit(self, type: str, repo: str, rev: str) -> None:  # noqa: A002
        if (self.query.get("create_pr") or ["0"])[0].lower() in ("1", "true"):
            raise RequestRejected(400, "The local hub has no pull requests: commit to a branch (create_pr=False).",
                                  "PullRequestsNotSupported")
        header, operations = _parse_commit(self._body(commit=True))  # the whole body, checked, before applying
        self._writable_repo(type, repo)
        oid = self.hub.storage.commit(type, repo, rev, header, operations, may_reference=self._may_reference)
        self._send(200, {"success": True, "commitOid": oid,
                         "commitUrl": f"{self.hub.url}/{self._prefix(type)}{repo}/commit/{oid}",
                         "commitMessage": header.get("summary", ""), "pullRequestUrl": None})

    def _may_reference(self, oid: str) -> bool:
        """A writer may put a stored blob into a commit only if it uploaded those bytes itself or can already read
        a repository that holds them: knowing a hash must not be a way to read someone's private file."""
        identity = self.identity
        if identity is not None and self.hub.holds(identity.name, oid):
            return True
        if self._readable_blobs is None:  # one scan of the repositories per request, whatever its size
            self._readable_blobs = self.hub.storage.readable_blobs(
                lambda r: guard.can_read(identity, r["id"], bool(r["settings"].get("private"))))
        return oid in self._readable_blobs

    def lfs_batch(self, repo: str, prefix: str | None = None) -> None:
        repo_type = prefix or "models"
        payload = _json(self._body())
        self._writable_repo(repo_type, repo)
        objects_in = payload.get("objects", [])
        if not isinstance(objects_in, list) or not all(isinstance(o, dict) for o in objects_in):
            raise RequestRejected(400, "'objects' must be a list of {oid, size} objects.")
        if len(objects_in) > MAX_LFS_BATCH:
            raise RequestRejected(400, f"An LFS batch takes at most {MAX_LFS_BATCH} objects, got {len(objects_in)}.")
        objects = []
        for obj in objects_in:
            oid, size = guard.sha256_oid(obj.get("oid")), obj.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise RequestRejected(400, f"LFS object {oid}: 'size' must be an integer >= 0.")
            if size > self.hub.max_upload_bytes:
                raise RequestRejected(413, f"LFS object {oid} of {size} bytes exceeds the upload limit of "
                                           f"{self.hub.max_upload_bytes} bytes.", "PayloadTooLarge")
            entry = {"oid": oid, "size": size, "authenticated": True}
            # a stored blob the sender may not reference is asked for like a missing one: the answer reveals nothing
            if not (self.hub.storage.has_blob(oid) and self._may_reference(oid)):
                ticket = self.hub.issue_upload_ticket(oid, size, self.identity.name if self.identity else "")
                entry["actions"] = {"upload": {"href": f"{self.hub.url}/api/lfs-upload/{oid}?ticket={ticket}"}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects}, content_type="application/vnd.git-lfs+json")

    def lfs_upload(self, oid: str) -> None:
        """The upload URL handed out by the LFS batch answer: the ticket in it stands for the writer's token, as a
        pre-signed storage URL does on the Hub (the client sends no Authorization header there)."""
        oid = guard.sha256_oid(oid)
        ticket = (self.query.get("ticket") or [""])[0]
        upload = self.hub.redeem_upload_ticket(ticket, oid)
        declared = self._content_length()
        if declared is not None and declared != upload.size:
            raise RequestRejected(400, f"Content-Length {declared} differs from the {upload.size} bytes announced for "
                                       f"{oid}.")
        self._extend_deadline(upload.size / UPLOAD_MIN_BYTES_PER_SECOND)
        if not self.hub.storage.has_blob(oid):
            self.hub.storage.put_blob_stream(self._body_chunks(upload.size), oid, upload.size)
        else:  # already stored by another upload: the sender proves it has the very bytes, and nothing is written
            self.hub.storage.check_stream(self._body_chunks(upload.size), oid, upload.size)
        self.hub.redeemed(ticket, upload)
        self._send(200, {})

    def resolve_file(self, repo: str, rev: str, path: str, prefix: str | None = None) -> None:
        repo_type = prefix or "models"
        repo_data = self._visible_repo(repo_type, repo)
        path = guard.file_path(path)
        oid, commit = self.hub.storage.resolve(repo_data, rev)
        if repo_data["settings"].get("gated"):
            raise RequestRejected(403, f"Access to {repo_type[:-1]} {repo} is restricted: you must be authenticated "
                                       "and have accepted its conditions.", "GatedRepo")
        entry = commit["files"].get(path)
        if entry is None:
            raise RequestRejected(404, f"Entry not found: {path} at {rev}.", "EntryNotFound")
        size = int(entry["size"])
        etag = entry["sha256"] if entry["lfs"] else entry["oid"]
        headers = {"X-Repo-Commit": oid, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if entry["lfs"]:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(size)})
        if self.command == "GET" and repo_type == "models" and path == "config.json":
            self.hub.storage.count_download(repo_type, repo)
        start, end, status = 0, size - 1, 200
        byte_range = self.headers.get("Range")
        if byte_range and self.command == "GET":
            match = re.fullmatch(r"bytes=([0-9]{0,19})-([0-9]{0,19})", byte_range.strip())
            if not match or not (match.group(1) or match.group(2)):
                raise RequestRejected(416, f"Unsupported range {byte_range[:80]!r}.")
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:
                start = max(0, size - int(match.group(2)))
            if start > end and size:
                raise RequestRejected(416, f"Range {byte_range[:80]!r} outside a file of {size} bytes.")
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            status = 206
        with self.hub.storage.open_blob(entry["sha256"]) as handle:
            self._start(status, max(0, end - start + 1), headers, "application/octet-stream")
            if self.command == "HEAD":
                return
            handle.seek(start)
            left = max(0, end - start + 1)
            while left:
                piece = handle.read(min(left, _CHUNK))
                if not piece:
                    raise ConnectionError("blob shorter than recorded")  # cannot happen with atomic blob writes
                self.wfile.write(piece)
                left -= len(piece)


_ROUTES = [  # (method, path pattern, handler, needs a token)
    ("GET", r"/api/whoami-v2", _Handler.whoami, False),
    ("GET", rf"/api/{_TYPE}", _Handler.list_repos, False),
    ("GET", rf"/api/{_TYPE}/{_REPO}/revision/(?P<rev>{_SEGMENT})", _Handler.repo_info, False),
    ("GET", rf"/api/{_TYPE}/{_REPO}/tree/(?P<rev>{_SEGMENT})(?:/(?P<path>.*))?", _Handler.tree, False),
    ("POST", rf"/api/{_TYPE}/{_REPO}/paths-info/(?P<rev>{_SEGMENT})", _Handler.paths_info, False),
    ("POST", rf"/api/{_TYPE}/{_REPO}/preupload/(?P<rev>{_SEGMENT})", _Handler.preupload, True),
    ("POST", rf"/api/{_TYPE}/{_REPO}/commit/(?P<rev>{_SEGMENT})", _Handler.commit, True),
    ("PUT", rf"/api/{_TYPE}/{_REPO}/settings", _Handler.settings, True),
    ("GET", rf"/api/{_TYPE}/{_REPO}", _Handler.repo_info, False),
    ("POST", r"/api/repos/create", _Handler.create_repo, True),
    ("DELETE", r"/api/repos/delete", _Handler.delete_repo, True),
    ("POST", r"/api/validate-yaml", _Handler.validate_yaml, False),
    ("PUT", r"/api/lfs-upload/(?P<oid>[0-9a-f]{64})", _Handler.lfs_upload, False),  # the ticket authorises it
    ("POST", rf"/(?:(?P<prefix>datasets|spaces)/)?{_REPO}\.git/info/lfs/objects/batch", _Handler.lfs_batch, True),
    ("GET", rf"/(?:(?P<prefix>datasets|spaces)/)?{_REPO}/resolve/(?P<rev>{_SEGMENT})/(?P<path>.+)",
     _Handler.resolve_file, False),
]


class _Server(ThreadingHTTPServer):
    """Threads per connection, at most ``max_connections`` at once; past that a client gets 503 at once."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG  # connections the kernel holds while every thread is busy (default 5)

    def __init__(self, address: tuple, handler: type, *, ipv6: bool, max_connections: int):
        self.address_family = socket.AF_INET6 if ipv6 else socket.AF_INET
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            body = b'{"error": "The local hub is serving too many connections; try again."}'
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


@dataclass
class LocalHub:
    """A running local hub: ``url`` goes into ``HF_ENDPOINT``; ``storage`` seeds settings such as downloads.

    ``tokens`` is an :class:`AccessPolicy` or the path of a tokens file (see ``hub.guard``); None lets any bearer
    token write anywhere, which is safe only because the server listens on loopback alone.
    """

    root: Path
    host: str = "127.0.0.1"
    port: int = 0
    tokens: AccessPolicy | str | os.PathLike | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    timeout: float = DEFAULT_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    request_deadline: float = DEFAULT_REQUEST_DEADLINE
    storage: HubStorage = field(init=False)
    watchdog: _Watchdog = field(init=False, repr=False)
    policy: AccessPolicy = field(init=False)
    _server: _Server | None = field(init=False, default=None, repr=False)
    _thread: threading.Thread | None = field(init=False, default=None, repr=False)
    _uploads: dict[str, _Upload] = field(init=False, default_factory=dict, repr=False)
    _uploads_lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)
    _tickets_of: dict[str, set[str]] = field(init=False, default_factory=dict, repr=False)
    _held: set[tuple[str, str]] = field(init=False, default_factory=set, repr=False)
    _next_sweep: float = field(init=False, default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.host not in LOOPBACK:
            raise HubServerError(f"the local hub binds to loopback only (127.0.0.1, localhost or ::1), got "
                                 f"{self.host!r}")
        for name in ("max_body_bytes", "max_upload_bytes", "max_connections"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise HubServerError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("timeout", "request_deadline"):
            if not getattr(self, name) > 0:
                raise HubServerError(f"{name} must be a positive number of seconds, got {getattr(self, name)!r}")
        if isinstance(self.tokens, AccessPolicy):
            self.policy = self.tokens
        else:
            self.policy = AccessPolicy() if self.tokens is None else AccessPolicy.from_file(self.tokens)
        self.root = Path(self.root)
        self.storage = HubStorage(self.root)

    @property
    def url(self) -> str:
        if self._server is None:
            raise HubServerError("the local hub is not running; call start() or use it as a context manager")
        host = "[::1]" if self.host == "::1" else "127.0.0.1"
        return f"http://{host}:{self._server.server_address[1]}"

    def describe(self) -> str:
        """What the server promises, as its startup line states it."""
        return (f"loopback only; {self.policy.describe()}; private repositories are visible only to tokens of "
                f"their namespace; request bodies up to {self.max_body_bytes} bytes, LFS uploads up to "
                f"{self.max_upload_bytes} bytes; clients silent for {self.timeout:g} s, or whose request has not "
                f"arrived whole after {self.request_deadline:g} s (uploads: more, by their size), are disconnected")

    def start(self) -> LocalHub:
        handler = type("Handler", (_Handler,), {"hub": self})
        ipv6 = self.host == "::1"
        if ipv6 and not socket.has_ipv6:
            raise HubServerError("--host ::1 needs IPv6, which this Python was built without; use 127.0.0.1")
        address = ("::1" if ipv6 else "127.0.0.1", self.port)
        try:
            self._server = _Server(address, handler, ipv6=ipv6, max_connections=self.max_connections)
        except OSError as error:
            raise HubServerError(f"cannot listen on {address[0]} port {self.port}: {error.strerror or error}"
                                 + ("; this machine has no IPv6 loopback, use 127.0.0.1" if ipv6 else "")) from None
        self.watchdog = _Watchdog()
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-hub", daemon=True)
        self._thread.start()
        return self

    def issue_upload_ticket(self, oid: str, size: int, writer: str) -> str:
        """A one-time upload URL's secret; tickets live in a dict, so issuing and redeeming are O(1)."""
        ticket = secrets.token_urlsafe(32)
        with self._uploads_lock:
            now = time.monotonic()
            if now >= self._next_sweep:  # expired tickets go once a minute, not on every request
                for stale in [t for t, u in self._uploads.items() if u.expires < now]:
                    self._forget(stale)
                self._next_sweep = now + 60
            self._uploads[ticket] = _Upload(oid, size, now + UPLOAD_TICKET_SECONDS, writer)
            self._tickets_of.setdefault(oid, set()).add(ticket)
        return ticket

    def _forget(self, ticket: str) -> None:
        upload = self._uploads.pop(ticket, None)
        if upload is not None:
            tickets = self._tickets_of.get(upload.oid, set())
            tickets.discard(ticket)
            if not tickets:
                self._tickets_of.pop(upload.oid, None)

    def redeem_upload_ticket(self, ticket: str, oid: str) -> _Upload:
        with self._uploads_lock:
            upload = self._uploads.get(ticket)
            if upload is not None and upload.oid == oid and upload.expires >= time.monotonic():
                return upload
        raise RequestRejected(401, "An LFS upload needs the URL (with its ticket) from an authenticated LFS batch "
                                   "request.", "Unauthorized")

    def redeemed(self, ticket: str, upload: _Upload) -> None:
        """The upload arrived whole: its writer may now reference the blob, and the ticket is spent."""
        with self._uploads_lock:
            self._held.add((upload.writer, upload.oid))
            self._forget(ticket)

    def holds(self, writer: str, oid: str) -> bool:
        with self._uploads_lock:
            return (writer, oid) in self._held

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
            self.watchdog.stop()
            self.storage.flush_downloads()

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def hub_environment(url: str, home: str | os.PathLike, token: str = "hf_local_dummy_token") -> dict[str, str]:
    """The variables that point the Hub client libraries at a local hub; set them before importing those."""
    return {"HF_ENDPOINT": url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(home), "HF_TOKEN": token,
            "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0"}


__all__ = ["AccessPolicy", "HubServerError", "HubStorage", "LocalHub", "hub_environment"]

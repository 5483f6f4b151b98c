"""The local Hub server as an attacker and an unlucky user meet it: hostile requests, bad bodies, crashes.

Every hostile request must get a 4xx JSON answer, the server must keep serving, nothing outside a sentinel tree
may change, and no answer may ever carry the sentinel secret.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from hf_twophase.hub.guard import AccessPolicy, TokensFileError
from hf_twophase.hub.server import HubServerError, LocalHub

SECRET = f"SENTINEL-SECRET-{uuid.uuid4().hex}".encode()
TOKEN = {"Authorization": "Bearer anything"}


# --- a tiny raw HTTP client (http.client refuses the malformed requests we need to send) -------------------------
def address(hub: LocalHub) -> tuple[str, int]:
    return ("::1" if hub.host == "::1" else "127.0.0.1"), hub._server.server_address[1]


def raw(hub: LocalHub, data: bytes, *, timeout: float = 10.0, half_close: bool = False) -> tuple[int, bytes]:
    """Send bytes, read until the server closes; (status, whole response). Status 0: closed without an answer."""
    with socket.create_connection(address(hub), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # an answer sent before the body was read (413); read it, as urllib3 does
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while True:
                piece = sock.recv(65536)
                if not piece:
                    break
                chunks.append(piece)
        except (TimeoutError, ConnectionResetError):
            pass
    reply = b"".join(chunks)
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.") else 0
    return status, reply


def request(hub: LocalHub, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None,
            ) -> tuple[int, bytes]:
    if isinstance(body, str):
        body = body.encode()
    head = {"Host": "127.0.0.1", "Connection": "close", **(headers or {})}
    if body is not None:
        head.setdefault("Content-Length", str(len(body)))
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in head.items()]
    return raw(hub, ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + (body or b""))


def body_of(reply: bytes) -> bytes:
    return reply.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in reply else b""


def ndjson(*lines: dict) -> bytes:
    return b"\n".join(json.dumps(line).encode() for line in lines)


def header(summary: str = "c") -> dict:
    return {"key": "header", "value": {"summary": summary}}


def regular(path: str, content: bytes) -> dict:
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(content).decode(),
                                     "encoding": "base64"}}


def snapshot(folder: Path) -> dict[str, tuple[bytes, int] | str]:
    out: dict[str, tuple[bytes, int] | str] = {}
    for base, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(base) / name
            key = str(path.relative_to(folder))
            out[key] = f"link->{os.readlink(path)}" if path.is_symlink() else \
                (path.read_bytes(), path.stat().st_mode) if path.is_file() else "dir"
    return out


def alive(hub: LocalHub) -> bool:
    status, reply = request(hub, "GET", "/api/models")
    return status == 200 and reply.rstrip().endswith(b"]")


# --- the server under attack ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    """A hub whose root sits beside an ``outside`` tree of sentinels, with links planted inside the root."""
    top = tmp_path_factory.mktemp("arena")
    outside = top / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "victim.json").write_bytes(b'{"id": "victim", "secret": "' + SECRET + b'"}')
    (outside / "sub").mkdir()
    (outside / "sub" / "passwd").write_bytes(SECRET)
    root = top / "hub"
    hub = LocalHub(root, max_body_bytes=1 << 20, max_upload_bytes=4 << 20, timeout=1.5).start()
    # links inside the root that point outside it: a repository file, a namespace folder and a blob
    (root / "repos" / "models" / "planted").mkdir(parents=True)
    (root / "repos" / "models" / "planted" / "link.json").symlink_to(outside / "victim.json")
    (root / "repos" / "models" / "linkedns").symlink_to(outside, target_is_directory=True)
    secret_sha = hashlib.sha256(SECRET).hexdigest()
    (root / "blobs" / secret_sha).symlink_to(outside / "secret.txt")
    status, _ = request(hub, "POST", "/api/repos/create", json.dumps({"name": "mine", "organization": "team"}),
                        TOKEN)
    assert status == 200
    before = snapshot(outside)
    yield hub, outside, root, secret_sha
    hub.stop()
    assert snapshot(outside) == before, "something outside the hub's root changed"


def files_of(hub: LocalHub, repo: str = "team/mine") -> list[str]:
    status, reply = request(hub, "GET", f"/api/models/{repo}/tree/main?recursive=true")
    assert status == 200, reply
    return sorted(e["path"] for e in json.loads(body_of(reply)))


LONG = "a" * 300
HOSTILE = [
    # 1. LFS oids that are paths, then a read of what they would have linked
    ("POST", "/api/models/team/mine/commit/main", ndjson(header(), {"key": "lfsFile", "value": {
        "path": "passwd", "oid": "/etc/passwd", "algo": "sha256"}}), TOKEN),
    ("POST", "/api/models/team/mine/commit/main", ndjson(header(), {"key": "lfsFile", "value": {
        "path": "secret", "oid": "../../outside/secret.txt", "algo": "sha256"}}), TOKEN),
    ("GET", "/team/mine/resolve/main/passwd", None, {}),
    # 2. delete outside the root, relative and absolute
    ("DELETE", "/api/repos/delete", json.dumps({"name": "../../../outside/victim"}), TOKEN),
    ("DELETE", "/api/repos/delete", json.dumps({"name": "/tmp/outside/victim"}), TOKEN),
    ("DELETE", "/api/repos/delete", json.dumps({"name": "victim", "organization": "../../outside"}), TOKEN),
    ("DELETE", "/api/repos/delete", json.dumps({"name": "link", "organization": "planted"}), TOKEN),
    # 3. create outside the root through the type or the name
    ("POST", "/api/repos/create", json.dumps({"name": "pwn", "type": "../../outside/pwn"}), TOKEN),
    ("POST", "/api/repos/create", json.dumps({"name": "../x"}), TOKEN),
    ("POST", "/api/repos/create", json.dumps({"name": ".."}), TOKEN),
    ("POST", "/api/repos/create", json.dumps({"name": "../.."}), TOKEN),
    ("POST", "/api/repos/create", json.dumps({"name": "x", "organization": ".."}), TOKEN),
    ("POST", "/api/repos/create", json.dumps({"name": "x", "organization": "linkedns"}), TOKEN),
    ("POST", "/api/repos/create", json.dumps({"name": "\uff0e\uff0e"}), TOKEN),  # fullwidth dots
    ("POST", "/api/repos/create", json.dumps({"name": "a\u2025b"}), TOKEN),  # two-dot leader
    ("POST", "/api/repos/create", json.dumps({"name": "caf\u00e9"}), TOKEN),
    ("POST", "/api/repos/create", json.dumps({"name": "x\u0000y"}), TOKEN),
    ("POST", "/api/repos/create", json.dumps({"name": LONG}), TOKEN),
    # 4. encoded ids and paths on the read endpoints, the LFS batch as an existence oracle
    ("GET", "/api/models/%2e%2e%2f%2e%2e%2foutside%2fvictim", None, {}),
    ("GET", "/api/models/%2e%2e/%2e%2e%2fvictim", None, {}),
    ("GET", "/api/models/%252e%252e%252f%252e%252e/victim", None, {}),
    ("GET", "/api/models/planted/link", None, {}),
    ("GET", "/api/models/linkedns/victim", None, {}),
    ("GET", "/api/models/team%2fmine%00/tree/main", None, {}),
    ("GET", "/api/models/%ff%fe/x", None, {}),
    ("GET", "/team/mine/resolve/main/..%2f..%2f..%2foutside%2fsecret.txt", None, {}),
    ("GET", "/team/mine/resolve/..%2f..%2fblobs/x", None, {}),
    ("GET", "/team/mine/resolve/main/a%5c..%5c..%5csecret.txt", None, {}),
    ("GET", "/api/models/team/mine/tree/main/..%2f..", None, {}),
    ("POST", "/team/mine.git/info/lfs/objects/batch", json.dumps({"operation": "upload", "objects": [
        {"oid": "../../outside/secret.txt", "size": 1}]}), TOKEN),
    ("POST", "/team/mine.git/info/lfs/objects/batch", json.dumps({"operation": "upload", "objects": [
        {"oid": "/etc/passwd", "size": 1}]}), TOKEN),
    # 5. an LFS upload without the ticket of an authenticated batch request
    ("PUT", f"/api/lfs-upload/{hashlib.sha256(b'x').hexdigest()}", b"x", {}),
    ("PUT", f"/api/lfs-upload/{hashlib.sha256(b'x').hexdigest()}?ticket=guess", b"x", TOKEN),
    # 6. bodies: announced far beyond the limit
    ("POST", "/api/repos/create", None, {**TOKEN, "Content-Length": str(10**12)}),
    # 7. malformed requests
    ("POST", "/api/repos/create", "[1, 2]", TOKEN),
    ("POST", "/api/repos/create", json.dumps({"name": 5}), TOKEN),
    ("POST", "/api/repos/create", "not json", TOKEN),
    ("POST", "/api/repos/create", json.dumps({"name": "ok", "private": "yes"}), TOKEN),
    ("POST", "/api/models/team/mine/commit/main", b"[1, 2]\n", TOKEN),
    ("POST", "/api/models/team/mine/commit/main", b'{"key": "file", "value": [1]}\n', TOKEN),
    ("POST", "/api/models/team/mine/commit/main", b"\xff\xfe\n", TOKEN),
    ("POST", "/api/models/team/mine/commit/main", ndjson(header(), {"key": "file", "value": {
        "path": "x.txt", "content": "!!!not base64", "encoding": "base64"}}), TOKEN),
    ("POST", "/api/models/team/mine/commit/main", ndjson(header(), {"key": "file", "value": {
        "path": "x.txt", "content": 7}}), TOKEN),
    ("POST", "/api/models/team/mine/commit/main", ndjson(header(), {"key": "rename", "value": {}}), TOKEN),
    ("POST", "/api/models/team/mine/commit/main", ndjson(header(), regular("../../x", b"1")), TOKEN),
    ("POST", "/api/models/team/mine/commit/main", ndjson(header(), regular("/abs/x", b"1")), TOKEN),
    ("POST", "/api/models/team/mine/commit/main", ndjson(header(), regular("", b"1")), TOKEN),
    ("POST", "/api/models/team/mine/commit/main", ndjson(header(), regular("a//b", b"1")), TOKEN),
    ("POST", "/api/models/team/mine/commit/main", ndjson(header(), regular("a\\..\\b", b"1")), TOKEN),
    ("POST", "/api/models/team/mine/commit/main", ndjson(header(), regular(".git/config", b"1")), TOKEN),
    ("POST", "/api/models/team/mine/commit/main", ndjson(header(), regular("a/\x00b", b"1")), TOKEN),
    ("POST", "/api/models/team/mine/commit/main", ndjson(header(), regular("x" * 2000, b"1")), TOKEN),
    ("POST", "/api/models/team/mine/commit/main", ndjson(header(), {"key": "deletedFolder", "value": {
        "path": "../.."}}), TOKEN),
    ("POST", "/api/models/team/mine/commit/%2e%2e%2f%2e%2e", ndjson(header(), regular("a", b"1")), TOKEN),
    ("POST", "/api/repos/create", None, {**TOKEN, "Content-Length": "abc"}),
    ("POST", "/api/repos/create", None, {**TOKEN, "Content-Length": "-5"}),
    ("POST", "/api/repos/create", None, {**TOKEN, "Content-Length": "1e9"}),
    ("POST", "/api/repos/create", None, {**TOKEN, "Transfer-Encoding": "gzip"}),
    ("POST", "/api/repos/create", b"2\r\n{}\r\n0\r\n\r\n", {**TOKEN, "Transfer-Encoding": "chunked",
                                                          "Content-Length": "12"}),
    ("POST", f"/api/models/{LONG}/commit/main", ndjson(header(), regular("a", b"1")), TOKEN),
    ("GET", f"/api/models/team/{LONG}", None, {}),
    ("PUT", "/api/models/team/mine/settings", json.dumps({"gated": "yes"}), TOKEN),
    ("PUT", "/api/models/team/mine/settings", json.dumps(["private"]), TOKEN),
    ("POST", "/api/models/team/mine/preupload/main", json.dumps({"files": [{"path": "../x", "size": 1}]}), TOKEN),
    ("POST", "/api/models/team/mine/preupload/main", json.dumps({"files": "all"}), TOKEN),
    ("POST", "/api/models/team/mine/paths-info/main", json.dumps({"paths": [1, 2]}),
     {"Content-Type": "application/json"}),
    ("POST", "/team/mine.git/info/lfs/objects/batch", json.dumps({"objects": [{"oid": "a" * 64, "size": -1}]}),
     TOKEN),
    ("POST", "/team/mine.git/info/lfs/objects/batch", json.dumps({"objects": [{"oid": "a" * 64, "size": 10**15}]}),
     TOKEN),
    ("POST", "/team/mine.git/info/lfs/objects/batch", json.dumps({"objects": {"oid": "x"}}), TOKEN),
    ("GET", "/api/models?limit=abc", None, {}),
    ("GET", "/api/models?" + "&".join(f"a{i}=1" for i in range(500)), None, {}),
    ("GET", "/team/mine/resolve/main/.gitattributes", None, {"Range": "bytes=99999999999999999999-"}),
    ("GET", "/team/mine/resolve/main/.gitattributes", None, {"Range": "bytes=5-2"}),
    ("GET", "/team/mine/resolve/main/.gitattributes", None, {"Range": "lines=1-2"}),
    ("GET", "/api/whoami-v2", None, {}),
    ("GET", "/api/whoami-v2", None, {"Authorization": "Basic dXNlcjpwYXNz"}),
    ("GET", "/api/whoami-v2", None, {"Authorization": "Bearer "}),
    ("PATCH", "/api/models/team/mine", None, {}),
    ("GET", "/no/such/route/at/all", None, {}),
    # writes without a token
    ("POST", "/api/repos/create", json.dumps({"name": "anon"}), {}),
    ("DELETE", "/api/repos/delete", json.dumps({"name": "mine", "organization": "team"}), {}),
    ("POST", "/api/models/team/mine/commit/main", ndjson(header(), regular("a.txt", b"1")), {}),
    ("PUT", "/api/models/team/mine/settings", json.dumps({"private": True}), {}),
    ("POST", "/team/mine.git/info/lfs/objects/batch", json.dumps({"objects": []}), {}),
]


@pytest.mark.parametrize("method, path, body, headers", HOSTILE, ids=[f"{i:02d}" for i in range(len(HOSTILE))])
def test_hostile_request_gets_a_4xx_and_the_server_stays_up(arena, method, path, body, headers):
    hub, outside, root, _ = arena
    before = files_of(hub)
    status, reply = request(hub, method, path, body, headers)
    assert 400 <= status < 500, reply[:400]
    assert SECRET not in reply
    assert reply.split(b"\r\n\r\n", 1)[1].startswith(b"{"), "errors are JSON"
    assert alive(hub)
    assert files_of(hub) == before, "a refused request changed the repository"
    assert not any(p.name in ("pwn", "x", "anon") for p in root.rglob("*"))


def test_malformed_http_is_answered_not_dropped(arena):
    hub = arena[0]
    cases = [
        b"GARBAGE\r\n\r\n",
        b"GET /api/models HTTP/9.9\r\n\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",  # request line too long
        b"GET /api/models HTTP/1.1\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n",  # header too long
        b"GET /api/models HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n",
        b"POST /api/repos/create HTTP/1.1\r\nAuthorization: Bearer x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /api/repos/create HTTP/1.1\r\nAuthorization: Bearer x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"ffffffffffffffff\r\n",
        b"POST /api/repos/create HTTP/1.1\r\nAuthorization: Bearer x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}XX",
    ]
    for data in cases:
        status, reply = raw(hub, data, half_close=True)
        assert 400 <= status < 500, (data[:60], reply[:200])
        assert SECRET not in reply
        assert alive(hub)


def test_a_body_cut_short_applies_nothing(arena):
    hub = arena[0]
    before = files_of(hub)
    body = ndjson(header("three files"), regular("one.txt", b"1"), regular("two.txt", b"2"),
                  regular("three.txt", b"3"))
    cut = body[: len(body) * 2 // 3]  # one and most of two; the client then hangs up
    head = (f"POST /api/models/team/mine/commit/main HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    status, reply = raw(hub, head + cut, half_close=True)
    assert status == 400 and b"nothing was applied" in reply
    assert files_of(hub) == before
    assert alive(hub)


def test_a_silent_client_is_disconnected_and_others_are_served(arena):
    hub = arena[0]
    with socket.create_connection(address(hub), timeout=10) as slow:
        slow.sendall(b"POST /api/repos/create HTTP/1.1\r\nAuthorization: Bearer x\r\nContent-Length: 100\r\n\r\n{")
        assert alive(hub)  # served meanwhile
        start = time.monotonic()
        reply = b""
        while piece := slow.recv(4096):
            reply += piece
        assert time.monotonic() - start < 8  # the 1.5 s timeout, not forever
        assert reply.startswith(b"HTTP/1.1 408") or reply == b""
    assert alive(hub)


def test_links_inside_the_root_never_lead_outside(arena):
    hub, _, _, secret_sha = arena
    # the planted blob link is never read, even through a commit that names its (valid) oid
    status, reply = request(hub, "POST", "/api/models/team/mine/commit/main", ndjson(header(), {
        "key": "lfsFile", "value": {"path": "s.bin", "oid": secret_sha, "algo": "sha256"}}), TOKEN)
    assert 400 <= status < 500 and SECRET not in reply
    status, reply = request(hub, "POST", "/team/mine.git/info/lfs/objects/batch", json.dumps(
        {"operation": "upload", "objects": [{"oid": secret_sha, "size": len(SECRET)}]}), TOKEN)
    assert status == 200 and "actions" in json.loads(body_of(reply))["objects"][0]  # treated as absent
    status, reply = request(hub, "GET", "/api/models?limit=1000")
    ids = [r["id"] for r in json.loads(body_of(reply))]
    assert "planted/link" not in ids and not any(i.startswith("linkedns/") for i in ids) and SECRET not in reply


def test_lfs_upload_needs_its_ticket_and_the_right_bytes(arena):
    hub = arena[0]
    data = os.urandom(3000)
    oid = hashlib.sha256(data).hexdigest()
    status, reply = request(hub, "POST", "/team/mine.git/info/lfs/objects/batch", json.dumps(
        {"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]}), TOKEN)
    href = json.loads(body_of(reply))["objects"][0]["actions"]["upload"]["href"]
    path = href.split("127.0.0.1:", 1)[1].split("/", 1)[1]
    wrong = os.urandom(3000)
    status, _ = request(hub, "PUT", "/" + path, wrong)
    assert status == 400
    status, _ = request(hub, "PUT", "/" + path, data + b"extra")
    assert status == 400
    assert not hub.storage.has_blob(oid)
    assert not list((hub.storage.root / "blobs").glob(".*tmp")), "a refused upload leaves no temporary file"
    status, _ = request(hub, "PUT", "/" + path, data)
    assert status == 200 and hub.storage.has_blob(oid)
    status, _ = request(hub, "PUT", "/" + path, data)
    assert status == 401  # a ticket is used once


def test_private_repositories_are_hidden_from_other_namespaces(tmp_path):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"alice-token": ["alice"], "bob-token": ["bob", "shared"], "admin": ["*"]}))
    alice, bob = {"Authorization": "Bearer alice-token"}, {"Authorization": "Bearer bob-token"}
    with LocalHub(tmp_path / "hub", tokens=tokens) as hub:
        assert request(hub, "POST", "/api/repos/create", json.dumps({"name": "secret", "private": True}),
                       alice)[0] == 200
        assert request(hub, "POST", "/api/repos/create", json.dumps({"name": "open"}), alice)[0] == 200
        for who in ({}, bob):
            status, reply = request(hub, "GET", "/api/models", None, who)
            assert [r["id"] for r in json.loads(body_of(reply))] == ["alice/open"]
            assert request(hub, "GET", "/api/models/alice/secret", None, who)[0] == 404
            assert request(hub, "GET", "/alice/secret/resolve/main/.gitattributes", None, who)[0] == 404
        status, reply = request(hub, "GET", "/api/models", None, alice)
        assert sorted(r["id"] for r in json.loads(body_of(reply))) == ["alice/open", "alice/secret"]
        assert request(hub, "GET", "/alice/secret/resolve/main/.gitattributes", None, alice)[0] == 200
        # ownership: bob writes to his namespaces only, unknown tokens are refused
        commit = ndjson(header(), regular("a.txt", b"1"))
        assert request(hub, "POST", "/api/models/alice/open/commit/main", commit, bob)[0] == 403
        assert request(hub, "POST", "/api/repos/create", json.dumps({"name": "x", "organization": "alice"}),
                       bob)[0] == 403
        assert request(hub, "DELETE", "/api/repos/delete", json.dumps({"name": "open", "organization": "alice"}),
                       bob)[0] == 403
        assert request(hub, "POST", "/api/repos/create", json.dumps({"name": "x", "organization": "shared"}),
                       bob)[0] == 200
        assert request(hub, "GET", "/api/models", None, {"Authorization": "Bearer nope"})[0] == 401
        assert request(hub, "POST", "/api/models/alice/open/commit/main", commit,
                       {"Authorization": "Bearer admin"})[0] == 200
        status, reply = request(hub, "GET", "/api/whoami-v2", None, bob)
        assert json.loads(body_of(reply))["name"] == "bob"


@pytest.mark.parametrize("content", ["[]", "{}", '{"t": "alice"}', '{"t": []}', '{"a b": ["x"]}', '{"t": ["../x"]}',
                                     "not json"])
def test_a_bad_tokens_file_is_one_clear_error(tmp_path, content):
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(TokensFileError, match="tokens file"):
        AccessPolicy.from_file(path)


def test_server_configuration_is_checked(tmp_path):
    for host in ("0.0.0.0", "::", "192.168.1.1", "example.com"):
        with pytest.raises(HubServerError, match="loopback"):
            LocalHub(tmp_path, host=host)
    with pytest.raises(HubServerError, match="max_body_bytes"):
        LocalHub(tmp_path, max_body_bytes=0)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_ipv6_loopback_serves_or_refuses_with_one_message(tmp_path):
    if _has_ipv6_loopback():
        with LocalHub(tmp_path, host="::1") as hub:
            assert hub.url.startswith("http://[::1]:")
            assert alive(hub)
    else:
        with pytest.raises(HubServerError, match="IPv6"):
            LocalHub(tmp_path, host="::1").start()


# --- a server killed with SIGKILL mid-upload and mid-commit ---------------------------------------------------
def _start_server(root: Path) -> tuple[subprocess.Popen, LocalHub]:
    proc = subprocess.Popen([sys.executable, "-m", "hf_twophase", "hub-server", "--root", str(root), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "local hub serving" in line, line + proc.stderr.read()
    url = line.rsplit(" at ", 1)[1].strip()
    view = LocalHub.__new__(LocalHub)  # a client-side handle: address only
    view.host = "127.0.0.1"
    view._server = type("Address", (), {"server_address": ("127.0.0.1", int(url.rsplit(":", 1)[1]))})()
    return proc, view


def test_sigkill_mid_upload_and_commit_loses_no_acknowledged_commit(tmp_path):
    root = tmp_path / "hub"
    proc, hub = _start_server(root)
    try:
        assert request(hub, "POST", "/api/repos/create", json.dumps({"name": "r", "organization": "k"}),
                       TOKEN)[0] == 200
        acknowledged: dict[str, bytes] = {}
        stop = threading.Event()

        def commit_forever():
            i = 0
            while not stop.is_set():
                content = os.urandom(2000)
                try:
                    status, _ = request(hub, "POST", "/api/models/k/r/commit/main",
                                        ndjson(header(f"c{i}"), regular(f"f{i}.bin", content)), TOKEN)
                except OSError:
                    return
                if status == 200:
                    acknowledged[f"f{i}.bin"] = content
                i += 1

        # an LFS upload the server is killed in the middle of
        big = os.urandom(3 << 20)
        oid = hashlib.sha256(big).hexdigest()
        reply = request(hub, "POST", "/k/r.git/info/lfs/objects/batch", json.dumps(
            {"operation": "upload", "objects": [{"oid": oid, "size": len(big)}]}), TOKEN)[1]
        href = json.loads(body_of(reply))["objects"][0]["actions"]["upload"]["href"]
        upload = socket.create_connection(address(hub), timeout=10)
        upload.sendall(f"PUT /{href.split('/', 3)[3]} HTTP/1.1\r\nContent-Length: {len(big)}\r\n\r\n".encode())
        upload.sendall(big[: len(big) // 2])
        writer = threading.Thread(target=commit_forever)
        writer.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stop.set()
        writer.join()
        upload.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acknowledged) >= 20
    proc, hub = _start_server(root)
    try:
        stored = files_of(hub, "k/r")
        for name, content in acknowledged.items():
            assert name in stored
            status, reply = request(hub, "GET", f"/k/r/resolve/main/{name}")
            assert status == 200 and body_of(reply) == content
        for name in stored:  # every file the repository lists is whole, acknowledged or not
            if name.startswith("f"):
                status, reply = request(hub, "GET", f"/k/r/resolve/main/{name}")
                assert status == 200 and len(body_of(reply)) == 2000
        status, reply = request(hub, "POST", "/api/models/k/r/commit/main", ndjson(header(), {
            "key": "lfsFile", "value": {"path": "big.bin", "oid": oid, "algo": "sha256"}}), TOKEN)
        assert status == 400 and b"never uploaded" in reply  # the torn upload was never kept
    finally:
        proc.kill()
        proc.wait()


def test_real_client_uploads_still_work_with_tickets(local_hub):
    from huggingface_hub import HfApi

    api = HfApi()
    repo = f"tests/tickets-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo)
    data = os.urandom(50_000)
    api.upload_file(path_or_fileobj=data, path_in_repo="w.safetensors", repo_id=repo)
    conn = http.client.HTTPConnection("127.0.0.1", int(local_hub.url.rsplit(":", 1)[1]))
    conn.request("GET", f"/{quote(repo)}/resolve/main/w.safetensors")
    assert conn.getresponse().read() == data

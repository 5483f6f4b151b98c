"""What the local Hub server accepts from a request before it touches the disk, and who may read or write what.

Every name that arrives over HTTP (repository type and id, revision, file path, LFS object id) is checked here with
the Hub's own rules, and every filesystem path is resolved (symbolic links included) and must lie inside the
server's root. A request that fails a check is answered with a 4xx before any file is opened, so no answer can tell
whether some path outside the root exists.

Tokens: with no tokens file, any bearer token may write anywhere (the server binds to loopback only, so "anyone"
is a process on this machine). With a tokens file, ``{"token": ["namespace", ...]}`` (``"*"`` for every
namespace), a token writes only to its namespaces and sees only their private repositories; unknown tokens are
refused.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from hf_twophase.errors import HFTwoPhaseError

# singular names in request bodies (create, delete) -> the plural folder and URL names
REPO_TYPES = {"model": "models", "dataset": "datasets", "space": "spaces"}
DEFAULT_NAMESPACE = "local-user"
ALL_NAMESPACES = "*"
MAX_PATH_LENGTH = 1000  # characters of a file path inside a repository
MAX_REVISION_LENGTH = 256
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REPO_ID = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


class RequestRejected(Exception):
    """A request the server answers with ``status`` and a JSON error; raised before any I/O it would have done."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class TokensFileError(HFTwoPhaseError, ValueError):
    """The ``--tokens`` file is missing or not of the expected shape."""


def _bad(message: str) -> RequestRejected:
    return RequestRejected(400, message, "BadRequest")


def _printable(text: str) -> bool:
    return not any(unicodedata.category(ch).startswith("C") for ch in text)  # controls, NUL, unassigned, surrogates


def repo_type_folder(value: object, *, singular: bool) -> str:
    """``models`` / ``datasets`` / ``spaces`` from a body's ``"model"`` (``singular``) or a URL's ``models``."""
    allowed = REPO_TYPES if singular else {v: v for v in REPO_TYPES.values()}
    if value is None and singular:
        return "models"
    if not isinstance(value, str) or value not in allowed:
        raise _bad(f"repository type must be one of {sorted(allowed)}, got {value!r}")
    return allowed[value]


def repo_id(value: object) -> str:
    """A repository id by the Hub's own rules (``huggingface_hub.utils.validate_repo_id``), ASCII only whatever
    the installed client's version accepts."""
    if not isinstance(value, str) or not value:
        raise _bad(f"repository id must be a non-empty string like 'namespace/name', got {value!r}")
    if not _REPO_ID.fullmatch(value):
        raise _bad(f"invalid repository id {value[:96]!r}: expected 'namespace/name' of ASCII letters, digits, '-', "
                   "'_' and '.'")
    from huggingface_hub.utils import HFValidationError, validate_repo_id  # here: the Hub clients read HF_ENDPOINT
    # once, at their first import, and a test or air-gapped setup starts this server before it sets HF_ENDPOINT

    try:
        validate_repo_id(value)
    except HFValidationError as error:
        raise _bad(f"invalid repository id: {error}") from None
    return value


def namespace_of(repo: str) -> str:
    return repo.split("/", 1)[0] if "/" in repo else DEFAULT_NAMESPACE


def revision(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_REVISION_LENGTH or not _printable(value) \
            or value.startswith(".") or ".." in value or "\\" in value:
        raise _bad(f"invalid revision {value!r}: expected a branch name or a commit id")
    return value


def file_path(value: object) -> str:
    """A file path inside a repository: relative, normalised, ``/``-separated, no ``..``, no empty parts."""
    if not isinstance(value, str) or not value:
        raise _bad(f"file path must be a non-empty string, got {value!r}")
    if len(value) > MAX_PATH_LENGTH or not _printable(value) or "\\" in value or value.startswith("/"):
        raise _bad(f"invalid file path {value[:100]!r}: expected a relative path with '/' separators and no "
                   "control characters")
    parts = value.split("/")
    if any(part in ("", ".", "..") for part in parts) or parts[0] == ".git":
        raise _bad(f"invalid file path {value[:100]!r}: no empty, '.' or '..' parts, nothing under .git/")
    return value


def folder_path(value: object) -> str:
    """A folder inside a repository; empty (the top) is allowed, a trailing ``/`` is dropped."""
    if value in (None, "", "/"):
        return ""
    if isinstance(value, str):
        value = value.rstrip("/")
    return file_path(value)


def sha256_oid(value: object) -> str:
    """An LFS object id: exactly 64 lowercase hex digits (it names a file in the blob store)."""
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise _bad(f"LFS oid must be 64 lowercase hex digits (a sha256), got {str(value)[:80]!r}")
    return value


def inside(root: Path, path: Path) -> Path:
    """``path`` resolved (following every link); refused unless it lies inside ``root`` (already resolved)."""
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise RequestRejected(404, "Not found.", "EntryNotFound")  # the same answer whether it exists or not
    return resolved


@dataclass(frozen=True)
class Identity:
    """Who sent a request: a token's name and the namespaces it may write to (``"*"``: all)."""

    name: str
    namespaces: frozenset[str]

    def owns(self, repo: str) -> bool:
        return ALL_NAMESPACES in self.namespaces or namespace_of(repo) in self.namespaces


@dataclass(frozen=True)
class AccessPolicy:
    """Which bearer tokens are accepted and what each may do; ``tokens=None`` accepts any token for everything."""

    tokens: dict[str, frozenset[str]] | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> AccessPolicy:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise TokensFileError(f"tokens file {path}: cannot be read as JSON ({error}); expected "
                                  '{"<token>": ["<namespace>", ...]}') from None
        if not isinstance(data, dict) or not data:
            raise TokensFileError(f'tokens file {path}: expected a non-empty object {{"<token>": ["<namespace>", '
                                  f"...]}}, got {type(data).__name__}")
        tokens = {}
        for token, namespaces in data.items():
            if not token or not token.isascii() or not token.isprintable() or " " in token:
                raise TokensFileError(f"tokens file {path}: a token must be printable ASCII without spaces")
            if not isinstance(namespaces, list) or not namespaces or not all(
                    isinstance(n, str) and (n == ALL_NAMESPACES or _is_namespace(n)) for n in namespaces):
                raise TokensFileError(f"tokens file {path}: the namespaces of a token must be a non-empty list of "
                                      f"namespace names or '*', got {namespaces!r}")
            tokens[token] = frozenset(namespaces)
        return cls(tokens)

    def identify(self, authorization: str | None) -> Identity | None:
        """The sender of a request from its ``Authorization`` header; None for anonymous. A token the policy does
        not know is refused (401), so a typo never silently reads as anonymous."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise RequestRejected(401, "Authorization must be 'Bearer <token>'.", "Unauthorized")
        if self.tokens is None:
            return Identity(DEFAULT_NAMESPACE, frozenset({ALL_NAMESPACES}))
        match = None
        for known, namespaces in self.tokens.items():  # compare every token, in constant time each
            if hmac.compare_digest(known.encode(), token.encode()):
                match = namespaces
        if match is None:
            raise RequestRejected(401, "Invalid token.", "Unauthorized")
        named = sorted(n for n in match if n != ALL_NAMESPACES)
        return Identity(named[0] if named else DEFAULT_NAMESPACE, match)

    def describe(self) -> str:
        if self.tokens is None:
            return "writes need a token, and any token may write to any namespace (no --tokens file)"
        return f"writes need one of {len(self.tokens)} tokens from the tokens file, each for its own namespaces"


def _is_namespace(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return "/" not in name


def check_writable(identity: Identity | None, repo: str) -> Identity:
    if identity is None:
        raise RequestRejected(401, "Writing needs a token: send 'Authorization: Bearer <token>'.", "Unauthorized")
    if not identity.owns(repo):
        raise RequestRejected(403, f"Your token may not write to the namespace '{namespace_of(repo)}'.", "Forbidden")
    return identity


def repo_not_found(repo: str) -> RequestRejected:
    """The one answer for a repository that does not exist and for a private one the sender may not see."""
    return RequestRejected(404, f"Repository '{repo}' not found.", "RepoNotFound")


def can_read(identity: Identity | None, repo: str, private: bool) -> bool:
    return not private or (identity is not None and identity.owns(repo))


def check_visible(identity: Identity | None, repo: str, private: bool) -> None:
    """A private repository is answered as missing to anyone outside its namespace, as the Hub does."""
    if not can_read(identity, repo, private):
        raise repo_not_found(repo)

"""Thin adapter between hf-twophase and the Hugging Face Hub: the matrix as a Hub dataset, winners as models.

Why a module of its own: every Hub call goes through ``huggingface_hub`` (so ``HF_ENDPOINT``, tokens, caching and
offline mode behave as users expect) and every failure becomes one ``HubError`` that says what was being fetched and
which setting to look at, instead of a stack of HTTP exceptions.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from hf_twophase.errors import HFTwoPhaseError, RecordsError
from hf_twophase.records.matrix import PROXY_REQUIRED_COLUMNS, PerformanceMatrix, validate_records

RECORDS_PATH = "data/records.parquet"
PROXY_PATH = "data/proxy.parquet"


class HubError(HFTwoPhaseError, RuntimeError):
    """The Hub could not give what was asked: unreachable, missing repo or file, gated, no rights."""


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


class HubUnreachable(HubError):  # noqa: N818 - named for what the user sees, like the Hub client's own errors
    """The Hub cannot be reached at all (no network, wrong HF_ENDPOINT, HF_HUB_OFFLINE set)."""


def check_reachable(what: str, *, timeout: float = 10.0) -> None:
    """One request, no retries, before a step that needs the Hub: an unreachable Hub is said at once, where the
    client would retry for half a minute first."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        raise HubUnreachable(f"cannot fetch {what}: HF_HUB_OFFLINE is set, and this needs the Hub itself (unset "
                             "HF_HUB_OFFLINE, or point HF_ENDPOINT at a reachable Hub)")
    try:
        get_session().get(f"{endpoint()}/api/models", params={"limit": 1}, timeout=timeout)
    except (*_transport_errors(), ConnectionError, TimeoutError, OSError) as err:
        raise HubUnreachable(f"cannot fetch {what}: the Hub at HF_ENDPOINT={endpoint()} could not be reached "
                             f"({str(err).splitlines()[0] if str(err) else type(err).__name__}). Check the network or "
                             "point HF_ENDPOINT at a reachable Hub (an air-gapped team can run `hf-twophase "
                             "hub-server`); HF_HUB_OFFLINE=1 uses only what is cached") from err


@contextlib.contextmanager
def hub_errors(what: str) -> Iterator[None]:
    """Turn the client's exceptions into one ``HubError`` naming ``what`` and the setting to check."""
    from huggingface_hub import errors

    transport = _transport_errors()

    try:
        yield
    except errors.OfflineModeIsEnabled as err:
        raise HubError(f"cannot fetch {what}: HF_HUB_OFFLINE is set and it is not in the local cache "
                       f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}). Unset HF_HUB_OFFLINE, or fetch it "
                       "once while online.") from err
    except errors.GatedRepoError as err:
        raise HubError(f"cannot fetch {what}: the repository is gated; accept its conditions on the Hub and log in "
                       "with a token that has access.") from err
    except errors.RepositoryNotFoundError as err:
        raise HubError(f"cannot fetch {what}: no such repository at {endpoint()} (or it is private and the token "
                       "cannot see it).") from err
    except errors.RevisionNotFoundError as err:
        raise HubError(f"cannot fetch {what}: the revision does not exist at {endpoint()}.") from err
    except errors.LocalEntryNotFoundError as err:
        raise HubError(f"cannot fetch {what}: the Hub at HF_ENDPOINT={endpoint()} could not be reached and it is "
                       "not in the local cache. Check the network, point HF_ENDPOINT at a reachable Hub (an "
                       "air-gapped team can run `hf-twophase hub-server`), or set HF_HUB_OFFLINE=1 to use the "
                       "cache only.") from err
    except errors.EntryNotFoundError as err:
        raise HubError(f"cannot fetch {what}: the file is not in the repository at {endpoint()}.") from err
    except errors.HfHubHTTPError as err:
        raise HubError(f"cannot fetch {what} from {endpoint()}: {err}") from err
    except (*transport, ConnectionError, TimeoutError) as err:
        raise HubError(f"cannot fetch {what}: the Hub at HF_ENDPOINT={endpoint()} could not be reached ({err}). "
                       "Check the network, point HF_ENDPOINT at a reachable Hub (an air-gapped team can run "
                       "`hf-twophase hub-server`), or set HF_HUB_OFFLINE=1 to use the cache only.") from err


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network-level errors of whichever HTTP client this huggingface_hub uses (httpx, or its httpx2 successor)."""
    import importlib

    found = []
    for module in ("httpx2", "httpx", "requests"):
        try:
            lib = importlib.import_module(module)
        except ImportError:
            continue
        error = getattr(lib, "TransportError", None) or getattr(lib, "ConnectionError", None)
        if isinstance(error, type):
            found.append(error)
    return tuple(found)


def _read_parquet(path: str, source: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        raise RecordsError(f"not a readable Parquet file ({err})", source=source) from err


def load_matrix(repo_id: str, *, revision: str | None = None, token: str | bool | None = None) -> PerformanceMatrix:
    """The performance matrix published as the Hub dataset ``repo_id`` (at ``revision``; default: latest)."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    what = f"the performance matrix {repo_id}{'@' + revision if revision else ''} ({RECORDS_PATH})"
    cached = try_to_load_from_cache(repo_id, RECORDS_PATH, repo_type="dataset", revision=revision)
    if not constants.HF_HUB_OFFLINE and not isinstance(cached, str):  # nothing to fall back on: fail at once
        check_reachable(what)
    with hub_errors(what):
        path = hf_hub_download(repo_id, RECORDS_PATH, repo_type="dataset", revision=revision, token=token)
    source = f"hf://datasets/{repo_id}/{RECORDS_PATH}"
    return PerformanceMatrix(validate_records(_read_parquet(path, source), source=source), source=source,
                             validate=False)


def is_remote_missing(error: BaseException | None) -> bool:
    """The Hub answered that the file is not there (not: the Hub could not be reached and the cache lacks it).

    huggingface_hub 1.x raises ``RemoteEntryNotFoundError`` for the first; 0.x raises ``EntryNotFoundError`` for
    both, with ``LocalEntryNotFoundError`` (a subclass) for the second."""
    from huggingface_hub import errors

    remote = getattr(errors, "RemoteEntryNotFoundError", None)
    if remote is not None:
        return isinstance(error, remote)
    return isinstance(error, errors.EntryNotFoundError) and not isinstance(error, errors.LocalEntryNotFoundError)


def load_proxy_table(repo_id: str, *, revision: str | None = None, token: str | bool | None = None
                     ) -> pd.DataFrame | None:
    """The proxy scores published next to a matrix, or None when it has none."""
    from huggingface_hub import hf_hub_download

    try:
        with hub_errors(f"the proxy scores of {repo_id} ({PROXY_PATH})"):
            path = hf_hub_download(repo_id, PROXY_PATH, repo_type="dataset", revision=revision, token=token)
    except HubError as err:
        if is_remote_missing(err.__cause__):  # the Hub answered: no proxy table here
            return None
        raise
    frame = _read_parquet(path, f"hf://datasets/{repo_id}/{PROXY_PATH}")
    missing = [c for c in PROXY_REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise RecordsError(f"proxy table lacks column(s) {', '.join(missing)}; expected "
                           f"{', '.join(PROXY_REQUIRED_COLUMNS)}", source=f"hf://datasets/{repo_id}/{PROXY_PATH}")
    return frame


def push_matrix(matrix: PerformanceMatrix, repo_id: str, *, proxy: pd.DataFrame | None = None,
                overwrite: bool = False, private: bool = False, task: str | None = None,
                commit_message: str | None = None, token: str | bool | None = None,
                provenance: str | None = None, license: str = "apache-2.0") -> str:
    """Publish ``matrix`` (and optional proxy scores) as a Parquet dataset with its card; return the commit id.

    What is already published is merged in first and wins on a clash unless ``overwrite``, so a push never loses
    records. The commit names its parent: if someone else pushed in between, the push re-reads and merges again.
    """
    from huggingface_hub import CommitOperationAdd, HfApi, errors

    from hf_twophase.hub.cards import matrix_card

    if matrix.provenance and provenance is None:  # a published matrix carries its source, license and citation
        from hf_twophase.records.published import describe_provenance

        provenance = describe_provenance(matrix.provenance)
        license = str(matrix.provenance["source"].get("license", license)).lower()
    api = HfApi(token=token)
    with hub_errors(f"the dataset repo {repo_id} (create)"):
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    for _attempt in range(3):
        with hub_errors(f"the dataset repo {repo_id}"):
            info = api.dataset_info(repo_id)
        files = {s.rfilename for s in info.siblings or []}
        merged, merged_proxy = matrix, proxy
        if RECORDS_PATH in files:
            published = load_matrix(repo_id, revision=info.sha, token=token)
            merged = published.merge(matrix, overwrite=overwrite)
        if PROXY_PATH in files:
            published_proxy = load_proxy_table(repo_id, revision=info.sha, token=token)
            if proxy is not None and published_proxy is not None:
                first, second = (proxy, published_proxy) if overwrite else (published_proxy, proxy)
                merged_proxy = pd.concat([first, second], ignore_index=True).drop_duplicates(
                    ["model", "dataset", "method"], keep="first")
            else:
                merged_proxy = published_proxy if proxy is None else proxy
        card = matrix_card(merged, repo_id, task=task, has_proxy=merged_proxy is not None, provenance=provenance,
                           license=license)
        ops = [CommitOperationAdd(RECORDS_PATH, _parquet_bytes(merged.records)),
               CommitOperationAdd("README.md", str(card).encode())]
        if merged_proxy is not None:
            ops.append(CommitOperationAdd(PROXY_PATH, _parquet_bytes(merged_proxy)))
        message = commit_message or (f"hf-twophase: {len(merged.models)} models x {len(merged.datasets)} "
                                     "benchmarks")
        try:
            commit = api.create_commit(repo_id, ops, commit_message=message, repo_type="dataset",
                                       parent_commit=info.sha)
        except errors.HfHubHTTPError as err:
            if err.response is not None and err.response.status_code in (409, 412):
                continue  # someone pushed in between: merge with their records and try again
            with hub_errors(f"a commit to {repo_id}"):
                raise
        return commit.oid
    raise HubError(f"could not push to {repo_id}: the branch kept moving during three merge attempts")


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def push_winner(folder: str | os.PathLike, repo_id: str, report, *, task: str,
                dataset_name: str = "the user's dataset", private: bool = False, token: str | bool | None = None,
                license: str | None = None) -> str:
    """Upload a saved winner (``folder``: weights, config, processor) with a model card carrying its report."""
    from huggingface_hub import HfApi

    from hf_twophase.hub.cards import model_card

    folder = Path(folder)
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        report.plot(Path(tmp) / "selection_curves.png")
        (Path(tmp) / "selection_report.json").write_text(json.dumps(report.to_dict(), indent=2))
        card = model_card(report, repo_id, task=task, dataset_name=dataset_name, license=license, has_plot=True)
        (Path(tmp) / "README.md").write_text(str(card))
        with hub_errors(f"the model repo {repo_id} (create)"):
            api.create_repo(repo_id, private=private, exist_ok=True)
        with hub_errors(f"an upload to {repo_id}"):
            api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="hf-twophase: the winner",
                              allow_patterns=None,  # never a pickle: the Trainer's training_args.bin is one
                              ignore_patterns=["checkpoint-*", "*.pt", "*.pth", "*.bin", "*.pkl", "optimizer*"])
            commit = api.upload_folder(repo_id=repo_id, folder_path=tmp,
                                       commit_message="hf-twophase: the selection report")
    return commit.oid

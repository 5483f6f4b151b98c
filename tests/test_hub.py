"""The Hub over real HTTP: the local Hub server with the real huggingface_hub / datasets / transformers clients."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid

import numpy as np
import pandas as pd
import pytest
from huggingface_hub import HfApi

from hf_twophase.errors import RecordsError
from hf_twophase.hub.client import HubError, load_matrix, push_matrix
from hf_twophase.hub.server import HubServerError, LocalHub
from hf_twophase.records.matrix import PerformanceMatrix


def unique(name: str) -> str:
    return f"tests/{name}-{uuid.uuid4().hex[:8]}"


def curves(models: dict[str, float], datasets=("a", "b", "c"), steps=3) -> PerformanceMatrix:
    rows = []
    for i, (model, base) in enumerate(models.items()):
        for j, dataset in enumerate(datasets):
            final = base + 0.01 * j
            for step in range(1, steps + 1):
                rows.append({"model": model, "dataset": dataset, "step": step, "val": final - 0.05 * (steps - step),
                             "test": final if step == steps else None, "cost": 1.0 + i})
    return PerformanceMatrix(rows)


def test_server_binds_to_loopback_only(tmp_path):
    with pytest.raises(HubServerError, match="loopback"):
        LocalHub(tmp_path, host="0.0.0.0")
    with LocalHub(tmp_path) as hub:
        assert hub._server.server_address[0] == "127.0.0.1"
        assert hub.url.startswith("http://127.0.0.1:")


def test_repo_api_basics(local_hub):
    api = HfApi()
    repo = unique("basics")
    api.create_repo(repo)
    with pytest.raises(Exception) as err:
        api.create_repo(repo)
    assert err.value.response.status_code == 409
    api.create_repo(repo, exist_ok=True)  # 409 is accepted with exist_ok
    api.upload_file(path_or_fileobj=b"---\npipeline_tag: text-classification\n---\n# card\n", path_in_repo="README.md",
                    repo_id=repo)
    api.upload_file(path_or_fileobj=bytes(range(256)) * 10, path_in_repo="weights/blob.bin", repo_id=repo)
    files = {f.path: f for f in api.list_repo_tree(repo, recursive=True) if hasattr(f, "size")}
    assert files["weights/blob.bin"].lfs is not None  # binary went through the LFS batch + PUT upload
    assert files["README.md"].lfs is None
    from huggingface_hub.errors import EntryNotFoundError

    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(repo, path_in_repo="missing-folder"))
    info = api.model_info(repo)
    assert info.pipeline_tag == "text-classification" and len(info.sha) == 40
    first = info.sha
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="notes.txt", repo_id=repo)
    assert api.model_info(repo).sha != first
    assert "notes.txt" not in api.list_repo_files(repo, revision=first)  # old revisions stay readable


def test_matrix_round_trip_merge_and_revision(local_hub):
    repo = unique("matrix")
    first = curves({"org/m1": 0.8, "org/m2": 0.6})
    commit = push_matrix(first, repo, task="text-classification")
    back = load_matrix(repo)
    pd.testing.assert_frame_equal(back.records.reset_index(drop=True), first.records.reset_index(drop=True),
                                  check_dtype=False)

    # a second push merges; on a clash what is published wins unless overwrite
    second = curves({"org/m2": 0.1, "org/m3": 0.7})
    push_matrix(second, repo)
    merged = load_matrix(repo)
    assert merged.models == ["org/m1", "org/m2", "org/m3"]
    assert merged.final_scores().loc["org/m2", "a"] == pytest.approx(0.6)
    push_matrix(second, repo, overwrite=True)
    assert load_matrix(repo).final_scores().loc["org/m2", "a"] == pytest.approx(0.1)

    # proxy scores travel in their own Parquet file, merged the same way
    from hf_twophase.hub.client import load_proxy_table

    assert load_proxy_table(repo) is None
    proxy = pd.DataFrame({"model": ["org/m1"], "dataset": ["a"], "method": ["leep"], "score": [-0.5]})
    push_matrix(second, repo, proxy=proxy)
    assert load_proxy_table(repo).to_dict("records") == proxy.to_dict("records")

    # the first commit is still there
    assert load_matrix(repo, revision=commit).models == ["org/m1", "org/m2"]

    # datasets reads the same Parquet through the card's configs
    import datasets

    loaded = datasets.load_dataset(repo, split="train")
    assert set(["model", "dataset", "step", "val", "test", "cost"]) <= set(loaded.column_names)
    assert len(loaded) == len(load_matrix(repo))


def test_matrix_card_renders_real_values(local_hub):
    from huggingface_hub import DatasetCard

    repo = unique("card")
    matrix = curves({"org/alpha": 0.812, "org/beta": 0.55}, datasets=("digits", "mnist"))
    push_matrix(matrix, repo, task="image-classification", provenance="Built by the card test.")
    card = DatasetCard.load(repo, repo_type="dataset")
    assert card.data.task_categories == ["image-classification"]
    assert card.data.configs[0]["data_files"][0]["path"] == "data/records.parquet"
    text = card.text
    assert "| org/alpha | 0.8120 | 0.8220 |" in text
    assert "**Models:** 2" in text and "digits, mnist" in text and "Built by the card test." in text
    assert "{{" not in text


def test_the_packaged_matrix_publishes_with_its_provenance(local_hub):
    from huggingface_hub import DatasetCard

    repo = unique("packaged")
    push_matrix(PerformanceMatrix.default("image-classification"), repo, task="image-classification")
    card = DatasetCard.load(repo, repo_type="dataset")
    assert card.data.license == "mit"
    assert "plasware/two-phase-selection" in card.text and "4ce7cde96110" in card.text and "Cui" in card.text
    assert len(load_matrix(repo).models) == 30


def test_schema_mismatch_names_missing_columns(local_hub):
    repo = unique("bad-schema")
    api = HfApi()
    api.create_repo(repo, repo_type="dataset")
    buffer = pd.DataFrame({"model": ["m"], "dataset": ["d"], "score": [0.5]}).to_parquet()
    api.upload_file(path_or_fileobj=buffer, path_in_repo="data/records.parquet", repo_id=repo, repo_type="dataset")
    with pytest.raises(RecordsError, match="step.*val|val.*step"):
        load_matrix(repo)


def test_missing_repo_and_unreachable_hub_are_one_clear_error(local_hub, tmp_path):
    with pytest.raises(HubError, match="no such repository"):
        load_matrix(unique("nothing-here"))
    code = ("from hf_twophase.hub.client import load_matrix, HubError\n"
            "try:\n    load_matrix('org/matrix')\nexcept HubError as e:\n    print('HUBERROR', e)\n")
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "HUBERROR" in out.stdout, out.stderr[-2000:]
    assert "HF_ENDPOINT=http://127.0.0.1:9" in out.stdout and "HF_HUB_OFFLINE" in out.stdout
    assert "org/matrix" in out.stdout


def test_pushed_model_loads_with_from_pretrained(local_hub, tmp_path):
    import torch
    import transformers as tf

    config = tf.BertConfig(vocab_size=100, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=16, num_labels=3)
    torch.manual_seed(0)
    model = tf.BertForSequenceClassification(config)
    model.save_pretrained(tmp_path / "m")
    repo = unique("tiny-bert")
    api = HfApi()
    api.create_repo(repo)
    api.upload_folder(repo_id=repo, folder_path=str(tmp_path / "m"))
    loaded = tf.AutoModelForSequenceClassification.from_pretrained(repo)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert api.model_info(repo).safetensors.total == sum(p.numel() for p in model.parameters())


def test_range_requests(local_hub):
    api = HfApi()
    repo = unique("ranges")
    api.create_repo(repo)
    data = np.arange(1000, dtype=np.uint8).tobytes()
    api.upload_file(path_or_fileobj=data, path_in_repo="x.bin", repo_id=repo)
    httpx = pytest.importorskip("httpx2") if importlib.util.find_spec("httpx2") else pytest.importorskip("httpx")

    r = httpx.get(f"{local_hub.url}/{repo}/resolve/main/x.bin", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    head = httpx.head(f"{local_hub.url}/{repo}/resolve/main/x.bin")
    assert head.headers["X-Repo-Commit"] == api.model_info(repo).sha
    missing = httpx.get(f"{local_hub.url}/{repo}/resolve/main/nope")
    assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "EntryNotFound"


def test_a_concurrent_push_is_merged_not_lost(local_hub, monkeypatch):
    from huggingface_hub import HfApi as Api

    repo = unique("race")
    push_matrix(curves({"org/first": 0.5}), repo)
    real_info = Api.dataset_info
    calls = {"n": 0}

    def stale_info(self, *args, **kwargs):
        info = real_info(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:  # someone else pushes between our read and our commit
            monkeypatch.setattr(Api, "dataset_info", real_info)
            push_matrix(curves({"org/rival": 0.6}), repo)
            monkeypatch.setattr(Api, "dataset_info", stale_info)
        return info

    monkeypatch.setattr(Api, "dataset_info", stale_info)
    push_matrix(curves({"org/mine": 0.7}), repo)
    assert calls["n"] >= 2  # the stale parent was refused and the push merged again
    assert load_matrix(repo).models == ["org/first", "org/mine", "org/rival"]

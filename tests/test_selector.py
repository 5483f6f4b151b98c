"""RepoSelector end to end against the local Hub: listing, joining with the matrix, recall, selection, the card."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import torch
import transformers as tf
from huggingface_hub import HfApi

from hf_twophase.errors import SelectionError
from hf_twophase.hub.client import load_matrix, push_matrix
from hf_twophase.inputs.columns import DatasetError
from hf_twophase.inputs.packaged import minilm_path
from hf_twophase.records.matrix import PerformanceMatrix
from hf_twophase.selector import RepoSelector
from tests.coordinator_helpers import make_data, training_args

CARD = "---\npipeline_tag: {tag}\nlibrary_name: transformers\nlicense: mit\n---\n# {name}\n"
WARM = {"w0": (16, 0.90), "w1": (12, 0.89), "w2": (8, 0.88), "w3": (16, 0.50), "w4": (8, 0.49)}


def _save_bert(folder: Path, hidden: int, seed: int, tokenizer, *, pickle_only: bool = False) -> None:
    torch.manual_seed(seed)
    config = tf.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=2 * hidden, num_labels=2)
    model = tf.BertForSequenceClassification(config)
    if pickle_only:
        folder.mkdir(parents=True)
        config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    else:
        model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _cached_models(namespace: str) -> set[str]:
    hub_cache = Path(os.environ["HF_HOME"]) / "hub"
    prefix = f"models--{namespace}--"
    return {p.name[len(prefix):] for p in hub_cache.glob(f"{prefix}*")} if hub_cache.exists() else set()


@pytest.fixture(scope="module")
def repo(local_hub, tmp_path_factory):
    """A namespace on the local Hub: five warm models, one cold, gated, private, pickle-only and an image model."""
    ns = f"sel{uuid.uuid4().hex[:6]}"
    api = HfApi()
    tok = tf.AutoTokenizer.from_pretrained(minilm_path())
    root = tmp_path_factory.mktemp("repo")
    plan = {**{k: v[0] for k, v in WARM.items()}, "cold": 8, "gated": 8, "private": 8, "pickle": 8, "image": 8}
    for i, (name, hidden) in enumerate(plan.items()):
        folder = root / name
        _save_bert(folder, hidden, i, tok, pickle_only=name == "pickle")
        tag = "image-classification" if name == "image" else "text-classification"
        (folder / "README.md").write_text(CARD.format(tag=tag, name=name))
        repo_id = f"{ns}/{name}"
        api.create_repo(repo_id, private=name == "private")
        api.upload_folder(repo_id=repo_id, folder_path=str(folder))
        local_hub.storage.update_settings("models", repo_id, downloads=1000 - 10 * i)
    api.update_repo_settings(f"{ns}/gated", gated="auto")
    api.create_repo(f"{ns}/noweights")
    api.upload_file(path_or_fileobj=CARD.format(tag="text-classification", name="noweights").encode(),
                    path_in_repo="README.md", repo_id=f"{ns}/noweights")
    local_hub.storage.update_settings("models", f"{ns}/noweights", downloads=1)
    rows = []
    for name, (_, base) in WARM.items():
        for j, bench in enumerate(("b1", "b2", "b3", "b4")):
            final = base - 0.02 * j
            for step in (1, 2, 3, 4):
                rows.append({"model": f"{ns}/{name}", "dataset": bench, "step": step,
                             "val": final - 0.04 * (4 - step), "test": final if step == 4 else None, "cost": 1.0})
    push_matrix(PerformanceMatrix(rows), f"{ns}/matrix", task="text-classification")
    return ns


def test_from_hub_lists_joins_and_skips(repo):
    selector = RepoSelector.from_hub(task="text-classification", matrix=f"{repo}/matrix", author=repo)
    listed = [e.model for e in selector.entries]
    assert listed[:5] == [f"{repo}/w{i}" for i in range(5)]  # most downloaded first
    assert f"{repo}/image" not in listed  # another pipeline tag
    assert selector.warm == [f"{repo}/w{i}" for i in range(5)]
    assert selector.cold == [f"{repo}/cold"]
    skipped = selector.skipped
    assert "gated" in skipped[f"{repo}/gated"]
    assert "private" in skipped[f"{repo}/private"]
    assert "pickled" in skipped[f"{repo}/pickle"]
    assert "no weights" in skipped[f"{repo}/noweights"]
    assert _cached_models(repo) == set()  # listing downloads nothing
    limited = RepoSelector.from_hub(task="text-classification", matrix=f"{repo}/matrix", author=repo, limit=2)
    assert [e.model for e in limited.entries] == [f"{repo}/w0", f"{repo}/w1"]


def test_default_recall_ranks_the_matrix_by_prior_and_downloads_nothing(repo):
    selector = RepoSelector.from_hub(task="text-classification", matrix=f"{repo}/matrix", author=repo,
                                     cold_budget=0, proxy_config=_fast_proxy())
    outcome = selector.recall(make_data(96, 0), k=2)
    assert outcome.recalled == [f"{repo}/w0", f"{repo}/w1"]  # the best benchmark scores (0.90, 0.89)
    assert outcome.scored == {} and _cached_models(repo) == set()  # prior-only: no proxy pass, no download
    rows = {r["model"]: r for r in outcome.candidates()}
    assert rows[f"{repo}/w0"]["origin"] == "matrix" and rows[f"{repo}/w0"]["prior"] > rows[f"{repo}/w4"]["prior"]


def test_paper_recall_scores_representatives_only(repo):
    from hf_twophase.method.recall import RecallConfig

    data = make_data(96, 0)
    selector = RepoSelector.from_hub(task="text-classification", matrix=f"{repo}/matrix", author=repo,
                                     cold_budget=0, recall=RecallConfig(variant="paper"), proxy_config=_fast_proxy())
    outcome = selector.recall(data, k=2)
    assert len(outcome.recalled) == 2
    assert 0 < len(outcome.scored) < len(selector.warm)  # one representative per cluster, not every model
    assert {f"{repo}/{m}" for m in _cached_models(repo)} == set(outcome.scored)  # only those were downloaded
    assert set(outcome.recalled) <= set(selector.warm)


def test_cold_models_compete_by_default(repo):
    selector = RepoSelector.from_hub(task="text-classification", matrix=f"{repo}/matrix", author=repo,
                                     proxy_config=_fast_proxy())
    outcome = selector.recall(make_data(96, 0), k=3)
    assert outcome.cold_scored == [f"{repo}/cold"]
    assert f"{repo}/cold" in outcome.scores and "cold" in outcome.note
    warm_scored = [m for m in outcome.scored if m != f"{repo}/cold"]
    assert len(warm_scored) == 1  # the shortlist the cold score is read against: 10% of 5 models, at least one
    rows = {r["model"]: r for r in outcome.candidates()}
    cold = rows[f"{repo}/cold"]
    assert cold["origin"] == "cold" and cold["prior"] is None and cold["proxy"] is not None
    assert cold["proxy_seconds"] >= 0 and cold["recall_score"] == outcome.scores[f"{repo}/cold"]
    none = RepoSelector.from_hub(task="text-classification", matrix=f"{repo}/matrix", author=repo, cold_budget=0)
    assert f"{repo}/cold" not in none.recall(make_data(96, 0), k=3).scores


def test_ncti_ranks_the_cold_model_among_everything_this_recall_scored(repo):
    """NCTI scales its terms over the candidates: the cold model and the shortlist it is read against are scored
    first, then ranked together; what the report shows is that set's NCTI, not a lone model's term."""
    from hf_twophase.proxy.feature_scores import ncti_combine

    selector = RepoSelector.from_hub(task="text-classification", matrix=f"{repo}/matrix", author=repo,
                                     proxy="ncti", proxy_config=_fast_proxy())
    outcome = selector.recall(make_data(96, 0), k=3)
    assert outcome.cold_scored == [f"{repo}/cold"] and len(outcome.scored) == 2
    expected = ncti_combine({m: r.terms for m, r in outcome.scored.items()})
    assert {m: r.score for m, r in outcome.scored.items()} == pytest.approx(expected)
    rows = {r["model"]: r for r in outcome.candidates()}
    assert rows[f"{repo}/cold"]["proxy"] == pytest.approx(expected[f"{repo}/cold"])
    assert f"{repo}/cold" in outcome.scores


def test_a_vanished_representative_is_skipped_and_replaced(repo, local_hub):
    from hf_twophase.records.matrix import PerformanceMatrix

    matrix = load_matrix(f"{repo}/matrix")
    ns = f"{repo}v"  # a copy of two warm models under a namespace of their own, one of which then vanishes
    api = HfApi()
    for name in ("w0", "w1", "w2"):
        folder = Path(api.snapshot_download(f"{repo}/{name}"))
        api.create_repo(f"{ns}/{name}")
        api.upload_folder(repo_id=f"{ns}/{name}", folder_path=str(folder))
    renamed = matrix.records.copy()
    renamed["model"] = renamed["model"].str.replace(f"{repo}/", f"{ns}/", regex=False)
    from hf_twophase.method.phase1 import Phase1
    from hf_twophase.method.recall import RecallConfig

    paper = RecallConfig(variant="paper")
    selector = RepoSelector.from_models([f"{ns}/w0", f"{ns}/w1", f"{ns}/w2"], PerformanceMatrix(renamed),
                                        proxy_config=_fast_proxy(), recall=paper)
    first = Phase1.from_matrix(selector.matrix, candidates=selector.warm, recall=paper).to_score(1)
    assert len(first) == 1
    api.delete_repo(first[0])
    outcome = selector.recall(make_data(64, 0), k=1)
    assert first[0] in outcome.skipped and "could not load" in outcome.skipped[first[0]]
    assert outcome.recalled and outcome.recalled[0] != first[0]
    # the robust recall reads a cold score against the best prior; that model is gone, so the next one stands in
    assert first[0] == f"{ns}/w0"
    robust = RepoSelector.from_models([f"{ns}/w0", f"{ns}/w1", f"{ns}/w2", f"{repo}/cold"],
                                      PerformanceMatrix(renamed), proxy_config=_fast_proxy())
    outcome = robust.recall(make_data(64, 0), k=2)
    assert first[0] in outcome.skipped and first[0] not in outcome.scores
    assert f"{ns}/w1" in outcome.scored and f"{repo}/cold" in outcome.scores


def test_bad_input_fails_before_any_download(repo, tmp_path):
    with pytest.raises(SelectionError, match="unknown task"):
        RepoSelector.from_hub(task="token-classification", matrix=f"{repo}/matrix")
    with pytest.raises(SelectionError, match="covers none"):
        RepoSelector.from_models(["someone/unknown-a", "someone/unknown-b"], matrix=f"{repo}/matrix", cold_budget=0)
    assert RepoSelector.from_models(["someone/unknown-a"], matrix=f"{repo}/matrix").cold == ["someone/unknown-a"]
    selector = RepoSelector.from_hub(task="text-classification", matrix=f"{repo}/matrix", author=repo)
    before = _cached_models(repo)
    with pytest.raises(SelectionError, match="k=9"):
        selector.recall(make_data(32, 0), k=9)
    unlabeled = make_data(32, 0).remove_columns("label")
    with pytest.raises(DatasetError):
        selector.recall(unlabeled, k=2)
    assert _cached_models(repo) == before
    with pytest.raises(SelectionError, match="does not exist"):
        RepoSelector.from_models(["a"], matrix=str(tmp_path / "missing.parquet"))


def test_select_trains_the_recalled_and_pushes_the_winner(repo, tmp_path):
    train, val = make_data(128, 0), make_data(48, 1)
    selector = RepoSelector.from_hub(task="text-classification", matrix=f"{repo}/matrix", author=repo,
                                     proxy_config=_fast_proxy(), stage_steps=4)
    result = selector.select(train, val, training_args(tmp_path / "out", max_steps=12), k=3)
    report = result.report
    statuses = {c.name: c.status for c in report.candidates}
    recalled = report.extra["phase1"]["recalled"]
    assert len(recalled) == 3 and result.winner in recalled
    assert sum(s == "not-recalled" for s in statuses.values()) == 3  # five in the matrix and one cold were ranked
    assert statuses[f"{repo}/gated"] == "skipped"
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert f"| {repo}/cold | cold |" in markdown and f"| {repo}/w0 | matrix |" in markdown
    assert report.brute_force_steps == 3 * 12  # only the recalled candidates count
    assert report.steps_spent < report.brute_force_steps
    saved = (tmp_path / "out" / "report.json").read_text()
    assert "phase1" in saved and "not-recalled" in saved

    target = f"{repo}/selected"
    result.push_to_hub(target, task="text-classification", dataset_name="tiny sentiment")
    model = tf.AutoModelForSequenceClassification.from_pretrained(target)
    assert model.config.num_labels == 2
    from huggingface_hub import ModelCard

    card = ModelCard.load(target)
    assert card.data.pipeline_tag == "text-classification" and "hf-twophase" in card.data.tags
    assert result.winner in card.text and "How it was selected" in card.text and "not-recalled" in card.text
    assert "github.com/hf-twophase" not in card.text  # no link to a repository that is not ours to name
    pushed = HfApi().list_repo_files(target)
    assert "selection_report.json" in pushed
    assert not [f for f in pushed if f.endswith((".bin", ".pt", ".pth", ".pkl"))], pushed  # no pickle is published
    assert not (tmp_path / "out" / "winner" / "training_args.bin").exists()


def _fast_proxy():
    from hf_twophase.proxy.scorer import ProxyConfig

    return ProxyConfig(batch_size=32, max_samples=96, use_cache=False, progress=False)


def test_an_empty_hub_listing_says_what_was_listed_and_where(local_hub):
    with pytest.raises(SelectionError) as error:
        RepoSelector.from_hub(task="text-classification", search="no-repository-is-named-like-this")
    message = str(error.value)
    assert f"HF_ENDPOINT={local_hub.url}" in message and "pipeline_tag text-classification" in message
    assert "search='no-repository-is-named-like-this'" in message and "covers none" not in message


def test_target_aware_recall_reports_its_benchmark_weights(repo):
    """Last in the file: its proxy pass downloads every warm model, which the download checks above must not see."""
    from hf_twophase.method.recall import RecallConfig

    aware = RecallConfig(target_temperature=0.5, proxy_fraction=1.0)  # every warm model probes the target
    selector = RepoSelector.from_hub(task="text-classification", matrix=f"{repo}/matrix", author=repo,
                                     cold_budget=0, recall=aware, proxy_config=_fast_proxy())
    outcome = selector.recall(make_data(96, 0), k=2)
    assert set(outcome.scored) == set(selector.warm)
    assert set(outcome.benchmark_weights) == {"b1", "b2", "b3", "b4"}
    assert sum(outcome.benchmark_weights.values()) == pytest.approx(1.0)
    assert outcome.to_dict()["benchmark_weights"] == outcome.benchmark_weights
    assert "agreement" in outcome.note

"""LEEPScorer / LogMEScorer on tiny random models of every kind, and on bad input."""

import json

import datasets
import numpy as np
import pytest
import torch
import transformers as tf

from hf_twophase.inputs.packaged import minilm_path
from hf_twophase.proxy import (
    DatasetError,
    LEEPScorer,
    LogMEScorer,
    ModelLoadError,
    detect_columns,
    make_scorer,
    stratified_indices,
)

TINY_BERT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def tokenizer():
    return tf.AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def text_ds():
    rng = np.random.default_rng(0)
    words = ["good", "bad", "great", "awful", "fine", "dull", "movie", "plot", "actor"]
    texts = [" ".join(rng.choice(words, size=rng.integers(2, 9))) for _ in range(90)]
    features = datasets.Features({"sentence": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["a", "b", "c"])})
    return datasets.Dataset.from_dict({"sentence": texts, "hypothesis": texts[::-1],
                                       "label": [i % 3 for i in range(90)]}, features=features)


@pytest.fixture(scope="module")
def image_ds():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, size=(20, 20, 3), dtype=np.uint8) for _ in range(40)]
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=4)})
    return datasets.Dataset.from_dict({"img": images, "label": [i % 4 for i in range(40)]}, features=features)


def _save(model, path, tokenizer=None, processor=None, safe=True):
    if safe:
        model.save_pretrained(path)
    else:  # a pickle-only checkpoint, as older Hub repos have
        path.mkdir(parents=True, exist_ok=True)
        model.config.architectures = [type(model).__name__]
        model.config.save_pretrained(path)
        torch.save(model.state_dict(), path / "pytorch_model.bin")
    for extra in (tokenizer, processor):
        if extra is not None:
            extra.save_pretrained(path)
    return str(path)


def _scorer(cls=LEEPScorer, tmp_path=None, **kw):
    return cls(progress=False, batch_size=16, cache_dir=str(tmp_path) if tmp_path else None,
               use_cache=tmp_path is not None, **kw)


def test_text_classifier_single_and_pair(tmp_path, tokenizer, text_ds):
    torch.manual_seed(0)
    model = tf.BertForSequenceClassification(tf.BertConfig(vocab_size=tokenizer.vocab_size, num_labels=5,
                                                           **TINY_BERT))
    path = _save(model, tmp_path / "clf", tokenizer)
    single = _scorer().score(path, text_ds, text_column="sentence")
    pair = _scorer().score(path, text_ds)  # 'hypothesis' is detected as the pair column
    for r in (single, pair):
        assert r.method == "leep" and r.path == "classifier-head" and r.n_source_labels == 5
        assert r.score <= 0 and r.normalized == pytest.approx(np.exp(r.score)) and r.n_samples == 90
    assert single.score != pair.score
    assert detect_columns(text_ds).text_pair == "hypothesis"


def test_loaded_model_object_and_content_hash_cache(tmp_path, tokenizer, text_ds):
    torch.manual_seed(0)
    model = tf.BertForSequenceClassification(tf.BertConfig(vocab_size=tokenizer.vocab_size, num_labels=3,
                                                           **TINY_BERT))
    scorer = _scorer(tmp_path=tmp_path / "cache")
    first = scorer.score(model, text_ds, tokenizer=tokenizer, text_column="sentence")
    again = scorer.score(model, text_ds, tokenizer=tokenizer, text_column="sentence")
    assert not first.cached and again.cached and again.score == first.score
    with torch.no_grad():
        model.classifier.bias += 1.0  # other weights: another cache key
    assert not scorer.score(model, text_ds, tokenizer=tokenizer, text_column="sentence").cached
    other_seed = _scorer(tmp_path=tmp_path / "cache", seed=1, max_samples=30)
    assert not other_seed.score(model, text_ds, tokenizer=tokenizer, text_column="sentence").cached
    path = _save(model, tmp_path / "saved", tokenizer)
    assert not scorer.score(path, text_ds, text_column="sentence").cached
    assert scorer.score(path, text_ds, text_column="sentence").cached  # local folder: keyed by content hash
    entries = list((tmp_path / "cache").glob("*.json"))
    assert entries and "dataset" in json.loads(entries[0].read_text())["key"]


def test_masked_lm_head_gives_vocabulary_labels(tmp_path, tokenizer, text_ds):
    torch.manual_seed(0)
    model = tf.BertForMaskedLM(tf.BertConfig(vocab_size=tokenizer.vocab_size, **TINY_BERT))
    path = _save(model, tmp_path / "mlm", tokenizer)
    stored = _scorer().score(path, text_ds, text_column="sentence")
    assert stored.path == "masked-lm-head" and stored.n_source_labels == tokenizer.vocab_size
    two_pass = _scorer(store_limit_mb=0).score(path, text_ds, text_column="sentence")  # recompute, keep nothing
    assert two_pass.score == pytest.approx(stored.score, abs=1e-6)


def test_headless_encoder_falls_back_to_logme(tmp_path, tokenizer, text_ds):
    model = tf.BertModel(tf.BertConfig(vocab_size=tokenizer.vocab_size, **TINY_BERT))
    path = _save(model, tmp_path / "enc", tokenizer)
    result = _scorer().score(path, text_ds, text_column="sentence")
    assert result.method == "logme" and result.path == "features" and "D=32" in result.source_labels
    with pytest.raises(ModelLoadError, match="no classification or pre-training head"):
        _scorer(fallback=False).score(path, text_ds, text_column="sentence")
    assert LogMEScorer(progress=False, use_cache=False).score(path, text_ds, text_column="sentence").score == (
        pytest.approx(result.score))


def test_image_classifier_with_its_processor(tmp_path, image_ds):
    config = tf.ViTConfig(image_size=32, patch_size=8, num_labels=7, **TINY_BERT)
    processor = tf.ViTImageProcessor(size={"height": 32, "width": 32})
    path = _save(tf.ViTForImageClassification(config), tmp_path / "vit", processor=processor)
    result = _scorer().score(path, image_ds)
    assert result.path == "classifier-head" and result.n_source_labels == 7 and result.n_samples == 40
    logme_result = LogMEScorer(progress=False, use_cache=False).score(path, image_ds)
    assert logme_result.path == "features"
    for method in ("knn", "hscore", "gbc", "ncti"):  # the other feature scores share LogME's pass over the features
        other = make_scorer(method, progress=False, use_cache=False).score(path, image_ds)
        assert other.method == method and other.path == "features" and np.isfinite(other.score)
        assert (other.terms is None) == (method != "ncti")
    assert other.score == other.terms["ncc"]  # NCTI's own value needs the other candidates: see combine_proxy_scores
    from hf_twophase.proxy.feature_scores import FEATURE_SCORES

    pooled, labels = make_scorer("gbc", progress=False, use_cache=False).features(path, image_ds)
    assert pooled.shape == (40, 32) and FEATURE_SCORES["logme"](pooled, labels) == pytest.approx(logme_result.score)
    with pytest.raises(ValueError, match="expected one of leep, logme, knn, hscore, gbc, ncti"):
        make_scorer("parc")


def test_timm_model_with_its_own_transforms(tmp_path, image_ds):
    import timm

    model = timm.create_model("resnet10t", pretrained=False, num_classes=11)
    result = _scorer(max_samples=16).score(model, image_ds)
    assert result.path == "classifier-head" and result.n_source_labels == 11 and result.n_samples == 16
    folder = tmp_path / "timm"
    timm.models.save_for_hf(model, str(folder), safe_serialization=True)
    again = _scorer(max_samples=16).score(f"local-dir:{folder}", image_ds)
    assert again.score == pytest.approx(result.score, abs=1e-5)


def test_modality_mismatch(tmp_path, tokenizer, image_ds):
    model = tf.BertForSequenceClassification(tf.BertConfig(vocab_size=tokenizer.vocab_size, **TINY_BERT))
    with pytest.raises(ModelLoadError, match="takes text input but the dataset's input is image"):
        _scorer().score(model, image_ds, tokenizer=tokenizer)


def test_bad_datasets(text_ds):
    plain = datasets.Dataset.from_dict({"text": ["a", "b"], "score": [0.1, 0.2]})
    with pytest.raises(DatasetError, match="no label column"):
        detect_columns(plain)
    strings = datasets.Dataset.from_dict({"text": ["a", "b"], "label": ["pos", "neg"]})
    with pytest.raises(DatasetError, match="expected integer class ids"):
        detect_columns(strings)
    multi = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [[0, 1], [1]]})
    with pytest.raises(DatasetError, match="multi-label"):
        detect_columns(multi)
    with pytest.raises(DatasetError, match="empty"):
        detect_columns(text_ds.select([]))
    with pytest.raises(DatasetError, match="one split"):
        detect_columns(datasets.DatasetDict({"train": text_ds}))
    with pytest.raises(DatasetError, match="no text or image column"):
        detect_columns(datasets.Dataset.from_dict({"x": [1.0], "label": [0]}))


def test_unloadable_models(tmp_path, tokenizer, text_ds):
    with pytest.raises(ModelLoadError, match="could not load model"):
        _scorer().score(str(tmp_path / "missing"), text_ds)
    pickled = _save(tf.BertForSequenceClassification(tf.BertConfig(vocab_size=tokenizer.vocab_size, **TINY_BERT)),
                    tmp_path / "pickled", tokenizer, safe=False)
    with pytest.raises(ModelLoadError, match="allow_pickle"):
        _scorer().score(pickled, text_ds, text_column="sentence")
    assert _scorer(allow_pickle=True).score(pickled, text_ds, text_column="sentence").path == "classifier-head"
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "config.json").write_text(json.dumps({"model_type": "my_custom_arch",
                                                    "auto_map": {"AutoConfig": "configuration_x.XConfig"}}))
    with pytest.raises(ModelLoadError, match="trust_remote_code"):
        _scorer().score(str(custom), text_ds)


def test_scorer_config_is_not_mutated():
    from hf_twophase.proxy import ProxyConfig

    config = ProxyConfig(batch_size=8)
    scorer = LEEPScorer(config, max_samples=10)
    assert scorer.config.max_samples == 10 and config.max_samples == 2000 and scorer.config.batch_size == 8
    with pytest.raises(TypeError, match="bogus"):
        LEEPScorer(bogus=1)


def test_stratified_sample():
    labels = np.array([0] * 90 + [1] * 9 + [2])
    idx = stratified_indices(labels, 20, seed=0)
    counts = np.bincount(labels[idx], minlength=3)
    assert len(idx) == 20 and counts[2] == 1 and counts[0] >= 17
    assert np.array_equal(idx, stratified_indices(labels, 20, seed=0))
    assert not np.array_equal(idx, stratified_indices(labels, 20, seed=1))
    assert len(stratified_indices(labels, None)) == 100


def test_device_preprocessing_matches_the_checkpoints_own():
    import timm
    from PIL import Image

    from hf_twophase.inputs.columns import Columns
    from hf_twophase.proxy.models import encode_batch, image_prep, load_model, prepare_on_device

    rng = np.random.default_rng(0)
    images = [np.asarray(Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).resize((80, 60)))
              for _ in range(3)]
    columns = Columns(label="label", n_classes=2, image="image")
    vit = tf.ViTForImageClassification(tf.ViTConfig(image_size=32, patch_size=8, **TINY_BERT))
    for loaded in (load_model(timm.create_model("resnet10t")),
                   load_model(vit, image_processor=tf.ViTImageProcessor(size={"height": 32, "width": 32}))):
        cpu = encode_batch(loaded, {"image": images}, columns)["pixel_values"]
        raw = encode_batch(loaded, {"image": images}, columns, raw_images=True)["raw_images"]
        device = prepare_on_device(raw, image_prep(loaded))
        assert device.shape == cpu.shape
        assert (device - cpu).abs().mean() < 0.05 * cpu.abs().mean()  # resize kernels differ, nothing else


@pytest.mark.parametrize("damage", [{"score": "high"}, {"score": None}, {"n_samples": 1.5}, {"model": 7}, "drop",
                                    "not json", []])
def test_a_damaged_cache_entry_is_recomputed_never_trusted(tmp_path, tokenizer, text_ds, damage):
    torch.manual_seed(0)
    model = tf.BertForSequenceClassification(tf.BertConfig(vocab_size=tokenizer.vocab_size, **TINY_BERT))
    path = _save(model, tmp_path / "saved", tokenizer)
    scorer = _scorer(tmp_path=tmp_path / "cache")
    first = scorer.score(path, text_ds, text_column="sentence")
    (entry,) = (tmp_path / "cache").glob("*.json")
    data = json.loads(entry.read_text())
    if damage == "drop":
        del data["result"]["score"]
    elif isinstance(damage, dict):
        data["result"].update(damage)
    else:
        data = damage
    entry.write_text(data if isinstance(data, str) else json.dumps(data))
    again = scorer.score(path, text_ds, text_column="sentence")
    assert not again.cached and again.score == first.score
    assert scorer.score(path, text_ds, text_column="sentence").cached  # the recomputed entry replaced it


@pytest.mark.parametrize("damage", [{"vc": "x"}, {"ncc": float("inf")}, "drop-key", "extra-key", None])
def test_a_cached_ncti_entry_with_damaged_terms_is_recomputed(tmp_path, tokenizer, text_ds, damage):
    torch.manual_seed(0)
    model = tf.BertModel(tf.BertConfig(vocab_size=tokenizer.vocab_size, **TINY_BERT))
    path = _save(model, tmp_path / "saved", tokenizer)
    scorer = make_scorer("ncti", progress=False, max_samples=40, cache_dir=str(tmp_path / "cache"))
    first = scorer.score(path, text_ds, text_column="sentence")
    assert scorer.score(path, text_ds, text_column="sentence").cached
    (entry,) = (tmp_path / "cache").glob("*.json")
    data = json.loads(entry.read_text(), parse_constant=float)
    terms = data["result"]["terms"]
    if damage == "drop-key":
        del terms["vc"]
    elif damage == "extra-key":
        terms["nce"] = 1.0
    elif damage is None:
        data["result"]["terms"] = None
    else:
        terms.update(damage)
    entry.write_text(json.dumps(data))
    again = scorer.score(path, text_ds, text_column="sentence")
    assert not again.cached and again.terms == first.terms


def test_combined_proxy_scores_rank_set_scores_together_and_leave_the_rest():
    from hf_twophase.proxy.feature_scores import ncti_combine
    from hf_twophase.proxy.scorer import ProxyResult, combine_proxy_scores

    def result(model, method, score, terms=None):
        return ProxyResult(model=model, method=method, score=score, normalized=None, n_samples=10, path="features",
                           source_labels="none", n_source_labels=None, seconds=0.0, terms=terms)

    terms = {"a": {"seli": 1.0, "ncc": 0.5, "vc": 2.0}, "b": {"seli": 3.0, "ncc": 0.7, "vc": 1.0}}
    results = {m: result(m, "ncti", t["ncc"], t) for m, t in terms.items()}
    assert combine_proxy_scores(results) == ncti_combine(terms) == {"a": -1.0, "b": 2.0}
    assert combine_proxy_scores({"c": result("c", "logme", -0.3)}) == {"c": -0.3}


def test_a_timm_repository_with_only_pickled_weights_is_refused_unless_allowed(tmp_path, image_ds):
    """timm falls back to pytorch_model.bin by itself: without allow_pickle neither loader may unpickle it."""
    import timm
    from huggingface_hub import HfApi

    from hf_twophase.inputs.checkpoints import PickledWeightsError
    from hf_twophase.proxy.models import load_model
    from hf_twophase.trainer.candidates import Candidate, CandidateError, load_candidate

    model = timm.create_model("resnet10t", pretrained=False, num_classes=3)
    pickled, safe = tmp_path / "pickled", tmp_path / "safe"
    timm.models.save_for_hf(model, str(pickled), safe_serialization=False)
    timm.models.save_for_hf(model, str(safe), safe_serialization=True)
    assert {p.name for p in pickled.iterdir()} == {"config.json", "pytorch_model.bin"}
    api = HfApi()
    repos = {}
    for name, folder in (("pickled", pickled), ("safe", safe)):
        repos[name] = api.create_repo(f"tests/timm-{name}-{tmp_path.name[-12:]}", exist_ok=True).repo_id
        api.upload_folder(repo_id=repos[name], folder_path=str(folder))
    columns = detect_columns(image_ds)
    for spec in (f"hf-hub:{repos['pickled']}", f"local-dir:{pickled}", str(pickled)):
        with pytest.raises(PickledWeightsError, match="no model.safetensors"):
            load_model(spec)
        with pytest.raises(CandidateError, match="no model.safetensors"):
            load_candidate(Candidate.of(spec), columns)
    assert load_model(f"hf-hub:{repos['pickled']}", allow_pickle=True).kind == "timm"
    assert load_model(f"hf-hub:{repos['safe']}").kind == "timm"
    assert isinstance(load_candidate(Candidate.of(f"hf-hub:{repos['safe']}"), columns)[0], torch.nn.Module)

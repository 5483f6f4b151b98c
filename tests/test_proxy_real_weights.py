"""Real-weights checks: pre-trained checkpoints that ship in packages must out-score random ones."""

import pytest
import torch
import transformers as tf

from hf_twophase.inputs.packaged import digits_dataset, efficientnet_lite, minilm_path, rotten_tomatoes_snippets
from hf_twophase.proxy import LEEPScorer

pytestmark = pytest.mark.slow


def test_imagenet_efficientnet_lite0_beats_random_weights_on_digits():
    digits = digits_dataset()
    scorer = LEEPScorer(progress=False, use_cache=False, max_samples=100, batch_size=50)
    real = scorer.score(efficientnet_lite(0), digits)
    torch.manual_seed(0)
    random = scorer.score(efficientnet_lite(0, pretrained=False), digits)
    assert real.path == random.path == "classifier-head" and real.n_source_labels == 1000
    assert real.score > random.score + 0.02


def test_minilm_features_beat_random_weights_on_rotten_tomatoes():
    snippets = rotten_tomatoes_snippets()
    scorer = LEEPScorer(progress=False, use_cache=False, max_samples=800, batch_size=64)
    real = scorer.score(str(minilm_path()), snippets)  # no head: LogME on pooled features
    torch.manual_seed(0)
    random_model = tf.AutoModel.from_config(tf.AutoConfig.from_pretrained(minilm_path()))
    random = scorer.score(random_model, snippets, tokenizer=tf.AutoTokenizer.from_pretrained(minilm_path()))
    assert real.method == random.method == "logme" and real.path == "features"
    assert real.score > random.score + 0.02

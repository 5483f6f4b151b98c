"""Which columns of a user's `datasets.Dataset` hold the inputs and the labels, checked before any model runs.

The reference code hard-codes column names per dataset; here they are read from the dataset's
features (a `ClassLabel` is the label, `Image` the input of a vision model, one or two `string`
columns the text or text pair), or given explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hf_twophase.errors import HFTwoPhaseError

LABEL_NAMES = ("label", "labels", "target", "class", "y")
TEXT_NAMES = ("text", "sentence", "content", "review", "question", "premise", "sentence1", "text_a")
PAIR_NAMES = ("text_pair", "sentence2", "hypothesis", "question2", "text_b", "passage")
IMAGE_NAMES = ("image", "img", "pixel_values", "picture")


class DatasetError(HFTwoPhaseError, ValueError):
    """The dataset cannot be scored as given: the message says what was expected."""


@dataclass(frozen=True)
class Columns:
    """Where the inputs and the labels are, and how many target classes there are."""

    label: str
    n_classes: int
    text: str | None = None
    text_pair: str | None = None
    image: str | None = None
    class_names: tuple[str, ...] | None = None  # a ClassLabel's names, kept as the winner's id2label

    def label_maps(self) -> dict[str, dict]:
        """``id2label`` / ``label2id`` for a transformers config ({} without class names)."""
        if not self.class_names or len(self.class_names) != self.n_classes:
            return {}
        return {"id2label": dict(enumerate(self.class_names)),
                "label2id": {name: i for i, name in enumerate(self.class_names)}}

    @property
    def modality(self) -> str:
        return "image" if self.image else "text"


def _feature_type(feature) -> str:
    return type(feature).__name__


def _label_column(dataset, label_column: str | None) -> tuple[str, int, tuple[str, ...] | None]:
    """The label column (the one named, a ClassLabel, or a usual name), its class count and class names."""
    features = dataset.features
    names = list(features)
    label = label_column or next((c for c in names if _feature_type(features[c]) == "ClassLabel"), None)
    label = label or next((c for c in LABEL_NAMES if c in names), None)
    if label is None or label not in names:
        images = [c for c in names if _feature_type(features[c]) == "Image"]
        if images and len(names) == len(images):  # what an image folder with a single class folder gives
            raise DatasetError(f"the dataset has images ({', '.join(images)}) but no label; an image folder is "
                               "labelled by its class folders, and needs at least two (DIR/cat/1.png, DIR/dog/2.png)")
        raise DatasetError(f"no label column found among {names}; expected a ClassLabel column or one named "
                           f"{', '.join(LABEL_NAMES)} (or name it: label_column=... in Python, --label-column on "
                           "the command line)")
    feature = features[label]
    kind = _feature_type(feature)
    if kind in ("Sequence", "List", "LargeList") or isinstance(feature, list):
        raise DatasetError(f"label column '{label}' holds lists (multi-label); expected one integer class per "
                           "example")
    if kind == "ClassLabel":
        return label, int(feature.num_classes), tuple(str(n) for n in feature.names)
    dtype = getattr(feature, "dtype", "")
    if str(dtype).startswith("float"):  # pandas reads an integer column with empty cells as floats
        values = np.asarray(dataset[label], dtype=float)
        missing = np.flatnonzero(np.isnan(values))
        if missing.size:
            raise DatasetError(f"label column '{label}' has {missing.size} empty value(s); expected a class id "
                               "in every row")
    if not str(dtype).startswith(("int", "uint")):
        raise DatasetError(f"label column '{label}' has type {dtype or kind}; expected integer class ids "
                           "(cast it with dataset.class_encode_column('" + label + "'))")
    values = np.asarray(dataset[label])
    if values.min() < 0:
        raise DatasetError(f"label column '{label}' has negative class ids; expected 0..C-1")
    return label, int(values.max()) + 1, None


def encode_string_labels(train, validation, label_column: str | None = None):
    """(train, validation) with a label column of class names (``pos``/``neg``) turned into a ``ClassLabel``, the
    same in both splits; the names are kept and become the winner's ``id2label``. Other splits are returned as
    they are."""
    names = list(train.features)
    label = label_column or next((c for c in LABEL_NAMES if c in names), None)
    if label is None or label not in names or getattr(train.features[label], "dtype", None) not in (
            "string", "large_string"):
        return train, validation
    if None in set(train.unique(label)):
        raise DatasetError(f"label column '{label}' has empty values; expected a class name in every row")
    train = train.class_encode_column(label)
    feature = train.features[label]
    if validation is not None:
        unseen = sorted(set(map(str, validation.unique(label))) - set(feature.names))
        if unseen:
            raise DatasetError(f"label column '{label}': the validation split has class(es) "
                               f"{', '.join(map(repr, unseen[:5]))} that the training split never has; expected "
                               f"only {', '.join(map(repr, feature.names[:10]))}")
        validation = validation.cast_column(label, feature)
    return train, validation


def detect_columns(
    dataset,
    *,
    label_column: str | None = None,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    image_column: str | None = None,
    modality: str | None = None,
) -> Columns:
    """Find (or check) the label and input columns of a `datasets.Dataset` split."""
    import datasets

    if isinstance(dataset, datasets.DatasetDict):
        raise DatasetError(f"got a DatasetDict with splits {list(dataset)}; pass one split, e.g. dataset['train']")
    if not isinstance(dataset, datasets.Dataset):
        raise DatasetError(f"expected a datasets.Dataset, got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise DatasetError("the dataset split is empty; expected at least one labelled example")
    features = dataset.features
    names = list(features)

    label, n_classes, class_names = _label_column(dataset, label_column)

    if modality not in (None, "text", "image"):
        raise DatasetError(f"unknown modality {modality!r}; expected 'text' or 'image'")
    image = image_column or (None if modality == "text" else next(
        (c for c in names if _feature_type(features[c]) == "Image"), None) or next(
        (c for c in IMAGE_NAMES if c in names and c != label), None))
    if image is not None:
        if image not in names:
            raise DatasetError(f"image column '{image}' not in the dataset; columns: {names}")
        return Columns(label=label, n_classes=n_classes, image=image, class_names=class_names)
    if modality == "image":
        raise DatasetError(f"no image column found among {names}; expected an Image feature (or image_column=...)")

    strings = [c for c in names if c != label and getattr(features[c], "dtype", None) in ("string", "large_string")]
    text = text_column or next((c for c in TEXT_NAMES if c in strings), None) or (strings[0] if strings else None)
    if text is None or text not in names:
        raise DatasetError(f"no text or image column found among {names}; expected a string column such as "
                           f"{', '.join(TEXT_NAMES[:3])}, or an Image feature (or pass text_column=...)")
    pair = text_pair_column
    if pair is None and text_column is None:
        pair = next((c for c in PAIR_NAMES if c in strings and c != text), None)
    if pair is not None and pair not in names:
        raise DatasetError(f"text pair column '{pair}' not in the dataset; columns: {names}")
    return Columns(label=label, n_classes=n_classes, text=text, text_pair=pair, class_names=class_names)


def cap_examples(dataset, n: int | None, seed: int):
    """At most ``n`` examples of ``dataset``, drawn with ``seed`` (all of them, in order, when it has no more)."""
    return dataset if n is None or len(dataset) <= n else dataset.shuffle(seed=seed).select(range(n))


def stratified_indices(labels: np.ndarray, max_samples: int | None, seed: int = 0) -> np.ndarray:
    """At most `max_samples` indices with every class kept in proportion (at least one each), sorted.

    A fixed seed makes the sample, and so the cached score, reproducible.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if max_samples is None or max_samples >= n:
        return np.arange(n)
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts / n * max_samples).astype(int))
    while quota.sum() > max_samples:  # more classes than samples allowed: drop from the largest quotas
        quota[np.argmax(quota)] -= 1
    spare = max_samples - quota.sum()
    order = np.argsort(-(counts / n * max_samples - np.floor(counts / n * max_samples)), kind="stable")
    for i in order[:spare]:
        quota[i] = min(counts[i], quota[i] + 1)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=min(q, cnt), replace=False)
              for c, q, cnt in zip(classes, quota, counts, strict=True) if q > 0]
    return np.sort(np.concatenate(chosen))


def as_rgb(image) -> Any:
    """Any image value a dataset holds (PIL, array, undecoded bytes) as an RGB PIL image."""
    from PIL import Image

    if isinstance(image, dict) and "bytes" in image:  # undecoded datasets Image
        import io

        image = Image.open(io.BytesIO(image["bytes"]))
    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.dtype != np.uint8:
            array = np.clip(array * (255.0 if array.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        image = Image.fromarray(array)
    return image.convert("RGB")


def split_columns(train, evaluation, **given: str | None) -> Columns:
    """The columns of a training and a validation split, which must agree, with the class count of both: what a
    job detects once and passes down to phase 1 and to every candidate."""
    found = detect_columns(train, **given)
    other = detect_columns(evaluation, **given)
    if other.label != found.label:
        raise DatasetError(f"the training and validation splits disagree on the label column: '{found.label}' vs "
                           f"'{other.label}'")
    return replace(found, n_classes=max(found.n_classes, other.n_classes))

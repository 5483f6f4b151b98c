"""Candidates for fine-tuning: load each with a head sized to the user's labels, and encode the data its way.

Candidates may use different vocabularies and resolutions, so each gets its own tokenized (or
transformed) copy of the splits. timm models are wrapped so the Trainer can train them like any
transformers classifier.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.modeling_outputs import ImageClassifierOutput

from hf_twophase.atomic import read_json, write_json_atomic
from hf_twophase.errors import HFTwoPhaseError
from hf_twophase.inputs.checkpoints import is_timm_dir, load_hint, timm_source
from hf_twophase.inputs.columns import Columns, as_rgb


class CandidateError(HFTwoPhaseError, RuntimeError):
    """A candidate cannot be trained as given (the message says why); the selection goes on without it."""


@dataclass
class Candidate:
    """A model to select among: a Hub id or local path, a loaded module, or a `model_init` callable."""

    name: str
    model: Any = None
    tokenizer: Any = None
    image_processor: Any = None

    @classmethod
    def of(cls, spec: Any) -> Candidate:
        if isinstance(spec, Candidate):
            return spec
        if isinstance(spec, str | Path):
            return cls(name=str(spec), model=str(spec))
        raise CandidateError(f"cannot make a candidate of {type(spec).__name__}; expected a Hub id, a path or "
                             "hf_twophase.Candidate(name, model, tokenizer=..., image_processor=...)")


class TimmClassifier(torch.nn.Module):
    """A timm model with the `pixel_values, labels -> loss, logits` interface the Trainer expects."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> ImageClassifierOutput:
        logits = self.model(pixel_values)
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)


@dataclass
class Prepared:
    """A candidate ready for a Trainer: the module, its encoded splits and collator."""

    name: str
    model: torch.nn.Module
    train_dataset: Any
    eval_dataset: Any
    data_collator: Any
    processing: Any
    kind: str
    encode: Any = None  # encodes any further split (a test set) the same way
    image_size: int | None = None  # the resolution a timm model was trained at, when not its own


def _timm_for(spec: str, n_classes: int, *, allow_pickle: bool) -> torch.nn.Module:
    import timm

    return timm.create_model(timm_source(spec, allow_pickle=allow_pickle), pretrained=True, num_classes=n_classes)


def _timm_transform(module: torch.nn.Module, image_size: int | None):
    """The model's own evaluation transform, at ``image_size`` pixels when given (the whole image, no centre crop:
    small inputs such as 8x8 digits have no border to spare)."""
    import timm.data

    cfg = timm.data.resolve_data_config({}, model=module)
    if image_size:
        cfg.update(input_size=(3, image_size, image_size), crop_pct=1.0)
    return timm.data.create_transform(**cfg)


def load_candidate(candidate: Candidate, columns: Columns, *, trust_remote_code: bool = False,
                   allow_pickle: bool = False, image_size: int | None = None) -> tuple[torch.nn.Module, Any, str]:
    """(module, tokenizer or image transform, kind) with a head of `columns.n_classes` outputs. ``image_size`` sets
    the input resolution of timm models (other models keep their image processor's)."""
    import transformers as tf

    n = columns.n_classes
    spec = candidate.model
    try:
        if callable(spec) and not isinstance(spec, torch.nn.Module):
            spec = spec()
        if isinstance(spec, torch.nn.Module):
            return _wrap_loaded(candidate, spec, columns, image_size)
        spec = str(spec)
        if spec.startswith("packaged:"):
            return _load_packaged(candidate, spec.removeprefix("packaged:"), columns, image_size)
        if spec.startswith(("hf-hub:", "local-dir:", "timm/")) or is_timm_dir(Path(spec)):
            model = _timm_for(spec, n, allow_pickle=allow_pickle)
            return TimmClassifier(model), _timm_transform(model, image_size), "timm"
        common = {"trust_remote_code": trust_remote_code}
        weights = {**common, "use_safetensors": None if allow_pickle else True, "num_labels": n,
                   "ignore_mismatched_sizes": True, **columns.label_maps()}
        if columns.modality == "image":
            model = tf.AutoModelForImageClassification.from_pretrained(spec, **weights)
            proc = candidate.image_processor or tf.AutoImageProcessor.from_pretrained(spec, **common)
            return model, proc, "image-classifier"
        model = tf.AutoModelForSequenceClassification.from_pretrained(spec, **weights)
        tok = candidate.tokenizer or tf.AutoTokenizer.from_pretrained(spec, **common)
        return model, tok, "text-classifier"
    except CandidateError:
        raise
    except Exception as exc:  # noqa: BLE001 - the selection goes on; the report keeps the reason
        first = str(exc).splitlines()[0] if str(exc) else ""
        hint = load_hint(exc, allow_pickle=allow_pickle)
        raise CandidateError(f"{candidate.name}: could not load: {type(exc).__name__}: {first}{hint}") from exc


def _load_packaged(candidate: Candidate, name: str, columns: Columns, image_size: int | None = None):
    import transformers as tf

    from hf_twophase.inputs.packaged import packaged_model

    parts = packaged_model(name)
    if "model" in parts and isinstance(parts["model"], torch.nn.Module):
        return _wrap_loaded(candidate, parts["model"], columns, image_size)
    if columns.modality != "text":
        raise CandidateError(f"{candidate.name}: a text model cannot be trained on an image dataset")
    if "config" in parts:
        config = parts["config"]
        config.num_labels = columns.n_classes
        for key, value in columns.label_maps().items():
            setattr(config, key, value)
        model = tf.AutoModelForSequenceClassification.from_config(config)
    else:
        model = tf.AutoModelForSequenceClassification.from_pretrained(parts["model"], num_labels=columns.n_classes,
                                                                      use_safetensors=True, **columns.label_maps())
    return model, parts["tokenizer"], "text-classifier"


def head_mismatch(module: Any, n_classes: int, *, name: str = "candidate") -> str:
    """Why an already-built transformers model cannot be trained on ``n_classes`` labels ("" if it can): its head is
    fixed, and only a checkpoint that is loaded for the user (a Hub id or path) gets a head resized to the labels."""
    labels = getattr(getattr(module, "config", None), "num_labels", None)
    if labels is None or labels == n_classes:
        return ""
    return (f"candidate {name}: its head has {labels} outputs but the dataset has {n_classes} classes; pass a Hub id "
            "or path (the head is then resized) or a model_init")


def _wrap_loaded(candidate: Candidate, module: torch.nn.Module, columns: Columns, image_size: int | None = None):
    n = columns.n_classes
    if hasattr(module, "pretrained_cfg") and not hasattr(module, "config"):  # timm
        if columns.modality != "image":
            raise CandidateError(f"{candidate.name}: an image model cannot be trained on a text dataset")
        if module.num_classes != n:
            module.reset_classifier(n)
        return TimmClassifier(module), _timm_transform(module, image_size), "timm"
    if head_mismatch(module, n):
        raise CandidateError(head_mismatch(module, n, name=candidate.name))
    if columns.modality == "image":
        if candidate.image_processor is None:
            raise CandidateError(f"{candidate.name}: a loaded image model needs image_processor=...")
        return module, candidate.image_processor, "image-classifier"
    if candidate.tokenizer is None:
        raise CandidateError(f"{candidate.name}: a loaded text model needs tokenizer=...")
    return module, candidate.tokenizer, "text-classifier"


def _encoding_fingerprint(ds, candidate: Candidate, tokenizer, columns: Columns, max_length: int) -> str:
    key = [getattr(ds, "_fingerprint", None), candidate.name, getattr(tokenizer, "name_or_path", None),
           len(tokenizer) if hasattr(tokenizer, "__len__") else None, type(tokenizer).__name__, max_length,
           dataclasses.asdict(columns)]
    return hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:32]


def encode_texts(tokenizer, columns: Columns, batch: dict, max_length: int, **options: Any):
    """A batch of texts (or text pairs), as a candidate's tokenizer encodes them for training."""
    pair = batch[columns.text_pair] if columns.text_pair else None
    return tokenizer(batch[columns.text], pair, truncation=True, max_length=max_length, **options)


def image_pixels(processing, kind: str, images: Sequence[Any]) -> torch.Tensor:
    """A batch of images as a candidate sees them: its timm transform or its image processor."""
    images = [as_rgb(x) for x in images]
    if kind == "timm":
        return torch.stack([processing(x) for x in images])
    return processing(images=images, return_tensors="pt")["pixel_values"]


def prepare(candidate: Candidate, train, eval_, columns: Columns, *, max_length: int = 256,
            trust_remote_code: bool = False, allow_pickle: bool = False, image_size: int | None = None) -> Prepared:
    """Load a candidate and encode both splits for it."""
    from transformers import DataCollatorWithPadding, default_data_collator

    model, processing, kind = load_candidate(candidate, columns, trust_remote_code=trust_remote_code,
                                             allow_pickle=allow_pickle, image_size=image_size)
    if kind == "text-classifier":
        def tokenize(batch):
            out = encode_texts(processing, columns, batch, max_length)
            out["labels"] = batch[columns.label]
            return out

        def encode(ds):
            # named by what decides the encoding: left to `datasets`, the fingerprint pickles the tokenizer inside
            # `tokenize`, which takes longer than tokenizing a small split
            return ds.map(tokenize, batched=True, remove_columns=ds.column_names,
                          new_fingerprint=_encoding_fingerprint(ds, candidate, processing, columns, max_length))

        return Prepared(candidate.name, model, encode(train), encode(eval_), DataCollatorWithPadding(processing),
                        processing, kind, encode)

    def transform(batch):
        return {"pixel_values": image_pixels(processing, kind, batch[columns.image]),
                "labels": torch.as_tensor(np.asarray(batch[columns.label]))}

    return Prepared(candidate.name, model, train.with_transform(transform), eval_.with_transform(transform),
                    default_data_collator, processing, kind, lambda ds: ds.with_transform(transform),
                    image_size=image_size if kind == "timm" else None)


def save_trained(prepared: Prepared, trainer, folder: str | Path, *, main: bool = True,
                 label_names: Sequence[str] | None = None) -> Path:
    """Save a trained candidate so that it loads again as a candidate: timm models as a timm folder
    (``local-dir:``-loadable), transformers models with their tokenizer or image processor. Safetensors only."""
    folder = Path(folder)
    if prepared.kind == "timm":
        if main:
            import timm.models

            timm.models.save_for_hf(prepared.model.model, str(folder), safe_serialization=True)
            _loadable_by_transformers(folder, label_names, prepared.image_size)
    else:
        trainer.save_model(str(folder))  # every rank calls it; the Trainer writes on the main one
        if main:  # the Trainer pickles its arguments beside the weights: a winner carries no pickle
            (folder / "training_args.bin").unlink(missing_ok=True)
        already_saved = getattr(trainer, "processing_class", None) is prepared.processing  # save_model wrote it
        if main and not already_saved and hasattr(prepared.processing, "save_pretrained"):
            prepared.processing.save_pretrained(str(folder))
    if main:
        follow_umask(folder)
    return folder


def _loadable_by_transformers(folder: Path, label_names: Sequence[str] | None, image_size: int | None = None) -> None:
    """A timm folder that transformers' timm wrapper also loads, so the model card's
    ``pipeline("image-classification", model=...)`` and ``AutoModelForImageClassification`` work (with the image
    processor the wrapper builds from the same ``pretrained_cfg``, at the resolution it was trained at): the wrapper
    passes ``num_classes`` itself, and names the classes from ``label_names``."""
    config_file = folder / "config.json"
    config = read_json(config_file, what="the saved timm config")
    if image_size:
        config.setdefault("pretrained_cfg", {}).update(input_size=[3, image_size, image_size], crop_pct=1.0)
    config.get("model_args", {}).pop("num_classes", None)
    n = int(config.get("num_classes", 0))
    names = list(label_names) if label_names and len(label_names) == n else [f"LABEL_{i}" for i in range(n)]
    config["label_names"] = names
    write_json_atomic(config_file, config, indent=2)


def follow_umask(folder: Path) -> None:
    """Give the saved files the permissions the user's umask asks for (some writers create them 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~mask)


def accuracy(eval_pred) -> dict[str, float]:
    """Default metric: top-1 accuracy."""
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}

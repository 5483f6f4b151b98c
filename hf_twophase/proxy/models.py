"""Load any checkpoint a user may point at, and run it the way a transferability score needs.

Kinds, by what the checkpoint carries:
- `text-classifier` / `image-classifier`: a transformers classification head; its softmax is the
  source label distribution.
- `timm`: a timm model (from `hf-hub:`, `local-dir:`, or a loaded module); its head likewise.
- `masked-lm`: a text checkpoint with its pre-training head; the distribution at an appended mask
  token, over the vocabulary, is the source label distribution (not a random head).
- `text-encoder` / `image-encoder`: no usable head; only pooled features (scored with LogME).

Security: `trust_remote_code` is off unless the caller turns it on, and weights load from
safetensors unless the caller allows pickle files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_twophase.errors import HFTwoPhaseError
from hf_twophase.inputs.checkpoints import is_timm_dir, load_hint, timm_source
from hf_twophase.inputs.columns import as_rgb

HEAD_KINDS = ("text-classifier", "image-classifier", "timm", "masked-lm")


class ModelLoadError(HFTwoPhaseError, RuntimeError):
    """A checkpoint could not be loaded; the message says which and what was expected."""


@dataclass
class LoadedModel:
    model: torch.nn.Module
    kind: str
    name: str
    tokenizer: Any = None
    image_processor: Any = None
    timm_transform: Any = None
    revision: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def modality(self) -> str:
        return "text" if self.kind in ("text-classifier", "masked-lm", "text-encoder") else "image"

    @property
    def has_head(self) -> bool:
        return self.kind in HEAD_KINDS


def _timm_transform(model: torch.nn.Module):
    import timm.data

    config = timm.data.resolve_data_config({}, model=model)
    return timm.data.create_transform(**config)


def _load_timm(spec: str, *, allow_pickle: bool) -> torch.nn.Module:
    import timm

    return timm.create_model(timm_source(spec, allow_pickle=allow_pickle), pretrained=True)


def load_model(
    model: str | Path | torch.nn.Module,
    *,
    tokenizer: Any = None,
    image_processor: Any = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    prefer_head: bool = True,
) -> LoadedModel:
    """Load a Hub id, local folder or module, choosing the kind from what the checkpoint carries.

    `prefer_head=False` loads the bare encoder even when a head exists (for feature-based scores).
    """
    if isinstance(model, torch.nn.Module):
        return _wrap_module(model, tokenizer=tokenizer, image_processor=image_processor, prefer_head=prefer_head)
    spec = str(model)
    try:
        if spec.startswith("packaged:"):
            return _load_packaged(spec, prefer_head=prefer_head)
        if spec.startswith(("hf-hub:", "local-dir:", "timm/")) or is_timm_dir(Path(spec)):
            module = _load_timm(spec, allow_pickle=allow_pickle)
            return LoadedModel(module.eval(), "timm", spec, timm_transform=_timm_transform(module), revision=revision)
        return _load_transformers(spec, tokenizer=tokenizer, image_processor=image_processor, revision=revision,
                                  trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
                                  prefer_head=prefer_head)
    except HFTwoPhaseError:
        raise
    except Exception as exc:  # noqa: BLE001 - every loader failure becomes one clear error
        hint = load_hint(exc, allow_pickle=allow_pickle)
        raise ModelLoadError(
            f"could not load model '{spec}': {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            f"{hint}; expected a Hub model id, a local folder with config.json and weights, or a timm "
            "'hf-hub:'/'local-dir:' name"
        ) from exc


def _load_packaged(spec: str, *, prefer_head: bool) -> LoadedModel:
    """A ``packaged:NAME`` model (weights that ship in pip packages); random ones are seeded, so scores repeat."""
    import transformers as tf

    from hf_twophase.inputs.packaged import packaged_model

    parts = packaged_model(spec.removeprefix("packaged:"))
    if "config" in parts:
        torch.manual_seed(0)
        module = tf.AutoModel.from_config(parts["config"])
        return _wrap_module(module, tokenizer=parts.get("tokenizer"), image_processor=None, prefer_head=prefer_head)
    if isinstance(parts["model"], torch.nn.Module):
        loaded = _wrap_module(parts["model"], tokenizer=None, image_processor=None, prefer_head=prefer_head)
        loaded.name = spec
        return loaded
    return _load_transformers(str(parts["model"]), tokenizer=parts.get("tokenizer"), image_processor=None,
                              revision=None, trust_remote_code=False, allow_pickle=False, prefer_head=prefer_head)


def _load_transformers(spec, *, tokenizer, image_processor, revision, trust_remote_code, allow_pickle, prefer_head):
    import transformers as tf

    common = {"revision": revision, "trust_remote_code": trust_remote_code}
    config = tf.AutoConfig.from_pretrained(spec, **common)
    archs = list(getattr(config, "architectures", None) or [])
    weights = {**common, "use_safetensors": None if allow_pickle else True}
    is_vision = any(hasattr(config, a) for a in ("image_size", "num_channels")) and not hasattr(config, "vocab_size")

    def text_tokenizer():
        return tokenizer or tf.AutoTokenizer.from_pretrained(spec, **common)

    def vision_processor():
        return image_processor or tf.AutoImageProcessor.from_pretrained(spec, **common)

    if prefer_head and any(a.endswith("ForSequenceClassification") for a in archs):
        module = tf.AutoModelForSequenceClassification.from_pretrained(spec, **weights)
        return LoadedModel(module.eval(), "text-classifier", spec, tokenizer=text_tokenizer(), revision=revision)
    if prefer_head and any(a.endswith("ForImageClassification") for a in archs):
        module = tf.AutoModelForImageClassification.from_pretrained(spec, **weights)
        return LoadedModel(module.eval(), "image-classifier", spec, image_processor=vision_processor(),
                           revision=revision)
    if prefer_head and any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in archs):
        tok = text_tokenizer()
        if tok.mask_token_id is not None:
            module = tf.AutoModelForMaskedLM.from_pretrained(spec, **weights)
            return LoadedModel(module.eval(), "masked-lm", spec, tokenizer=tok, revision=revision)
    module = tf.AutoModel.from_pretrained(spec, **weights)
    if is_vision:
        return LoadedModel(module.eval(), "image-encoder", spec, image_processor=vision_processor(), revision=revision)
    return LoadedModel(module.eval(), "text-encoder", spec, tokenizer=text_tokenizer(), revision=revision)


def _wrap_module(model, *, tokenizer, image_processor, prefer_head) -> LoadedModel:
    name = getattr(getattr(model, "config", None), "name_or_path", None) or type(model).__name__
    cls = type(model).__name__
    if hasattr(model, "pretrained_cfg") and not hasattr(model, "config"):
        return LoadedModel(model.eval(), "timm", str(getattr(model, "pretrained_cfg", {}).get("architecture", name)),
                           timm_transform=_timm_transform(model))
    if prefer_head and cls.endswith("ForSequenceClassification"):
        kind = "text-classifier"
    elif prefer_head and cls.endswith("ForImageClassification"):
        kind = "image-classifier"
    elif prefer_head and cls.endswith(("ForMaskedLM", "ForPreTraining")):
        kind = "masked-lm"
    else:
        kind = "image-encoder" if image_processor is not None else "text-encoder"
    if kind in ("text-classifier", "masked-lm", "text-encoder") and tokenizer is None:
        raise ModelLoadError(f"a loaded {cls} needs its tokenizer: pass tokenizer=...")
    if kind in ("image-classifier", "image-encoder") and image_processor is None:
        raise ModelLoadError(f"a loaded {cls} needs its image processor: pass image_processor=...")
    return LoadedModel(model.eval(), kind, str(name), tokenizer=tokenizer, image_processor=image_processor)


def n_source_labels(loaded: LoadedModel) -> int:
    """Size of the source label space of a head kind."""
    if loaded.kind == "timm":
        return int(loaded.model.num_classes)
    if loaded.kind == "masked-lm":
        return int(loaded.model.get_output_embeddings().weight.shape[0])
    return int(loaded.model.config.num_labels)


# ------------------------------------------------------------------ batches


@dataclass(frozen=True)
class ImagePrep:
    """The checkpoint's eval preprocessing as tensor ops, to run on the accelerator instead of in PIL."""

    resize: tuple[int, int] | int | None  # exact (h, w), or the target of the shortest edge
    crop: tuple[int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1 / 255
    mode: str = "bilinear"


def _size_fields(size) -> dict:
    """A processor's size as a plain dict, whether it is an int, a dict or transformers' SizeDict."""
    if isinstance(size, int):
        return {"height": size, "width": size}
    if isinstance(size, dict):
        return dict(size)
    return {k: getattr(size, k, None) for k in ("height", "width", "shortest_edge", "longest_edge")}


def image_prep(loaded: LoadedModel) -> ImagePrep | None:
    """Read resize / crop / normalise settings from timm's data config or a transformers image processor.

    None when the processor does something else (then images are preprocessed on the CPU as usual).
    """
    if loaded.kind == "timm":
        import timm.data

        cfg = timm.data.resolve_data_config({}, model=loaded.model)
        h, w = cfg["input_size"][1:]
        if cfg.get("crop_mode", "center") != "center":
            return None
        short = int(math.floor(min(h, w) / cfg.get("crop_pct", 1.0)))
        return ImagePrep(resize=short, crop=(h, w), mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                         mode="bicubic" if cfg.get("interpolation") == "bicubic" else "bilinear")
    p = loaded.image_processor
    if p is None or not all(hasattr(p, a) for a in ("do_resize", "size", "image_mean", "image_std")):
        return None
    size = _size_fields(p.size)
    if not p.do_resize:
        resize = None
    elif size.get("height") and size.get("width"):
        resize = (int(size["height"]), int(size["width"]))
    elif size.get("shortest_edge") and not size.get("longest_edge"):
        resize = int(size["shortest_edge"])
    else:
        return None
    crop = None
    if getattr(p, "do_center_crop", False):
        cs = _size_fields(p.crop_size)
        if not (cs.get("height") and cs.get("width")):
            return None
        crop = (int(cs["height"]), int(cs["width"]))
    mean = p.image_mean if getattr(p, "do_normalize", True) else (0.0, 0.0, 0.0)
    std = p.image_std if getattr(p, "do_normalize", True) else (1.0, 1.0, 1.0)
    scale = float(p.rescale_factor) if getattr(p, "do_rescale", True) else 1.0
    resample = getattr(p, "resample", 2)
    return ImagePrep(resize=resize, crop=crop, mean=tuple(mean), std=tuple(std), scale=scale,
                     mode="bicubic" if int(resample) == 3 else "bilinear")


def prepare_on_device(images: torch.Tensor, prep: ImagePrep) -> torch.Tensor:
    """uint8 N x H x W x 3 (already on the device) -> normalised float N x 3 x h x w, as the CPU path does."""
    x = images.permute(0, 3, 1, 2).float()
    if prep.resize is not None:
        if isinstance(prep.resize, int):
            h, w = x.shape[-2:]
            ratio = prep.resize / min(h, w)
            target = (max(1, round(h * ratio)), max(1, round(w * ratio)))
        else:
            target = prep.resize
        if tuple(x.shape[-2:]) != tuple(target):
            x = torch.nn.functional.interpolate(x, size=target, mode=prep.mode, antialias=True, align_corners=False)
    if prep.crop is not None:
        h, w = x.shape[-2:]
        ch, cw = prep.crop
        top, left = max(0, (h - ch) // 2), max(0, (w - cw) // 2)
        x = x[..., top:top + ch, left:left + cw]
    mean = torch.tensor(prep.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(prep.std, device=x.device).view(1, -1, 1, 1)
    return (x * prep.scale - mean) / std


def encode_batch(
    loaded: LoadedModel, rows: dict, columns, *, max_length: int = 256, raw_images: bool = False
) -> dict[str, torch.Tensor]:
    """Turn a batch of dataset rows into model inputs: dynamic padding for text, the checkpoint's own
    preprocessing for images (or already-processed `pixel_values` as they are). With `raw_images`, a batch
    of same-size images is returned as uint8 `raw_images` for `prepare_on_device`."""
    if loaded.modality == "text":
        tok = loaded.tokenizer
        texts = [str(t) for t in rows[columns.text]]
        pairs = [str(t) for t in rows[columns.text_pair]] if columns.text_pair else None
        if loaded.kind == "masked-lm":  # ask the pre-training head for the word that follows the input
            if pairs is not None:
                pairs = [f"{p} {tok.mask_token}" for p in pairs]
            else:
                texts = [f"{t} {tok.mask_token}" for t in texts]
        limit = min(max_length, getattr(tok, "model_max_length", max_length) or max_length)
        enc = tok(texts, pairs, padding=True, truncation="only_first" if pairs else True, max_length=limit,
                  return_tensors="pt")
        if loaded.kind == "masked-lm":  # truncation may have cut the appended mask: put it back at the end
            ids = enc["input_ids"]
            has_mask = (ids == tok.mask_token_id).any(dim=1)
            if not bool(has_mask.all()):
                lengths = enc["attention_mask"].sum(dim=1)
                for i in torch.flatnonzero(~has_mask).tolist():
                    ids[i, max(int(lengths[i]) - 2, 1)] = tok.mask_token_id
        return dict(enc)
    images = rows[columns.image]
    first = images[0]
    if isinstance(first, torch.Tensor) or (isinstance(first, np.ndarray | list) and np.asarray(first).ndim == 3
                                           and np.asarray(first).shape[0] in (1, 3)):
        return {"pixel_values": torch.stack([torch.as_tensor(np.asarray(x), dtype=torch.float32) for x in images])}
    if raw_images:
        arrays = [np.asarray(x if not hasattr(x, "convert") else x.convert("RGB")) for x in images]
        if all(a.shape == arrays[0].shape for a in arrays) and arrays[0].ndim == 3 and arrays[0].shape[-1] == 3 \
                and arrays[0].dtype == np.uint8:
            return {"raw_images": torch.from_numpy(np.stack(arrays))}
    pil = [as_rgb(x) for x in images]
    if loaded.kind == "timm":
        return {"pixel_values": torch.stack([loaded.timm_transform(x) for x in pil])}
    return {"pixel_values": loaded.image_processor(images=pil, return_tensors="pt")["pixel_values"]}


def _pool_text(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def forward_log_probs(loaded: LoadedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Source log-probabilities (batch x |Z|), in float32, from the checkpoint's head."""
    if loaded.kind == "timm":
        logits = loaded.model(batch["pixel_values"])
    elif loaded.kind == "masked-lm":
        out = loaded.model(**batch)
        ids = batch["input_ids"]
        mask_id = loaded.tokenizer.mask_token_id
        positions = (ids == mask_id).int().argmax(dim=1)  # the first mask of each row (there is one)
        logits = out.logits[torch.arange(ids.shape[0], device=ids.device), positions]
    else:
        logits = loaded.model(**batch).logits
    return torch.log_softmax(logits.float(), dim=-1)


def forward_features(loaded: LoadedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Pooled penultimate features (batch x D): mean over tokens for text, the model's pooling for images."""
    model = loaded.model
    if loaded.kind == "timm":
        return model.forward_head(model.forward_features(batch["pixel_values"]), pre_logits=True).float()
    out = model(**batch, output_hidden_states=True)
    hidden = out.hidden_states[-1] if getattr(out, "hidden_states", None) is not None else out.last_hidden_state
    if loaded.modality == "text":
        return _pool_text(hidden, batch["attention_mask"]).float()
    pooled = getattr(out, "pooler_output", None)
    if pooled is not None and loaded.kind == "image-encoder":
        return pooled.flatten(1).float()
    return (hidden.mean(dim=(2, 3)) if hidden.dim() == 4 else hidden.mean(dim=1)).float()

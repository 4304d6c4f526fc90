"""Text and image encoders: one factory (`load_encoder`) over open_clip, and DINOv2 image features (`load_dino`).

Real weights load only when a factory is called, through open_clip's / transformers' ordinary Hugging Face cache
(set HF_HOME to move it; with no network the cache must already hold them, or pass a checkpoint path).
The embedding spaces our decoders condition on:

  Kandinsky 2.2 (prior + decoder)  ViT-bigG-14 / laion2b_s39b_b160k   1280-d image embeds  (KANDINSKY_2_2)
  Stable Diffusion 2.1 unCLIP      ViT-H-14   / laion2b_s32b_b79k    1024-d image embeds  (SD21_UNCLIP)

e.g. `load_encoder("ViT-bigG-14", "laion2b_s39b_b160k", device="cuda", dtype="float16")`; store rows then live in
space `open_clip:ViT-bigG-14:laion2b_s39b_b160k:image` (or `:text`). Text and image embeddings of one CLIP share
the joint space, but the store records which tower wrote a row, since an SAE trained on one need not fit the other.

Tiny models (`tiny`, `tiny-1024`, `tiny-1280`, `tiny-b32-text`; DINOv2 `tiny`) are random-weight models built
offline from data/tiny_encoders.json after seeding torch with the seed of the tag `seed<N>` (default `seed0`): the
same tag always gives the same weights and embeddings. They exercise the code; they know nothing about names.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

from namesae.devices import resolve_device
from namesae.errors import ConfigError, NamesaeError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipSpace:
    """An open_clip model and pretrained tag whose image embeddings a decoder expects."""

    model: str
    pretrained: str
    dim: int


KANDINSKY_2_2 = ClipSpace("ViT-bigG-14", "laion2b_s39b_b160k", 1280)
SD21_UNCLIP = ClipSpace("ViT-H-14", "laion2b_s32b_b79k", 1024)
DECODER_SPACES = MappingProxyType({"kandinsky-2-2": KANDINSKY_2_2, "sd21-unclip": SD21_UNCLIP})

DTYPES = MappingProxyType({"float32": "fp32", "fp32": "fp32", "float16": "fp16", "fp16": "fp16",
                           "bfloat16": "bf16", "bf16": "bf16"})
_SEED_TAG = re.compile(r"^seed(\d+)$")
ImageInput = Any  # a PIL.Image.Image or a path to an image file


class EncoderError(NamesaeError):
    """An encoder cannot be built or loaded, or was handed input it cannot encode."""


class TextEncoder(Protocol):
    """What the rest of namesae needs from a text encoder (real CLIP, tiny CLIP or a synthetic toy)."""

    dim: int
    normalized: bool

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:  # [n, dim] float32
        ...

    def space(self, kind: str) -> str:
        ...


class ImageEncoder(Protocol):
    """What the rest of namesae needs from an image encoder."""

    dim: int
    normalized: bool

    def encode_images(self, images: Sequence[ImageInput]) -> np.ndarray:  # [n, dim] float32
        ...

    def space(self, kind: str) -> str:
        ...


# ---- shared helpers ----------------------------------------------------------------------------------------
def tiny_configs() -> dict[str, dict[str, Any]]:
    """The shipped tiny model configs: {"open_clip": {name: spec}, "dinov2": {name: spec}} (a fresh copy)."""
    text = resources.files("namesae").joinpath("data", "tiny_encoders.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return {"open_clip": data["open_clip"], "dinov2": data["dinov2"]}


def _seed_of(tag: str | None, model: str) -> int:
    if tag is None:
        return 0
    match = _SEED_TAG.match(tag)
    if not match:
        raise ConfigError(f"pretrained {tag!r} for tiny model {model!r} must be 'seed<N>', e.g. 'seed0'")
    return int(match.group(1))


def _precision(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is unknown; use float32, float16 or bfloat16")
    return DTYPES[dtype]


def _batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def open_images(images: Sequence[ImageInput]) -> list[Any]:
    """PIL RGB images from PIL images or paths; an unreadable path raises EncoderError naming it."""
    from PIL import Image, UnidentifiedImageError

    out = []
    for item in images:
        if isinstance(item, (str, Path)):
            try:
                with Image.open(item) as im:
                    out.append(im.convert("RGB"))
            except FileNotFoundError:
                raise EncoderError(f"{item}: image file not found") from None
            except (UnidentifiedImageError, OSError) as err:
                raise EncoderError(f"{item}: not a readable image ({err}); remove or replace it") from None
        else:
            out.append(item.convert("RGB"))
    return out


def _finish(x: Any, normalize: bool) -> np.ndarray:
    """Float32 numpy rows, L2-normalised in float32 when asked."""
    import torch

    x = x.float()
    if normalize:
        x = torch.nn.functional.normalize(x, dim=-1)
    return x.cpu().numpy().astype(np.float32, copy=False)


# ---- open_clip ---------------------------------------------------------------------------------------------
def _trimmable(model: Any) -> bool:
    """Whether padding can be cut from this model's text input without changing its output: an open_clip CLIP
    text tower with a causal mask (positions never attend to later ones) that pools at the end-of-text token."""
    import open_clip
    import torch

    mask = getattr(model, "attn_mask", None)
    if type(model) is not open_clip.model.CLIP or mask is None or model.text_pool_type not in ("argmax", "eos"):
        return False
    if mask.dim() != 2 or mask.shape[0] != mask.shape[1] or mask.shape[0] < 2:
        return False
    strictly_upper = torch.ones_like(mask, dtype=torch.bool).triu(1)
    return bool(torch.isneginf(mask[strictly_upper]).all() and (mask[~strictly_upper] == 0).all())


def encode_text_trimmed(model: Any, tokens: Any, trimmable: bool | None = None) -> Any:
    """open_clip `encode_text` of a batch of token ids, run only up to the longest prompt's end instead of the
    full context (padding after the end-of-text token cannot reach it through a causal mask); the same output.
    `trimmable`: `_trimmable(model)` when the caller has it already (checked here otherwise)."""
    import torch
    from open_clip.transformer import text_global_pool

    if not (_trimmable(model) if trimmable is None else trimmable):
        return model.encode_text(tokens)
    nonzero = (tokens != 0).int()
    length = int((nonzero * torch.arange(1, tokens.shape[1] + 1, device=tokens.device)).amax()) or 1
    text = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(text).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, text, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else \
            x @ model.text_projection
    return x


def _batching(normalize: bool, batch_size: int) -> tuple[bool, int]:
    """An encoder's (normalized, batch_size) settings, checked."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    return bool(normalize), int(batch_size)


class ClipEncoder:
    """An open_clip model with its tokenizer and image preprocessing, encoding in batches to float32 numpy."""

    def __init__(self, model: Any, tokenizer: Any, preprocess: Any, model_name: str, space_tag: str,
                 device: str, precision: str, normalize: bool = True, batch_size: int = 256) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.model_name = model_name
        self.space_tag = space_tag
        self.device = device
        self.precision = precision
        self.normalized, self.batch_size = _batching(normalize, batch_size)
        self._trim = _trimmable(model)  # checked once: encode_text is the hot path
        dim = getattr(getattr(model, "visual", None), "output_dim", None)
        self.dim = int(dim) if dim else 0
        if not self.dim:  # towers that do not say (timm, hf): measure once
            self.dim = int(self.encode_text([""]).shape[1])

    def __repr__(self) -> str:
        return f"ClipEncoder({self.space_tag!r}, dim={self.dim}, device={self.device!r}, {self.precision})"

    def space(self, kind: str) -> str:
        """The store space of this encoder's rows of one kind, e.g. 'open_clip:ViT-H-14:laion2b_s32b_b79k:image'."""
        if kind not in ("text", "image"):
            raise ValueError(f"kind must be 'text' or 'image', got {kind!r}")
        return f"open_clip:{self.space_tag}:{kind}"

    @property
    def attrs(self) -> dict[str, Any]:
        """How the embeddings were made, for the store's root attributes."""
        return {"encoder": "open_clip", "encoder_model": self.model_name, "encoder_space_tag": self.space_tag,
                "encoder_precision": self.precision}

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of texts, float32 [n, dim] (L2-normalised if the encoder normalises)."""
        import torch

        texts = list(texts)
        parts = [np.zeros((0, self.dim), dtype=np.float32)]
        with torch.inference_mode():
            for part in _batches(len(texts), self.batch_size):
                tokens = self.tokenizer(texts[part]).to(self.device)
                parts.append(_finish(encode_text_trimmed(self.model, tokens, self._trim), self.normalized))
        return np.concatenate(parts[1:]) if len(parts) > 1 else parts[0]

    def encode_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Embeddings of images (PIL images or paths), float32 [n, dim]."""
        import open_clip
        import torch

        images = list(images)
        out = np.empty((len(images), self.dim), dtype=np.float32)
        input_dtype = open_clip.get_input_dtype(self.precision)
        with torch.inference_mode():
            for part in _batches(len(images), self.batch_size):
                pixels = torch.stack([self.preprocess(im) for im in open_images(images[part])])
                pixels = pixels.to(self.device, dtype=input_dtype)
                out[part] = _finish(self.model.encode_image(pixels), self.normalized)
        return out


def _build_tiny_clip(name: str, spec: dict[str, Any], seed: int, device: str, precision: str) -> tuple:
    """A random-weight open_clip CLIP from a config, seeded; returns (model, tokenizer, preprocess)."""
    import open_clip
    import torch

    cfg = copy.deepcopy(spec["model_cfg"])
    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = open_clip.CLIP(**cfg, cast_dtype=open_clip.get_cast_dtype(precision))
    model.to(device)
    if precision in ("fp16", "bf16"):
        open_clip.convert_weights_to_lp(model, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)
    tokenizer = open_clip.SimpleTokenizer(context_length=cfg["text_cfg"]["context_length"])
    preprocess = open_clip.image_transform(cfg["vision_cfg"]["image_size"], is_train=False)
    return model.eval(), tokenizer, preprocess


def _default_space_tag(model: str, pretrained: str | None) -> str:
    if model.startswith("hf-hub:"):
        return f"hf-hub/{model.removeprefix('hf-hub:')}:hub"
    if model.startswith("local-dir:"):
        return f"{Path(model.removeprefix('local-dir:')).name}:local"
    if pretrained and Path(pretrained).is_file():
        return f"{model}:{Path(pretrained).name}"
    return f"{model}:{pretrained or 'random'}"


def _build_real_clip(model: str, pretrained: str | None, device: str, precision: str,
                     cache_dir: str | None) -> tuple:
    """An open_clip model with real weights (tag, checkpoint file, hf-hub: or local-dir:)."""
    import open_clip

    if model.startswith("local-dir:"):
        folder = Path(model.removeprefix("local-dir:"))
        if not (folder / "open_clip_config.json").is_file():
            raise EncoderError(f"{folder}: no open_clip_config.json; a local-dir model needs the config and weights")
    elif not model.startswith("hf-hub:"):
        if open_clip.get_model_config(model) is None:
            raise ConfigError(f"model {model!r} is unknown to open_clip; use one of open_clip.list_models() "
                              f"(e.g. ViT-H-14, ViT-bigG-14), a tiny model {sorted(tiny_configs()['open_clip'])}, "
                              f"hf-hub:ORG/REPO or local-dir:PATH")
        all_tags = open_clip.list_pretrained_tags_by_model(model)
        tags = all_tags[:6] + ["..."] if len(all_tags) > 6 else all_tags
        if pretrained is None:
            raise ConfigError(f"model {model!r} needs --pretrained: a tag {tags} or a checkpoint file")
        if pretrained not in all_tags and not Path(pretrained).is_file():
            raise ConfigError(f"pretrained {pretrained!r} is neither a tag of {model} {tags} nor an existing "
                              f"checkpoint file")
    try:
        clip, _, preprocess = open_clip.create_model_and_transforms(
            model, pretrained=pretrained, precision=precision, device=device, cache_dir=cache_dir)
        tokenizer = open_clip.get_tokenizer(model, cache_dir=cache_dir)
    except (RuntimeError, OSError, ValueError) as err:
        raise EncoderError(
            f"could not load open_clip {model} / {pretrained}: {str(err).splitlines()[0][:300]}; without network, "
            f"the Hugging Face cache (HF_HOME) must already hold the weights, or pass a checkpoint file"
        ) from None
    return clip.eval(), tokenizer, preprocess


def load_encoder(
    model: str,
    pretrained: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    normalize: bool = True,
    batch_size: int = 256,
    space_tag: str | None = None,
    cache_dir: str | None = None,
) -> ClipEncoder:
    """An open_clip text+image encoder: a tiny offline model, a built-in model with a tag or file, or hf-hub:/local-dir:."""
    precision = _precision(dtype)
    device = resolve_device(device)
    tiny = tiny_configs()["open_clip"]
    if model in tiny:
        seed = _seed_of(pretrained, model)
        parts = _build_tiny_clip(model, tiny[model], seed, device, precision)
        tag = space_tag or f"{model}:seed{seed}"
    else:
        parts = _build_real_clip(model, pretrained, device, precision, cache_dir)
        tag = space_tag or _default_space_tag(model, pretrained)
    return ClipEncoder(*parts, model_name=model, space_tag=tag, device=device, precision=precision,
                       normalize=normalize, batch_size=batch_size)


# ---- DINOv2 ------------------------------------------------------------------------------------------------
POOLINGS = ("cls", "mean")


class DinoEncoder:
    """A DINOv2 vision transformer (transformers) giving one image embedding: CLS token or mean of patch tokens."""

    def __init__(self, model: Any, processor: Any, model_id: str, device: str, pooling: str = "cls",
                 normalize: bool = True, batch_size: int = 64) -> None:
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling {pooling!r} is unknown; use one of {POOLINGS}")
        self.normalized, self.batch_size = _batching(normalize, batch_size)
        self.model = model
        self.processor = processor
        self.model_id = model_id
        self.device = device
        self.pooling = pooling
        self.dim = int(model.config.hidden_size)

    def __repr__(self) -> str:
        return f"DinoEncoder({self.model_id!r}, dim={self.dim}, pooling={self.pooling!r})"

    def space(self, kind: str = "image") -> str:
        """The store space, e.g. 'dinov2:facebook/dinov2-base:image' ('...-meanpool:image' for mean pooling)."""
        if kind != "image":
            raise ValueError("DINOv2 encodes images only")
        suffix = "" if self.pooling == "cls" else "-meanpool"
        return f"dinov2:{self.model_id}{suffix}:image"

    @property
    def attrs(self) -> dict[str, Any]:
        """How the embeddings were made, for the store's root attributes."""
        return {"encoder": "dinov2", "encoder_model": self.model_id, "encoder_pooling": self.pooling}

    def encode_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Embeddings of images (PIL images or paths), float32 [n, dim]."""
        import torch

        images = list(images)
        out = np.empty((len(images), self.dim), dtype=np.float32)
        dtype = next(self.model.parameters()).dtype
        skip = 1 + int(getattr(self.model.config, "num_register_tokens", 0) or 0)  # CLS (+ registers)
        with torch.inference_mode():
            for part in _batches(len(images), self.batch_size):
                pixels = self.processor(images=open_images(images[part]), return_tensors="pt")["pixel_values"]
                hidden = self.model(pixel_values=pixels.to(self.device, dtype=dtype)).last_hidden_state
                pooled = hidden[:, 0] if self.pooling == "cls" else hidden[:, skip:].mean(dim=1)
                out[part] = _finish(pooled, self.normalized)
        return out


def load_dino(
    model_id: str,
    device: str = "cpu",
    dtype: str = "float32",
    pooling: str = "cls",
    normalize: bool = True,
    batch_size: int = 64,
    seed: int = 0,
) -> DinoEncoder:
    """A DINOv2 image encoder from a hub id or local folder (e.g. facebook/dinov2-base), or `tiny` (random, seeded)."""
    import torch
    from transformers import AutoImageProcessor, AutoModel, BitImageProcessor, Dinov2Config, Dinov2Model

    device = resolve_device(device)
    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[_precision(dtype)]
    tiny = tiny_configs()["dinov2"]
    if model_id in tiny:
        spec = tiny[model_id]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Dinov2Model(Dinov2Config(**spec["config"]))
        size = spec["image_size"]
        processor = BitImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
        model_id = f"{model_id}-seed{seed}"
    else:
        try:
            processor = AutoImageProcessor.from_pretrained(model_id)
            model = AutoModel.from_pretrained(model_id)
        except (OSError, ValueError) as err:
            raise EncoderError(
                f"could not load DINOv2 {model_id!r}: {str(err).splitlines()[0][:300]}; without network, the "
                f"Hugging Face cache must already hold it, or pass a local folder"
            ) from None
    model = model.to(device=device, dtype=torch_dtype).eval()
    return DinoEncoder(model, processor, model_id, device, pooling, normalize, batch_size)

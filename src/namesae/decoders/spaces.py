"""What a decoder is and expects, without loading it: pipeline kinds, settings, the embedding space, a folder's
namesae_decoder.json, and the record of a decoder in image metadata."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from namesae.errors import ConfigError, NamesaeError, SpaceMismatchError

log = logging.getLogger(__name__)


PIPELINES = ("kandinsky22", "sd21-unclip")
META_FILE = "namesae_decoder.json"
# Hub ids of the real models, and the open_clip model whose image embeddings each was trained on (encoders.py).
HUB_MODELS = {"kandinsky22": ("kandinsky-community/kandinsky-2-2-decoder", "kandinsky-community/kandinsky-2-2-prior"),
              "sd21-unclip": ("stabilityai/stable-diffusion-2-1-unclip", None)}
_ENCODER_KEYS = {"kandinsky22": "kandinsky-2-2", "sd21-unclip": "sd21-unclip"}


class DecoderError(NamesaeError):
    """A decoder cannot be loaded, or was asked for something it cannot do."""


@dataclass(frozen=True)
class DrawSettings:
    """Image size and denoising of a decoder run, shared by `DecodeSettings` and `namesae.generate.GenerateConfig`;
    None means the pipeline's default (from its folder's metadata, else the kind's)."""

    height: int | None = None
    """Image height in pixels (Kandinsky 2.2: 512 or more; SD 2.1 unCLIP: 768)."""
    width: int | None = None
    """Image width in pixels."""
    steps: int | None = None
    """Denoising steps of the decoder."""
    guidance_scale: float | None = None
    """Classifier-free guidance of the decoder (Kandinsky: against the negative image embedding)."""
    prior_steps: int | None = None
    """Kandinsky prior: denoising steps of text -> image embedding."""
    prior_guidance_scale: float | None = None
    """Kandinsky prior: classifier-free guidance."""


@dataclass(frozen=True)
class DecodeSettings(DrawSettings):
    """How images are drawn; None means the pipeline's default (from its folder's metadata, else the kind's)."""

    noise_level: int | None = None
    """SD 2.1 unCLIP: noise added to the image embedding (0 = follow it closely)."""
    embed_norm: float | None = None
    """Rescale each conditioning embedding to this L2 norm before decoding (e.g. unit-norm store rows -> the
    decoder's native scale); None = as given."""
    negative: str | None = None
    """Kandinsky negative image embedding: 'prior' (the prior's zero-image embedding, as the prior pipeline does)
    or 'zeros'; default 'prior' when a prior is loaded, else 'zeros'."""

    def __post_init__(self) -> None:
        for key in ("height", "width", "steps", "prior_steps"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        if self.noise_level is not None and self.noise_level < 0:
            raise ConfigError(f"noise_level must be >= 0, got {self.noise_level}")
        if self.embed_norm is not None and not self.embed_norm > 0:
            raise ConfigError(f"embed_norm must be > 0, got {self.embed_norm}")
        if self.negative not in (None, "prior", "zeros"):
            raise ConfigError(f"negative must be 'prior' or 'zeros', got {self.negative!r}")

    def over(self, defaults: Mapping[str, Any]) -> DecodeSettings:
        """These settings with every None filled from `defaults`."""
        return replace(self, **{k: v for k, v in defaults.items()
                                if k in self.__dataclass_fields__ and getattr(self, k) is None})


KIND_DEFAULTS = {
    "kandinsky22": {"height": 512, "width": 512, "steps": 50, "guidance_scale": 4.0, "prior_steps": 25,
                    "prior_guidance_scale": 4.0},
    "sd21-unclip": {"height": 768, "width": 768, "steps": 20, "guidance_scale": 10.0, "noise_level": 0},
}


@dataclass(frozen=True)
class DecoderInfo:
    """What a loaded decoder is: kind, where it came from, the embedding space it expects."""

    kind: str
    model: str
    prior: str | None
    space: str
    dim: int
    encoder: dict[str, Any] | None  # {"model", "pretrained"} of the open_clip image encoder of this space, if any
    defaults: dict[str, Any] = field(default_factory=dict)


def check_decoder_space(info: DecoderInfo, space: str | None, dim: int, what: str) -> None:
    """Raise SpaceMismatchError unless `what` (an SAE, a store) lives in the decoder's space and dim; a space of
    None (a foreign SAELens SAE) is checked by dim only."""
    if dim != info.dim:
        raise SpaceMismatchError(f"{what} has dim {dim} but the {info.kind} decoder {info.model} takes {info.dim}-d "
                                 f"image embeddings ({info.space}); use an SAE/store of that space")
    if space is None:
        log.warning("%s records no embedding space; assuming the decoder's %s (dims match)", what, info.space)
        return
    if space != info.space:
        hint = " (a text-space SAE cannot condition the decoder; train one on image rows)" \
            if space.endswith(":text") else ""
        raise SpaceMismatchError(f"{what} lives in space '{space}' but the {info.kind} decoder {info.model} expects "
                                 f"'{info.space}'{hint}; pass the matching SAE, or --decoder-space if the decoder "
                                 f"really was trained on that space")


def encoder_for_space(space: str) -> dict[str, Any] | None:
    """The open_clip (model, pretrained) that writes rows of `space` ('open_clip:MODEL:TAG:image'), if any."""
    parts = space.split(":")
    if len(parts) == 4 and parts[0] == "open_clip":
        return {"model": parts[1], "pretrained": parts[2]}
    return None


def read_meta(folder: str | Path) -> dict[str, Any] | None:
    """The namesae_decoder.json of a pipeline folder, or None."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DecoderError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    for key in ("kind", "space", "dim"):
        if key not in meta:
            raise DecoderError(f"{path}: missing field '{key}'")
    return meta


def describe_decoder(kind: str, model: str | None = None, prior: str | None = None,
                     space: str | None = None) -> DecoderInfo:
    """What a decoder expects, from its folder's namesae_decoder.json or the kind's known space, without loading
    weights (so a space mismatch fails before minutes of loading). `dim` is the expected one; `load_decoder`
    checks it against the weights."""
    if kind not in PIPELINES:
        raise ConfigError(f"pipeline {kind!r} is unknown; use one of {PIPELINES}")
    from namesae.encoders import DECODER_SPACES

    model = model or HUB_MODELS[kind][0]
    meta = read_meta(model) if Path(model).is_dir() else None
    if meta is not None and meta["kind"] != kind:
        raise DecoderError(f"{model}: holds a {meta['kind']} pipeline, not {kind}; pass --pipeline {meta['kind']}")
    if prior is None and kind == "kandinsky22":
        prior = str(Path(model) / meta["prior"]) if meta and meta.get("prior") else \
            (None if meta else HUB_MODELS[kind][1])
    if meta is not None:
        default_space, dim = meta["space"], int(meta["dim"])
        encoder, defaults = meta.get("encoder"), dict(meta.get("defaults", {}))
    else:
        clip = DECODER_SPACES[_ENCODER_KEYS[kind]]
        default_space, dim = f"open_clip:{clip.model}:{clip.pretrained}:image", clip.dim
        encoder, defaults = {"model": clip.model, "pretrained": clip.pretrained}, {}
    if space is not None and space != default_space:
        default_space, encoder = space, encoder_for_space(space)
    return DecoderInfo(kind, str(model), prior if kind == "kandinsky22" else None, default_space, dim, encoder,
                       defaults)


def info_dict(info: DecoderInfo, settings: DecodeSettings) -> dict[str, Any]:
    """The decoder and its settings as a JSON-ready record (for metadata)."""
    return {**asdict(info), "settings": asdict(settings)}

"""Image decoders behind one small interface: Kandinsky 2.2 and Stable Diffusion 2.1 unCLIP, conditioned on CLIP
image embeddings (`image_embeds=`), with seeded, reproducible calls.

    decoder = load_decoder("kandinsky22")                                  # hub ids (decoder + prior)
    decoder = load_decoder("sd21-unclip", "stabilityai/stable-diffusion-2-1-unclip", device="cuda", dtype="float16")
    decoder = load_decoder("kandinsky22", "runs/tiny-k22")                 # a folder `build_tiny_pipeline` wrote
    images = decoder.decode(x, seeds=[0, 1])        # x: [n, d] in the decoder's space -> n PIL images
    images = decoder.generate(["a photo of Vicki"] * 2, seeds=[0, 1])     # text -> image (Kandinsky: via the prior)
    x = decoder.embed_prompts(["a photo of Vicki"], seeds=[0])            # Kandinsky prior: text -> image embedding

Every image has its own CPU `torch.Generator` seeded with its seed (the prior and the decoder each get a fresh one),
so a seed gives the same image whatever the batch it is drawn in, up to floating-point differences of batched
kernels. A decoder knows its embedding `space` (the store space of the embeddings it expects, e.g.
`open_clip:ViT-bigG-14:laion2b_s39b_b160k:image`) and `dim`; `check_space` refuses an SAE or store from another.
Folders written by namesae carry `namesae_decoder.json` (kind, space, dim, image encoder, default settings).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from namesae.errors import ConfigError, NamesaeError, SpaceMismatchError
from namesae.io import atomic_file

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
class DecodeSettings:
    """How images are drawn; None means the pipeline's default (from its folder's metadata, else the kind's)."""

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


def check_space(info: DecoderInfo, space: str | None, dim: int, what: str) -> None:
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


def _generators(seeds: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def _rescale(x: Tensor, norm: float | None) -> Tensor:
    return x if norm is None else x * (norm / x.norm(dim=1, keepdim=True).clamp_min(1e-12))


class Decoder:
    """A diffusers pipeline conditioned on image embeddings; subclasses fill in `_decode` (and the prior)."""

    def __init__(self, info: DecoderInfo, settings: DecodeSettings, device: str) -> None:
        self.info = info
        self.settings = settings.over(info.defaults).over(KIND_DEFAULTS[info.kind])
        self.device = device

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.model!r}, space={self.info.space!r}, dim={self.info.dim})"

    @property
    def space(self) -> str:
        """The store space of the embeddings this decoder takes."""
        return self.info.space

    @property
    def dim(self) -> int:
        """The dimension of the embeddings this decoder takes."""
        return self.info.dim

    def _check(self, x: Tensor, seeds: Sequence[int]) -> Tensor:
        x = torch.as_tensor(x, dtype=torch.float32)
        x = x[None] if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise DecoderError(f"{self.info.model}: embeddings must be [n, {self.dim}], got {tuple(x.shape)}")
        if len(seeds) != x.shape[0]:
            raise DecoderError(f"{self.info.model}: {len(seeds)} seeds for {x.shape[0]} embeddings")
        if not torch.isfinite(x).all():
            raise DecoderError(f"{self.info.model}: embeddings hold NaN/Inf")
        return _rescale(x, self.settings.embed_norm)

    def decode(self, x: Tensor, seeds: Sequence[int], prompts: Sequence[str] | None = None) -> list[Any]:
        """One PIL image per embedding row x [n, d], each drawn with its seed; `prompts` only for SD unCLIP."""
        return self._decode(self._check(x, seeds), list(seeds), prompts)

    def _decode(self, x: Tensor, seeds: list[int], prompts: Sequence[str] | None) -> list[Any]:
        raise NotImplementedError

    def embed_prompts(self, prompts: Sequence[str], seeds: Sequence[int]) -> Tensor:
        """Image embeddings [n, d] of text prompts (Kandinsky prior); SD 2.1 unCLIP has no prior."""
        raise DecoderError(f"{self.info.kind} has no prior to turn a prompt into an image embedding; steer from a "
                           f"store row, a name or an image instead")

    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Any]:
        """One PIL image per prompt, each drawn with its seed."""
        raise NotImplementedError


class KandinskyDecoder(Decoder):
    """Kandinsky 2.2: `KandinskyV22Pipeline` (image_embeds -> image) and, for text, `KandinskyV22PriorPipeline`."""

    def __init__(self, pipe: Any, prior: Any | None, info: DecoderInfo, settings: DecodeSettings,
                 device: str) -> None:
        super().__init__(info, settings, device)
        self.pipe, self.prior = pipe, prior
        self._negative: Tensor | None = None

    def negative_embedding(self) -> Tensor:
        """The negative image embedding [1, d] guidance pushes away from (the prior's zero-image embedding)."""
        if self._negative is None:
            mode = self.settings.negative or ("prior" if self.prior is not None else "zeros")
            if mode == "prior":
                if self.prior is None:
                    raise DecoderError("negative='prior' needs a Kandinsky prior; pass --prior or negative='zeros'")
                with torch.no_grad():
                    self._negative = self.prior.get_zero_embed(1, device=self.device).float().cpu()
            else:
                self._negative = torch.zeros(1, self.dim)
        return self._negative

    def _decode(self, x: Tensor, seeds: list[int], prompts: Sequence[str] | None) -> list[Any]:
        s = self.settings
        negative = self.negative_embedding().expand(len(seeds), -1)
        dtype = self.pipe.unet.dtype
        return self.pipe(image_embeds=x.to(self.device, dtype), negative_image_embeds=negative.to(self.device, dtype),
                         height=s.height, width=s.width, num_inference_steps=s.steps, guidance_scale=s.guidance_scale,
                         generator=_generators(seeds), output_type="pil").images

    def embed_prompts(self, prompts: Sequence[str], seeds: Sequence[int]) -> Tensor:
        """Image embeddings [n, d] of text prompts through the prior (seeded)."""
        if self.prior is None:
            raise DecoderError(f"{self.info.model}: no Kandinsky prior loaded; pass --prior (hub id or folder)")
        if len(prompts) != len(seeds):
            raise DecoderError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        s = self.settings
        out = self.prior(prompt=list(prompts), num_inference_steps=s.prior_steps, guidance_scale=s.prior_guidance_scale,
                         generator=_generators(seeds), output_type="pt")
        return out.image_embeds.float().cpu()

    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Any]:
        """Prior (text -> image embedding) then decoder, both seeded with each image's seed."""
        return self._decode(self._check(self.embed_prompts(prompts, seeds), seeds), list(seeds), None)


class UnclipDecoder(Decoder):
    """SD 2.1 unCLIP: `StableUnCLIPImg2ImgPipeline` with `image_embeds` (noise-augmented by `noise_level`)."""

    def __init__(self, pipe: Any, info: DecoderInfo, settings: DecodeSettings, device: str) -> None:
        super().__init__(info, settings, device)
        self.pipe = pipe

    def _call(self, x: Tensor, seeds: list[int], prompts: Sequence[str] | None) -> list[Any]:
        s = self.settings
        prompts = [""] * len(seeds) if prompts is None else list(prompts)
        if len(prompts) != len(seeds):
            raise DecoderError(f"{len(prompts)} prompts for {len(seeds)} seeds")
        return self.pipe(prompt=prompts, image_embeds=x.to(self.device, self.pipe.unet.dtype), height=s.height,
                         width=s.width, num_inference_steps=s.steps, guidance_scale=s.guidance_scale,
                         noise_level=s.noise_level, generator=_generators(seeds), output_type="pil").images

    def _decode(self, x: Tensor, seeds: list[int], prompts: Sequence[str] | None) -> list[Any]:
        return self._call(x, seeds, prompts)

    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Any]:
        """Text-conditioned images: the prompt through the UNet's cross-attention, and in the image-embedding slot
        the zero vector (the pipeline's own unconditional image embedding)."""
        return self._call(torch.zeros(len(seeds), self.dim), list(seeds), prompts)


# ---- loading -----------------------------------------------------------------------------------------------------
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


def _torch_dtype(dtype: str) -> torch.dtype:
    table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in table:
        raise ConfigError(f"dtype must be one of {sorted(table)}, got {dtype!r}")
    return table[dtype]


def _from_pretrained(cls: Any, model: str, dtype: torch.dtype, what: str) -> Any:
    try:
        # float32 is the default; only other precisions are passed (the keyword's name changed across versions).
        pipe = cls.from_pretrained(model, **({} if dtype == torch.float32 else {"torch_dtype": dtype}))
    except (OSError, ValueError) as err:
        local = Path(model).exists()
        raise DecoderError(
            f"could not load {what} {model!r}: {str(err).splitlines()[0][:300]}; "
            + ("the folder is not a diffusers pipeline (model_index.json)" if local else
               "without network the Hugging Face cache (HF_HOME) must already hold it; or pass a local folder")
        ) from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


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


def load_decoder(kind: str, model: str | None = None, prior: str | None = None, device: str = "cpu",
                 dtype: str = "float32", settings: DecodeSettings | None = None, space: str | None = None,
                 load_prior: bool = True) -> Decoder:
    """A decoder of `kind` from a hub id or folder (default: the real model's hub id); Kandinsky also loads its
    prior unless `load_prior` is False. `space` overrides the embedding space the decoder is taken to expect."""
    info = describe_decoder(kind, model, prior, space)
    from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline, StableUnCLIPImg2ImgPipeline

    from namesae.devices import resolve_device

    device = resolve_device(device)
    torch_dtype = _torch_dtype(dtype)
    settings = settings or DecodeSettings()
    if kind == "kandinsky22":
        pipe = _from_pretrained(KandinskyV22Pipeline, info.model, torch_dtype, "Kandinsky 2.2 decoder").to(device)
        dim = int(pipe.unet.config.encoder_hid_dim)
    else:
        pipe = _from_pretrained(StableUnCLIPImg2ImgPipeline, info.model, torch_dtype, "SD 2.1 unCLIP").to(device)
        dim = int(pipe.image_normalizer.mean.shape[-1])
    if dim != info.dim:
        if Path(info.model).is_dir() and read_meta(info.model) is not None:
            raise DecoderError(f"{info.model}/{META_FILE}: dim {info.dim} but the pipeline takes {dim}-d embeddings")
        log.warning("%s takes %d-d embeddings, not the %d of %s; pass its space explicitly", info.model, dim,
                    info.dim, info.space)
        info = replace(info, dim=dim)
    prior_pipe = None
    if kind == "kandinsky22" and info.prior is not None and load_prior:
        prior_pipe = _from_pretrained(KandinskyV22PriorPipeline, info.prior, torch_dtype,
                                      "Kandinsky 2.2 prior").to(device)
        prior_dim = int(prior_pipe.prior.config.embedding_dim)
        if prior_dim != dim:
            raise DecoderError(f"prior {info.prior} makes {prior_dim}-d embeddings; decoder {info.model} takes {dim}")
    info = replace(info, prior=info.prior if prior_pipe is not None else None)
    if kind == "kandinsky22":
        return KandinskyDecoder(pipe, prior_pipe, info, settings, device)
    return UnclipDecoder(pipe, info, settings, device)


def quiet_loading() -> None:
    """Silence diffusers' and transformers' per-component loading bars (for command-line runs; global state)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def resolve_model(kind: str, model: str | None, space: str | None = None, dim: int | None = None) -> str | None:
    """`tiny:DIR` -> DIR, building a tiny random pipeline there first if it holds none; other values unchanged."""
    if model is None or not model.startswith("tiny:"):
        return model
    folder = Path(model.removeprefix("tiny:"))
    if not folder.is_dir() or read_meta(folder) is None:
        from namesae.tiny_pipelines import build_tiny_pipeline

        build_tiny_pipeline(kind, folder, seed=0, dim=dim or 64, space=space)
    return str(folder)


# ---- images on disk ------------------------------------------------------------------------------------------------
def write_png(path: str | Path, image: Any, metadata: Mapping[str, Any] | None = None) -> Path:
    """Save a PIL image as PNG with text metadata (values JSON-encoded unless strings), atomically."""
    from PIL.PngImagePlugin import PngInfo

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    for key, value in (metadata or {}).items():
        info.add_itxt(key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    with atomic_file(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)
    return path


def read_png_metadata(path: str | Path) -> dict[str, str]:
    """The text metadata of a PNG written by `write_png`."""
    from PIL import Image

    with Image.open(path) as im:
        return dict(getattr(im, "text", {}) or {})


def image_grid(rows: Sequence[Sequence[Any]], pad: int = 2) -> Any:
    """Images laid out in a grid (a list of rows of PIL images of one size), white padding between."""
    from PIL import Image

    w, h = rows[0][0].size
    cols = max(len(r) for r in rows)
    grid = Image.new("RGB", (cols * w + (cols - 1) * pad, len(rows) * h + (len(rows) - 1) * pad), "white")
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            grid.paste(im.convert("RGB"), (j * (w + pad), i * (h + pad)))
    return grid


def info_dict(info: DecoderInfo, settings: DecodeSettings) -> dict[str, Any]:
    """The decoder and its settings as a JSON-ready record (for metadata)."""
    return {**asdict(info), "settings": asdict(settings)}

"""Kandinsky 2.2 and SD 2.1 unCLIP decoders behind one interface: loaded from a hub id or a folder, conditioned
on image embeddings (`image_embeds=`), each image drawn with its own seeded generator."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from namesae.decoders.spaces import (
    KIND_DEFAULTS,
    META_FILE,
    DecoderError,
    DecoderInfo,
    DecodeSettings,
    describe_decoder,
    read_meta,
)
from namesae.errors import ConfigError

log = logging.getLogger(__name__)


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
        from namesae.decoders.tiny import build_tiny_pipeline

        build_tiny_pipeline(kind, folder, seed=0, dim=dim or 64, space=space)
    return str(folder)

"""Steering as one library call: `run_steer(SteerRequest(...))` is `namesae steer` without the command line.

    request = SteerRequest(sae=Path("runs/demo/sae"), store=Path("runs/demo/world/image.h5"), name="Vicki",
                           edits='[{"op": "zero", "group": "identity"}]', groups=Path("groups.json"),
                           model="tiny:runs/demo/steer/tiny_kandinsky22", seeds=(0, 1), out=Path("out"))
    done = run_steer(request)          # loads the SAE and decoder, steers, decodes, writes the files
    done.files.grid                    # side_by_side.png; done.files.record is steer.json (`SteerRecord`)

A `Steerer` holds what is slow to load (the SAE, the decoder, the open store, an image encoder) and steers one
request after another with it: `run_steer` opens one for a single request, the playground keeps one open, so both
draw their images through `Steerer.steer` and the same edits at the same seed give the same pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from namesae.errors import ConfigError, NamesaeError
from namesae.steer.core import resolve_edits, sae_functions
from namesae.steer.edits import CodeRef, Edit, Transfer, load_edits, load_groups
from namesae.steer.images import (
    SteeredImages,
    SteerFiles,
    SteerSource,
    reference_embeddings,
    source_from_image,
    source_from_prompt,
    source_from_store,
    steer_images,
    write_steer_outputs,
)

if TYPE_CHECKING:
    from namesae.sae import TrainedSAE

log = logging.getLogger(__name__)

SOURCES = ("row", "name", "image", "prompt")
# The fields that decide what a Steerer loads; a request steered by an open Steerer must agree on them (the device
# is the Steerer's).
LOADING = ("sae", "store", "pipeline", "model", "prior", "embed_norm", "steps", "guidance_scale", "noise_level",
           "height", "width", "negative", "decoder_space", "dtype")


@dataclass(frozen=True)
class SteerRequest:
    """One steering run: what to steer, the edits, the decoder and how to draw (the fields of `namesae steer`)."""

    sae: Path
    """SAE folder written by `namesae train`."""
    edits: str | tuple[Edit, ...] = ()
    """Edits: a .json / .toml file, inline JSON (the `--edit` text), or edit objects; empty decodes unedited."""
    out: Path | None = None
    """Output folder for `run_steer` (side_by_side.png, original_s*.png, edited_s*.png, steer.json, embeddings)."""
    pipeline: str = "kandinsky22"
    """kandinsky22 or sd21-unclip."""
    model: str | None = None
    """Decoder hub id or folder; tiny:DIR builds a tiny random one in the SAE's space. None: the real model."""
    prior: str | None = None
    """Kandinsky 2.2 prior (needed for a prompt source)."""
    row: int | None = None
    """Steer this row of `store`."""
    name: str | None = None
    """Steer this name's mean image embedding in `store`."""
    image: Path | None = None
    """Steer this image, embedded by the SAE space's open_clip encoder."""
    prompt: str | None = None
    """Steer the Kandinsky prior's embedding of this text."""
    store: Path | None = None
    """Embedding store for row / name sources and row / name references in transfers."""
    groups: Path | None = None
    """JSON of named feature groups ({label: [ids]}) that text edits refer to with "group": "label"."""
    seeds: tuple[int, ...] = (0,)
    """One original / edited image pair per seed."""
    keep_norm: bool = False
    """Rescale the edited embedding to the original's norm."""
    embed_norm: float | None = None
    """Rescale embeddings to this norm before decoding (unit-norm store rows -> the decoder's native scale)."""
    decode_prompt: str | None = None
    """SD 2.1 unCLIP: text prompt decoded with the embedding."""
    normalize: bool | None = None
    """Unit-normalise image / prompt embeddings for the SAE (None: as the store, else on)."""
    steps: int | None = None
    """Decoder denoising steps (None: the decoder's default)."""
    guidance_scale: float | None = None
    """Decoder guidance."""
    noise_level: int | None = None
    """SD 2.1 unCLIP embedding noise level."""
    height: int | None = None
    """Image height."""
    width: int | None = None
    """Image width."""
    negative: str = "prior"
    """Kandinsky negative image embedding: prior (the prior's zero-image embedding) or zeros."""
    decoder_space: str | None = None
    """Override the embedding space the decoder is taken to expect (a fine-tune on another CLIP)."""
    device: str = "cpu"
    """Torch device of the SAE, the decoder and the image encoder (edits are made on the CPU)."""
    dtype: str = "float32"
    """float32, float16 or bfloat16."""

    def __post_init__(self) -> None:
        chosen = [f"--{k}" for k in SOURCES if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise NamesaeError(f"give exactly one of --row, --name, --image, --prompt (got {chosen or 'none'})")
        if (self.row is not None or self.name is not None) and self.store is None:
            raise NamesaeError(f"{chosen[0]} needs --store, the embedding store the row or name lives in")
        seeds = tuple(self.seeds) if self.seeds else (0,)
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise ConfigError(f"seeds must be integers, got {list(seeds)}")
        object.__setattr__(self, "seeds", seeds)
        if not isinstance(self.edits, str):
            object.__setattr__(self, "edits", tuple(self.edits))
        if self.negative not in ("prior", "zeros"):
            raise ConfigError(f"--negative must be prior or zeros, got {self.negative!r}")

    @property
    def source_kind(self) -> str:
        """Which of row / name / image / prompt is steered."""
        return next(k for k in SOURCES if getattr(self, k) is not None)

    def with_source(self, kind: str, value: Any) -> SteerRequest:
        """This request steering another source (kind: row, name, image or prompt)."""
        if kind not in SOURCES:
            raise NamesaeError(f"source kind {kind!r} is unknown; use one of {SOURCES}")
        return replace(self, **{k: (value if k == kind else None) for k in SOURCES})

    def edit_list(self) -> list[Edit]:
        """The edits as objects: parsed from the `--edit` text (group labels from `groups`), or as given."""
        if isinstance(self.edits, str):
            return load_edits(self.edits, load_groups(self.groups) if self.groups is not None else None)
        return list(self.edits)

    def loading(self) -> tuple[Any, ...]:
        """The values of the fields that decide what a Steerer loads."""
        return tuple(getattr(self, k) for k in LOADING)


def needs_prior(request: SteerRequest, edits: Sequence[Edit]) -> bool:
    """Whether steering this request calls the Kandinsky prior (a prompt source or a prompt reference)."""
    return request.prompt is not None or any(
        isinstance(ref, CodeRef) and ref.kind == "prompt"
        for e in edits if isinstance(e, Transfer) for ref in (e.target, e.source))


@dataclass
class SteerOutcome:
    """What `Steerer.steer` made: the images, the source and the resolved edits, and the metadata to record."""

    steered: SteeredImages
    source: SteerSource
    edits: list[Edit]  # transfer references resolved to codes
    metadata: dict[str, Any]


@dataclass
class SteerRun:
    """What `run_steer` did: the outcome and the files written."""

    outcome: SteerOutcome
    files: SteerFiles


class Steerer:
    """An SAE, a decoder and an open store, loaded once, that steer request after request (`steer`)."""

    def __init__(self, request: SteerRequest, sae: TrainedSAE, decoder: Any, store: Any | None) -> None:
        self.request, self.sae, self.decoder, self.store = request, sae, decoder, store
        self.encode, self.decode = sae_functions(sae)
        self._image_encoder: Any = None

    @classmethod
    def open(cls, request: SteerRequest, load_prior: bool | None = None) -> Steerer:
        """Load what `request` names: the SAE, its store, the decoder (checked against the SAE's space first)."""
        from namesae.decoders import (
            DecodeSettings,
            check_decoder_space,
            describe_decoder,
            load_decoder,
            quiet_loading,
            resolve_model,
        )
        from namesae.devices import resolve_device
        from namesae.sae import check_space, load_sae
        from namesae.store import EmbeddingStore

        request = replace(request, device=resolve_device(request.device))
        if load_prior is None:
            load_prior = request.negative != "zeros" or needs_prior(request, request.edit_list())
        sae = load_sae(request.sae, device=request.device)
        store = EmbeddingStore.open(request.store) if request.store is not None else None
        try:
            if store is not None:
                check_space(sae, store)
            settings = DecodeSettings(height=request.height, width=request.width, steps=request.steps,
                                      guidance_scale=request.guidance_scale, noise_level=request.noise_level,
                                      embed_norm=request.embed_norm,
                                      negative=request.negative if request.pipeline == "kandinsky22" else None)
            model = resolve_model(request.pipeline, request.model, space=sae.space, dim=sae.d_in)
            what = f"SAE {request.sae}"
            check_decoder_space(describe_decoder(request.pipeline, model, request.prior, request.decoder_space),
                                sae.space, sae.d_in, what)  # before minutes of loading weights
            quiet_loading()
            decoder = load_decoder(request.pipeline, model, request.prior, device=request.device,
                                   dtype=request.dtype, settings=settings, space=request.decoder_space,
                                   load_prior=load_prior)
            check_decoder_space(decoder.info, sae.space, sae.d_in, what)
        except BaseException:
            if store is not None:
                store.close()
            raise
        return cls(request, sae, decoder, store)

    def close(self) -> None:
        """Close the store."""
        if self.store is not None:
            self.store.close()
            self.store = None

    def _unit(self, request: SteerRequest) -> bool:
        if request.normalize is not None:
            return request.normalize
        return bool(self.store.normalized) if self.store is not None else True

    def image_encoder(self) -> Any:
        """The open_clip image encoder of the SAE's space, built on first use; a clear error when it has none."""
        if self._image_encoder is None:
            from namesae.decoders import encoder_for_space
            from namesae.encoders import load_encoder

            spec = encoder_for_space(self.sae.space or self.decoder.space)
            if spec is None:
                raise NamesaeError(f"the SAE's space {self.sae.space!r} has no open_clip image encoder to embed "
                                   f"images")
            self._image_encoder = load_encoder(spec["model"], spec["pretrained"], device=self.request.device,
                                               dtype=self.request.dtype, normalize=self._unit(self.request))
        return self._image_encoder

    def source(self, request: SteerRequest) -> SteerSource:
        """The embedding `request` steers (a store row or name, an image, a prompt through the prior)."""
        if request.prompt is not None:
            return source_from_prompt(self.decoder, request.prompt, request.seeds[0], self._unit(request))
        if request.image is not None:
            return source_from_image(self.image_encoder(), request.image)
        return source_from_store(self.store, row=request.row, name=request.name)

    def source_codes(self, request: SteerRequest) -> Tensor:
        """The SAE codes [d_sae] of the embedding `request` steers."""
        return self.encode(self.source(request).embedding.float())[0].detach().float().cpu()

    def steer(self, request: SteerRequest) -> SteerOutcome:
        """Steer `request`'s source with its edits and decode the original and the edited embedding per seed."""
        if request.loading() != self.request.loading():
            raise NamesaeError("this Steerer was opened for another SAE, store or decoder; open one for the request")
        source = self.source(request)
        unit = self._unit(request)
        refs = reference_embeddings(self.store, self.image_encoder, self.decoder, unit, request.seeds[0])
        edits = resolve_edits(request.edit_list(), self.encode, refs)
        prompts = [request.decode_prompt] if request.decode_prompt is not None and \
            request.pipeline == "sd21-unclip" else None
        steered = steer_images(source.embedding, edits, self.encode, self.decode, self.decoder, request.seeds,
                               keep_norm=request.keep_norm, scale=source.scale, prompts=prompts)
        from namesae.decoders import info_dict

        sae = self.sae
        metadata = {"namesae": "steer", "sae": {"dir": str(request.sae), "space": sae.space, "d_in": sae.d_in,
                                                "d_sae": sae.d_sae},
                    "decoder": info_dict(self.decoder.info, self.decoder.settings), "source": source.describe(),
                    "keep_norm": request.keep_norm, "decode_prompt": request.decode_prompt}
        return SteerOutcome(steered, source, edits, metadata)


def run_steer(request: SteerRequest) -> SteerRun:
    """`namesae steer`: load, steer, decode and write the outputs into `request.out`."""
    if request.out is None:
        raise NamesaeError("give --out, the folder for the images and steer.json")
    request.edit_list()  # a bad edit is refused before minutes of loading
    steerer = Steerer.open(request)
    try:
        outcome = steerer.steer(request)
    finally:
        steerer.close()
    files = write_steer_outputs(request.out, outcome.steered, outcome.metadata)
    log.info("steer: wrote %s", files.grid)
    return SteerRun(outcome, files)


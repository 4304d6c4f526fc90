"""Command inputs a synthetic world can stand in for: the text encoder and the SAE features a search aims at.

`TextInputs` is an open_clip (or tiny offline) model, or with `world` a world's toy text encoder, whose names and
templates then serve as default corpora; `FeatureInputs` is a trained SAE's features, or with `world` and no SAE
the world's planted directions. The analyses (`namesae.basis.run`, `namesae.search.run`) are handed these and
call them; they never import the synthetic world themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from namesae.errors import NamesaeError, SpaceMismatchError
from namesae.search import FeatureTarget
from namesae.search.run import FeatureCodes


def load_text_encoder(model: str | None, pretrained: str | None, world: Path | None, device: str = "cpu",
                      dtype: str = "float32") -> Any:
    """The text encoder of the command line: a world's toy encoder (--world) or an open_clip model (--model);
    `device` is checked first, also for the toy encoder (which runs on the CPU)."""
    from namesae.devices import resolve_device

    device = resolve_device(device)
    if (model is None) == (world is None):
        raise NamesaeError("give exactly one of --model (an open_clip or tiny model) or --world (a synthetic "
                           "world's toy encoder)")
    if world is not None:
        from namesae.synth.toy_encoder import load_toy_encoder

        return load_toy_encoder(world)
    from namesae.encoders import load_encoder

    return load_encoder(model, pretrained, device=device, dtype=dtype)


@dataclass(frozen=True)
class TextInputs:
    """The text side of a command: `--model`/`--pretrained` or `--world` (exactly one), on `device`."""

    model: str | None = None
    """open_clip model or tiny offline model."""
    pretrained: str | None = None
    """open_clip tag or checkpoint (seed<N> for tiny)."""
    world: Path | None = None
    """A synthetic world folder: its toy text encoder instead of a model; its names and templates as defaults."""
    device: str = "cpu"
    """Torch device of the model (checked also for the toy encoder, which runs on the CPU)."""
    dtype: str = "float32"
    """Encoder precision: float32, float16, bfloat16."""

    def encoder(self) -> Any:
        """Load the text encoder (`load_text_encoder`)."""
        return load_text_encoder(self.model, self.pretrained, self.world, self.device, self.dtype)

    def world_names(self, kind: str) -> list[str]:
        """The world's names of one kind (first, last or full); none without a world."""
        if self.world is None:
            return []
        from namesae.synth import load_truth

        return [r["name"] for r in load_truth(self.world)["names"] if r["kind"] == kind]

    def world_templates(self) -> list[str]:
        """The world's prompt templates (with {name}); none without a world."""
        if self.world is None:
            return []
        from namesae.synth import load_truth

        return [t["template"].replace("{}", "{name}") for t in load_truth(self.world)["templates"]]


@dataclass(frozen=True)
class FeatureInputs:
    """The features a search aims at: of SAE `sae`, or with `world` and no SAE the world's planted directions."""

    sae: Path | None = None
    """SAE checkpoint directory (`namesae train`)."""
    world: Path | None = None
    """A synthetic world folder: its planted directions when no SAE is given."""
    device: str = "cpu"
    """Torch device of the SAE's encoding."""

    def target(self, features: str, encoder: Any) -> FeatureTarget:
        """The FeatureTarget of feature ids (or planted labels) `features`; an SAE's space is checked against the
        encoder's."""
        from namesae.features import same_encoder
        from namesae.search import parse_features, sae_target

        if self.sae is None:
            if self.world is None:
                raise NamesaeError("--sae is required (a trained SAE), unless --world gives the planted dictionary")
            oracle = self._planted()
            index = {label: i for i, label in enumerate(oracle.labels)}
            ids = []
            for part in features.replace(",", " ").split():
                if part.lstrip("-").isdigit():
                    ids.append(int(part))
                elif part in index:
                    ids.append(index[part])
                else:
                    raise NamesaeError(f"feature {part!r} is neither an id nor a planted label of {self.world} "
                                       f"(e.g. {list(index)[:4]})")
            if not ids:
                raise NamesaeError("no feature ids given; pass e.g. --features 12 or --features scene:beach")
            return FeatureTarget(oracle.codes, tuple(ids), len(oracle.labels), oracle.directions[ids],
                                 ",".join(oracle.labels[i] if 0 <= i < len(oracle.labels) else str(i) for i in ids))
        from namesae.sae import load_sae

        model = load_sae(self.sae, device=self.device)
        if not same_encoder(model.space, encoder.space("text")):
            raise SpaceMismatchError(f"SAE {self.sae} was trained in space {model.space!r} but the encoder writes "
                                     f"{encoder.space('text')!r}; use the SAE's encoder")
        return sae_target(model, parse_features(features))

    def codes(self) -> FeatureCodes:
        """Codes of every feature: the SAE's (in its space), or the planted dictionary's (labelled)."""
        if self.sae is not None:
            from namesae.sae import encode, load_sae

            model = load_sae(self.sae, device=self.device)
            return FeatureCodes(lambda x: encode(model, x), int(model.d_sae), model.space, None)
        if self.world is not None:
            oracle = self._planted()
            return FeatureCodes(oracle.codes, len(oracle.labels), None, oracle.labels)
        raise NamesaeError("--sae is required (a trained SAE), unless --world gives the planted dictionary")

    def _planted(self) -> Any:
        from namesae.synth import load_world
        from namesae.synth.score.search import planted_dictionary

        return planted_dictionary(load_world(self.world))

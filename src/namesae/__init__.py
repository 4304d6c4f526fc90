"""namesae: sparse autoencoders on CLIP embeddings of names.

The notebook API (`examples/walkthrough.py` walks through it on the synthetic world)::

    import namesae as ns
    paths = ns.synth("runs/world", n_full=48)                   # the synthetic world: stores + truth.json
    sae = ns.train(paths.image, "runs/sae", steps=400)          # or ns.load_sae("runs/sae")
    found = ns.identity(paths.image, sae)                        # IdentityResult: .records, .save, .load
    record = found.dedicated()[0]                                # IdentityRecord: .identity_features (ids)
    groups = ns.groups(paths.image, sae, names=record.name)      # GroupsResult
    with ns.open_store(paths.image) as store:
        x = store.read_rows(store.rows_of(record.name))
    moved = ns.steer(sae, x, [ns.ZeroGroup(record.identity_features)])   # SteerResult

Each call is a thin wrapper (`namesae.api`) over the library function its CLI command uses; every result type
owns its file format (`save` / `load`). Nothing heavy is imported until a name is used, so `import namesae` stays
fast. `ns.identity`, `ns.groups`, `ns.features`, `ns.steer` and `ns.synth` share their names with the subpackages
that implement them: the subpackage module is returned, and calling it runs the step (`ns.identity(store, sae)`),
while `ns.identity.IdentityConfig` and `import namesae.identity.analysis` keep working.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it (imported on first use).
_EXPORTS = {
    **dict.fromkeys(("open_store", "load_sae", "train"), "namesae.api"),
    **dict.fromkeys(("EmbeddingStore",), "namesae.store"),
    **dict.fromkeys(("TrainConfig", "TrainedSAE", "SAEMetrics"), "namesae.sae"),
    **dict.fromkeys(("FeatureConfig",), "namesae.features"),
    **dict.fromkeys(("FeaturesResult", "FeatureRecord"), "namesae.features.result"),
    **dict.fromkeys(("IdentityConfig", "IdentityResult", "IdentityRecord", "IdentityFeature", "TopFeature"),
                    "namesae.identity"),
    **dict.fromkeys(("GroupConfig", "GroupsResult", "EmbeddingGroups", "NameGroups", "Grouping", "FeatureGroup"),
                    "namesae.groups"),
    **dict.fromkeys(("SteerResult", "SetFeature", "AddFeature", "ScaleFeature", "ZeroFeature", "SetGroup",
                     "AddGroup", "ScaleGroup", "ZeroGroup", "Transfer", "CodeRef"), "namesae.steer"),
    **dict.fromkeys(("SynthConfig",), "namesae.synth"),
    **dict.fromkeys(("EmergenceConfig", "EmergenceResult"), "namesae.emergence"),
    **dict.fromkeys(("ScorecardFile", "load_scorecard"), "namesae.scorecard"),
}
# Steps whose names are also subpackages (or modules) of namesae: calling the module runs the step.
_CALLABLE = ("identity", "groups", "features", "steer", "synth")

__all__ = [  # the names above, spelled out for static tools (tests/test_formats.py checks they agree)
    "AddFeature", "AddGroup", "CodeRef", "EmbeddingGroups", "EmbeddingStore", "EmergenceConfig",
    "EmergenceResult", "FeatureConfig", "FeatureGroup", "FeatureRecord", "FeaturesResult", "GroupConfig",
    "Grouping", "GroupsResult", "IdentityConfig", "IdentityFeature", "IdentityRecord", "IdentityResult",
    "NameGroups", "SAEMetrics", "ScaleFeature", "ScaleGroup", "ScorecardFile", "SetFeature", "SetGroup",
    "SteerResult", "SynthConfig", "TopFeature", "TrainConfig", "TrainedSAE", "Transfer", "ZeroFeature",
    "ZeroGroup", "__version__", "features", "groups", "identity", "load_sae", "load_scorecard", "open_store",
    "steer", "synth", "train",
]


class _Step(types.ModuleType):
    """A namesae module that is also a step of the notebook API: calling it calls `namesae.api.<its name>`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the step (see `namesae.api`)."""
        from namesae import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Namesae(types.ModuleType):
    """The namesae package: the import system's assignment of a step's module makes that module callable."""

    def __setattr__(self, name: str, value: Any) -> None:
        """Set an attribute; a step's own module (set by the import system) becomes callable first."""
        if name in _CALLABLE and type(value) is types.ModuleType and value.__name__ == f"namesae.{name}":
            value.__class__ = _Step
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Namesae


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562), so `import namesae` stays fast."""
    if name in _CALLABLE:
        return importlib.import_module(f"namesae.{name}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'namesae' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (for tab completion)."""
    return sorted(__all__)

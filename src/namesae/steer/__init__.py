"""Steering: edits on SAE codes, decoded with the reconstruction error kept, and their effect on embeddings.

The maths (DESIGN.md): f = encode(x); f' = edit(f); x' = decode(f') + (x - decode(f)). We compute it as
x' = x + (decode(f') - decode(f)), the same quantity, so that an edit that leaves the codes unchanged returns x bit
for bit (and an empty edit list short-circuits to x). `keep_norm` rescales each x' to the norm of its x.

Edits are data: frozen dataclasses applied in order (stacked), or parsed from JSON / TOML::

    [{"op": "zero", "feature": 12},
     {"op": "scale", "features": [3, 4, 9], "factor": 2.0},
     {"op": "add", "group": "identity", "amount": -0.5},          # label from a groups mapping
     {"op": "set", "feature": 7, "value": 1.5},
     {"op": "transfer", "alpha": 1.0, "to": {"name": "Vicki"}, "from": "self", "group": "identity"}]

TOML: the same objects as `[[edit]]` tables. A transfer adds alpha (f_B - f_A) on its features (all features when
none are named); B ("to") and A ("from", default "self" = the codes being edited) are references to embeddings
(`{"row": I}`, `{"rows": [...]}`, `{"name": N}`, `{"image": PATH}`, `{"prompt": TEXT}`, `{"embedding": [...]}`) or
codes (`{"codes": {"id": value, ...}}` or a dense list); references are resolved to mean codes by `resolve_edits`.
Codes may go negative under add / transfer: decoding is linear in f, so a negative amount subtracts a direction.

Modules: `edits.py` (the edit dataclasses, JSON/TOML parsing, groups files), `core.py` (the steering maths on
tensors, reference resolution, the identity-ablation score), `images.py` (sources of embeddings, decoding the
original and edited embedding with the same seeds, the files `namesae steer` writes), `record.py` (steer.json, its
versioned format), `run.py` (`run_steer(SteerRequest(...))`: `namesae steer` as one call, and the `Steerer` that
keeps the SAE and decoder loaded for the playground). Scored on a synthetic world in
`namesae.synth.score.steer`. Decoders: namesae.decoders.

Python API::

    from namesae.steer import ZeroGroup, AddFeature, Transfer, steer, steer_embeddings, load_edits
    result = steer(sae, x, [ZeroGroup((12, 40)), AddFeature(7, 2.0)], keep_norm=True)   # x, x' [n, d]
    result.embeddings                     # x', to hand to a decoder (namesae.decoders.load_decoder(...).decode)
    run_steer(SteerRequest(sae=Path("runs/demo/sae"), store=Path("runs/demo/world/image.h5"), name="Vicki",
                           edits=(ZeroGroup((12, 40)),), model="tiny:runs/demo/steer/tiny_kandinsky22", out=Path("o")))
"""

from namesae._lazy import lazy_exports

# Public name -> the module that defines it (imported on first use).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".core": (
        "AblationScore", "AblationSummary", "SteerResult", "identity_ablation_score",
        "identity_ablation_scores", "resolve_edits", "sae_functions", "steer", "steer_embeddings",
    ),
    ".edits": (
        "OPS", "SELF", "AddFeature", "AddGroup", "CodeRef", "Edit", "ScaleFeature", "ScaleGroup",
        "SetFeature", "SetGroup", "Transfer", "ZeroFeature", "ZeroGroup", "apply_edits", "codes_of_ref",
        "edits_to_json", "load_edits", "load_groups", "parse_edit", "parse_edits", "parse_ref",
    ),
    ".record": ("STEER_FORMAT_VERSION", "SteerRecord"),
    ".run": ("Steerer", "SteerOutcome", "SteerRequest", "SteerRun", "run_steer"),
})

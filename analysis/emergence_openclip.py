"""Emergence of name identities across OpenCLIP checkpoints (by samples seen), over the public namesae API.

For each checkpoint: embed the names in scenario prompts (text rows), their first names and surnames and the bare
templates (name-part composition), the attribute-ladder prompts (attribute std and consistency) and, if given, a
fixed folder of generated images (image rows; generate once, e.g. with `namesae generate`, and embed the same
images with every checkpoint's image encoder). Then write a series spec with one point per checkpoint, train one
SAE per point from the given [train] config and run `namesae.emergence`.

    # LAION-2B ViT-g-14 at 12B and 34B samples seen (downloads the weights on first use)
    python analysis/emergence_openclip.py --preset vit-g-14-laion2b --names names.txt --images gen/ \
        --train-config configs/train.toml --out runs/emergence/vit-g-14
    # Any series: MODEL:PRETRAINED:SAMPLES_SEEN (PRETRAINED may be a checkpoint file, e.g. the scaling-law
    # releases of laion/scaling-laws-openclip downloaded beforehand)
    python analysis/emergence_openclip.py --checkpoint ViT-B-32:/ckpts/b32_s3b.pt:3e9 \
        --checkpoint ViT-B-32:/ckpts/b32_s13b.pt:1.3e10 --names names.txt --out runs/emergence/b32
    # Offline smoke run on tiny randomly initialised models (no weights, no images):
    python analysis/emergence_openclip.py --checkpoint tiny:seed0:1e6 --checkpoint tiny:seed1:1e7 \
        --names names.txt --out /tmp/emergence-smoke --train-config configs/train.toml

Outputs under --out: <label>/{text,vocab[,image]}.h5 per checkpoint, series.toml, saes/<label>/ and the files of
`namesae emergence` (emergence.json/.csv, curves.csv, dedication_curves.png, phase_map.png, ...).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

PRESETS = {
    # Same architecture and data, different samples seen (open_clip pretrained tags).
    "vit-g-14-laion2b": [("ViT-g-14", "laion2b_s12b_b42k", 12e9), ("ViT-g-14", "laion2b_s34b_b88k", 34e9)],
    # Two epochs of LAION-400M (about 407M samples per epoch).
    "vit-b-32-laion400m": [("ViT-B-32", "laion400m_e31", 31 * 4.07e8), ("ViT-B-32", "laion400m_e32", 32 * 4.07e8)],
    # DataComp scales: small, medium, xlarge pools (different data sizes as well as samples seen).
    "vit-b-32-datacomp": [("ViT-B-32", "datacomp_s_s13m_b4k", 1.3e7), ("ViT-B-32", "datacomp_m_s128m_b4k", 1.28e8),
                          ("ViT-B-32", "datacomp_xl_s13b_b90k", 1.3e10)],
}
TEMPLATE_NAME = "a person"  # the bare template rows: every template filled with this


def parse_checkpoint(spec: str) -> tuple[str, str, float]:
    """MODEL:PRETRAINED:SAMPLES_SEEN -> (model, pretrained, samples seen); PRETRAINED may contain ':' (paths)."""
    model, _, rest = spec.partition(":")
    pretrained, _, samples = rest.rpartition(":")
    if not model or not pretrained or not samples:
        raise SystemExit(f"--checkpoint {spec!r}: expected MODEL:PRETRAINED:SAMPLES_SEEN")
    return model, pretrained, float(samples)


def label_of(model: str, pretrained: str) -> str:
    """A folder-safe label of a checkpoint."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model}_{Path(pretrained).stem}")


def embed_checkpoint(model: str, pretrained: str, names: list[str], templates: list[str], images: Path | None,
                     folder: Path, device: str) -> dict[str, Path]:
    """Text, vocabulary (ladder prompts) and image stores of one checkpoint."""
    from namesae.embed import EmbedConfig, embed_images, embed_texts, image_rows
    from namesae.encoders import load_encoder
    from namesae.identity import load_ladders, split_name

    encoder = load_encoder(model, pretrained, device=device)
    cfg = EmbedConfig(model=model, pretrained=pretrained, device=device)
    parts = {p for n in names if (s := split_name(n)) for p in (s.first, s.last)}
    text_names = list(dict.fromkeys([*names, *sorted(parts), TEMPLATE_NAME]))
    out = {"text": folder / "text.h5", "vocab": folder / "vocab.h5"}
    embed_texts(encoder, text_names, templates, out["text"], cfg, progress=True)
    prompts = list(dict.fromkeys(p for lad in load_ladders() for p in lad.prompts))
    embed_texts(encoder, prompts, ["{name}"], out["vocab"], cfg, progress=True)
    if images is not None:
        out["image"] = folder / "image.h5"
        embed_images(encoder, image_rows(images), out["image"], cfg, progress=True)
    return out


def toml_value(value: object) -> str:
    """A TOML literal for a str / number / bool / list value."""
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def write_spec(path: Path, points: list[dict], train: dict) -> Path:
    """The series spec of `namesae emergence` (axis samples_seen, one point per checkpoint)."""
    lines = ['axis = "samples_seen"']
    lines.append("[train]")  # always present: points have no SAE, so each is trained (defaults if empty)
    lines += [f"{k} = {toml_value(v)}" for k, v in train.items()]
    for p in points:
        lines.append("[[points]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in p.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main() -> None:
    """Embed every checkpoint, write the series spec, run the emergence analysis."""
    from namesae.config import load_toml
    from namesae.emergence import (
        EmergenceConfig,
        load_emergence_config,
        load_series,
        run_emergence,
        write_emergence,
    )
    from namesae.names import load_names, resolve_templates

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS))
    ap.add_argument("--checkpoint", action="append", default=[], help="MODEL:PRETRAINED:SAMPLES_SEEN (repeat)")
    ap.add_argument("--names", type=Path, required=True, help="names file (.txt/.csv/.json)")
    ap.add_argument("--templates", action="append", default=None, help="template kinds or texts (default: "
                    "scenario)")
    ap.add_argument("--images", type=Path, help="folder of generated images (see namesae.embed.image_rows)")
    ap.add_argument("--train-config", type=Path, help="TOML whose [train] section is the SAE TrainConfig")
    ap.add_argument("--config", type=Path, help="TOML with [emergence] / [emergence.phases]")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    checkpoints = list(PRESETS.get(args.preset, [])) + [parse_checkpoint(c) for c in args.checkpoint]
    if len(checkpoints) < 2:
        raise SystemExit("give --preset or at least two --checkpoint MODEL:PRETRAINED:SAMPLES_SEEN")
    checkpoints.sort(key=lambda c: c[2])
    names = load_names(args.names)
    templates = resolve_templates(args.templates or ["scenario"])
    train = dict(load_toml(args.train_config).get("train", {})) if args.train_config else {}
    points = []
    for model, pretrained, samples in checkpoints:
        label = label_of(model, pretrained)
        stores = embed_checkpoint(model, pretrained, names, templates, args.images, args.out / label, args.device)
        main_store = stores.get("image", stores["text"])
        points.append({"label": label, "value": samples, "store": str(main_store.resolve()),
                       "text_store": str(stores["text"].resolve()), "vocab": str(stores["vocab"].resolve())})
    spec = write_spec(args.out / "series.toml", points, train)
    cfg = load_emergence_config(args.config) if args.config else EmergenceConfig()
    import dataclasses
    cfg = dataclasses.replace(cfg, template_name=TEMPLATE_NAME)
    result = run_emergence(load_series(spec), cfg, args.out, progress=True)
    for key, path in write_emergence(result, args.out, meta={"series": str(spec)}).items():
        print(f"wrote {key}: {path}")


if __name__ == "__main__":
    main()

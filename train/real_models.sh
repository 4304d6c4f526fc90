#!/usr/bin/env bash
# Train the real-size SAEs on stores embedded beforehand (`namesae embed`), one per decoder space:
#   ViT-bigG-14 image embeddings (Kandinsky 2.2) and ViT-H-14 image embeddings (SD 2.1 unCLIP).
# Re-running resumes an interrupted run; a finished run is reported, not retrained.
# Usage: train/real_models.sh [RUNS_DIR]   (stores expected at RUNS_DIR/{bigG,vitH}/image.h5)
set -euo pipefail
RUNS=${1:-runs}
NAMESAE=${NAMESAE:-.venv/bin/namesae}
"$NAMESAE" train --store "$RUNS/bigG/image.h5" --config configs/kandinsky22-bigG.toml --out "$RUNS/bigG/sae"
"$NAMESAE" train --store "$RUNS/vitH/image.h5" --config configs/sd21-unclip-H.toml --out "$RUNS/vitH/sae"

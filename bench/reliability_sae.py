"""The SAE-folder / training-state / result-file damage campaign now lives in bench/reliability.py (campaign
`sae_damage`); this wrapper keeps `python bench/reliability_sae.py [--cases N]` and the names tests import.

`python bench/reliability_sae.py --cases 1500` = `python bench/reliability.py --only sae_damage --sae-cases 1500
--name reliability_sae` (writes bench/results/reliability_sae.json).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability import (  # noqa: F401 - re-exported for tests/test_fuzz.py
    OUTCOMES,
    CliResult,
    Fixture,
    build_fixture,
    classify,
    damages,
    planted_store,
    run_target,
    target_files,
)
from reliability import main as _main
from reliability import run_cli_result as run_cli  # noqa: F401
from reliability import sae_damage as campaign  # noqa: F401


def main() -> None:
    """Run the damage campaign alone."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    _main(["--only", "sae_damage", "--sae-cases", str(args.cases), "--seed", str(args.seed),
           "--name", "reliability_sae"])


if __name__ == "__main__":
    main()

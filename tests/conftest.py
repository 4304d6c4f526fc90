"""Fixtures shared across test modules: built once per session so the suite stays fast."""

from __future__ import annotations

import pytest

# A small world and short training: the same steps as `make demo`, in a fraction of its time.
SMALL_DEMO = """
[demo]
group_cases = 20
progress = false
stability_seeds = 1
[synth]
n_first = 16
n_last = 16
n_full = 48
n_dedicated = 8
[train]
architecture = "jumprelu"
expansion_factor = 8.0
l0_coefficient = 0.005
jumprelu_sparsity_loss = "step"
jumprelu_ste_to_input = false
batch_size = 256
steps = 400
lr = 2e-3
[emergence_train]
architecture = "jumprelu"
expansion_factor = 8.0
l0_coefficient = 0.005
jumprelu_sparsity_loss = "step"
jumprelu_ste_to_input = false
batch_size = 256
steps = 200
lr = 2e-3
"""


@pytest.fixture(scope="session")
def small_demo_run(tmp_path_factory):
    """(run folder, printed output) of `namesae demo` on the small config, run once through the CLI."""
    from typer.testing import CliRunner

    from namesae.cli import app

    root = tmp_path_factory.mktemp("demo")
    (root / "small.toml").write_text(SMALL_DEMO)
    result = CliRunner().invoke(app, ["demo", "--out", str(root / "run"), "--config", str(root / "small.toml"),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    return root / "run", result.output


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory):
    """Where browser tests save their screenshots: docs/screenshots/ (the README's) when NAMESAE_SCREENSHOTS=1,
    else a temporary folder, so a test run leaves the working tree as it was."""
    import os
    from pathlib import Path

    if os.environ.get("NAMESAE_SCREENSHOTS") == "1":
        folder = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
    else:
        folder = tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder

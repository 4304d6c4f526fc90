"""`namesae demo`: the whole pipeline on the built-in synthetic name world, with a scorecard against its truth."""

from __future__ import annotations

from pathlib import Path

import typer

from namesae.cli.options import progress_option


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Run folder: world, SAE, analyses, scorecard, report."),
    config: Path = typer.Option(None, "--config", help="TOML with [demo], [synth], [train], [emergence_train], "
                                "[features], [identity], [groups], [emergence] sections (see configs/demo.toml; "
                                "missing sections take the defaults)."),
    seed: int = typer.Option(None, "--seed", help="Seed of the synthetic world (overrides [synth] seed)."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip the HTML report."),
    progress: bool = progress_option(),
) -> None:
    """Build a synthetic name world with planted truth, train an SAE on it, run every analysis (identity,
    groups, emergence, steering, name basis, feature search), score each against the truth, write the report.
    Prints the scorecard; runs/demo/scorecard.json holds it with stable keys (README: "The demo scorecard")."""
    import dataclasses

    from namesae.demo import load_demo_settings, run_demo

    settings = load_demo_settings(config)
    demo_cfg = dataclasses.replace(settings.demo, progress=progress, report=settings.demo.report and not no_report)
    synth_cfg = settings.synth if seed is None else dataclasses.replace(settings.synth, seed=seed)
    settings = dataclasses.replace(settings, demo=demo_cfg, synth=synth_cfg)
    card = run_demo(settings, out)
    typer.echo("\nnamesae demo scorecard (measured on the synthetic world, scored against its planted truth)")
    typer.echo(card.table())
    summary = card.to_dict()
    typer.echo(f"\n{summary['passed']} lines meet their target, {summary['failed']} miss; "
               f"total {summary['seconds'].get('total', 0):.0f} s")
    typer.echo(f"wrote {out / 'scorecard.json'}")
    if "report" in card.paths:
        typer.echo(f"report: {card.paths['report']}")

"""`namesae report`: the static HTML report and feature browser of a run."""

from __future__ import annotations

from pathlib import Path

import typer

from namesae.cli.options import progress_option


def report(
    run: Path = typer.Option(..., "--run", help="Run directory (e.g. runs/demo) holding identity.json, "
                             "features.json, scorecard.json, ... and optionally run.json naming them."),
    out: Path = typer.Option(None, "--out", help="Folder for the site (default: RUN/report). Replaced atomically."),
    max_feature_pages: int = typer.Option(2000, help="Write pages for at most this many features."),
    icons: int = typer.Option(0, "--icons", help="First draw (or reuse from the cache) up to N feature icons with "
                              "the decoder run.json records, as `namesae icons --icons N` does (0: show those "
                              "already drawn)."),
    progress: bool = progress_option("Show progress bars while drawing icons."),
) -> None:
    """Write a static HTML report (index, a page per name and per feature, plots) that opens from file://."""
    from namesae.report import build_report

    if icons > 0:
        from namesae.report.pictures import draw_run_pictures

        drawn = draw_run_pictures(run, icons=icons, progress=progress)
        typer.echo(f"icons: {len(drawn.icons.features)} feature icons in {drawn.seconds:.1f} s")

    result = build_report(run, out, max_feature_pages=max_feature_pages)
    typer.echo(f"report: {result.n_name_pages} name pages, {result.n_feature_pages} feature pages, "
               f"{len(result.plots)} plots")
    typer.echo(f"wrote {result.index}")

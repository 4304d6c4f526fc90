"""`namesae emergence`: when each name gains a dedicated feature along an ordered series, and its phase at each point."""

from __future__ import annotations

from pathlib import Path

import typer

from namesae.cli.options import TAU_P, TAU_R, device_option, progress_option


def emergence(
    series: Path = typer.Option(..., "--series", help="Series spec: a TOML/JSON file listing the points (store, "
                                "sae or a [train] config, axis value; see `namesae.emergence.series`), or a folder: "
                                "a synthetic world written by `namesae synth` (its progression/ checkpoints)."),
    out: Path = typer.Option(..., "--out", help="Folder for emergence.json/.csv, curves.csv, families.csv, plots "
                             "and the SAEs trained for points without one (out/saes/<label>)."),
    config: Path = typer.Option(None, "--config", help="TOML file: [emergence] (EmergenceConfig), "
                                "[emergence.phases] (phase thresholds), [train] (TrainConfig for points without an "
                                "SAE; overrides the spec's [train])."),
    truth: Path = typer.Option(None, "--truth", help="A synthetic world's truth.json (or its folder) to score "
                               "against (default: the spec's `truth`, or the world given as --series)."),
    frequencies: Path = typer.Option(None, "--frequencies", help="Name frequencies (CSV name,frequency or JSON "
                                     "{name: frequency}) for the emergence-against-frequency plot."),
    curve_name: list[str] = typer.Option(None, "--curve-name", help="A name to draw in the dedication-curve plot "
                                         "(repeat the option; default: names spread over emergence indices)."),
    tau_p: float = TAU_P, tau_r: float = TAU_R, progress: bool = progress_option(),
    device: str = device_option("for encoding with each point's SAE (points without an SAE are trained on their "
                                "[train] device)"),
) -> None:
    """Per name over an ordered series (CLIP checkpoints by samples seen, SAE dictionary sizes, SAE training steps):
    dedication curve (within each point's SAE), emergence index (first point from which it stays dedicated), change
    point of the curve, phase 1-4 at each point with the measures that decided it, and feature-family links between
    SAEs of one space. Writes emergence.json, emergence.csv (per name), curves.csv (per name and point),
    families.csv, dedication_curves.png, phase_map.png, emergence_vs_frequency.png and, with a truth, score.json."""
    import json

    from namesae.config import config_from, load_toml
    from namesae.devices import resolve_device
    from namesae.emergence import EmergenceConfig, load_frequencies, run_emergence, write_emergence
    from namesae.synth.score.emergence import load_series, score_emergence, truth_frequencies

    device = resolve_device(device)
    cfg = config_from(EmergenceConfig, "emergence", config, {"tau_p": tau_p, "tau_r": tau_r, "curve_names":
                      tuple(curve_name) if curve_name else None}, flags={"curve_names": "--curve-name"})
    train = load_toml(config).get("train") if config is not None else None  # a table: load_toml checks it
    spec = load_series(series, train=train)
    freqs = load_frequencies(frequencies) if frequencies is not None else truth_frequencies(spec)
    typer.echo(f"emergence: {len(spec.points)} points on axis '{spec.axis}' from {spec.source}")
    result = run_emergence(spec, cfg, out, frequencies=freqs, progress=progress, device=device)
    truth_path = truth if truth is not None else spec.truth
    score = score_emergence(result, truth_path) if truth_path is not None else None
    meta = {"series": str(series), "truth": str(truth_path) if truth_path is not None else None}
    paths = write_emergence(result, out, meta=meta, score=score)
    counts = result.counts()
    typer.echo(f"emergence: {len(result.names)} names; emerged at {json.dumps(counts['emerged_at'])}; never "
               f"{counts['never']}; phases at the last point {json.dumps(counts['final_phases'])}")
    for note in result.notes:
        typer.echo(f"note: {note}")
    if score is not None:
        keys = ("emergence_within_1", "no_emergence_compositional", "phase_agreement")
        typer.echo("score: " + ", ".join(f"{k} = {score[k]:.3f}" if score[k] is not None else f"{k} = n/a"
                                         for k in keys))
    from namesae.cli.options import record

    record(out / "emergence.json", "emergence")
    for path in paths.values():
        typer.echo(f"wrote {path}")

"""`namesae groups`: feature groups of one store row or of a name (its mean code), as a table or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from namesae.cli.options import SAE_DIR, SAE_STORE_HELP, config_option, device_option


def groups(
    sae: Path = SAE_DIR,
    store: Path = typer.Option(..., "--store", help=SAE_STORE_HELP + "."),
    row: int = typer.Option(None, "--row", help="Group the active features of this store row."),
    name: str = typer.Option(None, "--name", help="Group the mean code of this name's rows, with the stability "
                             "of each group across those rows."),
    kind: str = typer.Option(None, "--kind", help="With --name: use only rows of this kind (text or image)."),
    select: str = typer.Option(None, "--select", help="mass: largest k whose every group holds >= m-min of the "
                               "activation mass (the original method, default); concepts: then join groups whose "
                               "centroids have cosine >= join-cos (one group per concept)."),
    k_max: int = typer.Option(None, "--k-max", help="Largest k tried (default 20)."),
    m_min: float = typer.Option(None, "--m-min", help="Smallest mass share per group (default 0.05)."),
    join_cos: float = typer.Option(None, "--join-cos", help="select=concepts: join threshold (default 0.7)."),
    restarts: int = typer.Option(None, "--restarts", help="k-means++ restarts per k (default 3)."),
    seed: int = typer.Option(None, "--seed", help="Seed of the k-means++ draws (default 0)."),
    config: Path = config_option("[groups] section sets GroupConfig."),
    labels: Path = typer.Option(None, "--labels", help="features.json of `namesae features --vocab` (or a JSON "
                                "{feature id: label}); each group then reports its top label."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (fields documented in the README)."),
    centroids: bool = typer.Option(False, "--centroids", help="Include each group's centroid direction in JSON."),
    out: Path = typer.Option(None, "--out", help="Also write groups.json and groups.csv into this folder."),
    device: str = device_option("for the SAE's encoding and the batched k-means"),
) -> None:
    """Feature groups: activation-weighted spherical k-means over an embedding's active SAE features (unit
    decoder directions, weights f_j * |d_j|) for k = 1..k-max, keeping the largest k whose every group holds at
    least m-min of the mass; with --select concepts, groups with similar centroids are then joined. Each group
    reports its features, mass share, coherence (weighted mean cosine to its centroid) and top label."""
    from namesae.groups.run import run_groups

    result = run_groups(sae, store, row=row, name=name, kind=kind, config=config, labels=labels, device=device,
                        options={"select": select, "k_max": k_max, "m_min": m_min, "join_cos": join_cos,
                                 "restarts": restarts, "seed": seed})
    typer.echo(json.dumps(result.to_dict(centroids), indent=1) if as_json else result.table())
    if out is not None:
        result.save(out / "groups.json", centroids)
        result.save_csv(out / "groups.csv")
        from namesae.cli.options import record

        record(out / "groups.json", "groups", store=store, sae=sae)
        typer.echo(f"wrote {out / 'groups.json'}", err=as_json)
        typer.echo(f"wrote {out / 'groups.csv'}", err=as_json)

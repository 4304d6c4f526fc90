"""Report figures: matplotlib PNGs for the few large plots, tiny inline SVGs for the many per-page ones."""

from __future__ import annotations

import html
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PHASE_COLOURS = {0: "#d9d9d9", 1: "#9ecae1", 2: "#fdd0a2", 3: "#74c476", 4: "#de2d26"}


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Save a figure atomically as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def scatter_plot(
    x: np.ndarray,
    y: np.ndarray,
    path: Path,
    xlabel: str,
    ylabel: str,
    title: str,
    colour: np.ndarray | None = None,
    colour_label: str = "",
    highlight: np.ndarray | None = None,
    annotate: Sequence[str] | None = None,
    logx: bool = False,
) -> Path:
    """A labelled scatter of names (e.g. two rigidity measures, or dedication against frequency)."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    style = {"c": colour, "cmap": "viridis"} if colour is not None else {"color": "#3182bd"}
    points = ax.scatter(x, y, s=14, alpha=0.8, linewidths=0, **style)
    if colour is not None:
        fig.colorbar(points, ax=ax, label=colour_label)
    if highlight is not None and highlight.any():
        ax.scatter(x[highlight], y[highlight], s=40, facecolors="none", edgecolors="#de2d26",
                   linewidths=1.0, label="dedicated")
        ax.legend(loc="best", fontsize=8)
    if annotate is not None:
        # Label the extremes only: a thousand labels would be unreadable.
        order = np.argsort(np.asarray(y))
        for i in list(order[:4]) + list(order[-4:]):
            ax.annotate(annotate[i], (x[i], y[i]), fontsize=7, alpha=0.8)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def thumbnail_map(coords: np.ndarray, path: Path, title: str, thumbnails: dict[int, str],
                  colour: np.ndarray | None = None, colour_label: str = "", categorical: bool = False,
                  zoom_px: int = 28) -> Path:
    """A 2-D map of names (t-SNE coordinates [n, 2]) with small images at some points ({index: png path})."""
    plt = _figure()
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage
    from PIL import Image

    fig, ax = plt.subplots(figsize=(7.5, 6.0))
    if colour is None:
        points = ax.scatter(coords[:, 0], coords[:, 1], s=12, color="#3182bd", alpha=0.7, linewidths=0)
    else:
        points = ax.scatter(coords[:, 0], coords[:, 1], s=14, c=colour, cmap="tab20" if categorical else "viridis",
                            alpha=0.8, linewidths=0)
        if not categorical:
            fig.colorbar(points, ax=ax, label=colour_label)
    for i, image_path in thumbnails.items():
        try:
            with Image.open(image_path) as img:
                thumb = np.asarray(img.convert("RGB").resize((zoom_px, zoom_px)))
        except (OSError, ValueError) as err:  # not an image, truncated, or unreadable: leave the point bare
            log.warning("%s: not a readable image (%s); no thumbnail for it", image_path, err)
            continue
        ax.add_artist(AnnotationBbox(OffsetImage(thumb, zoom=1.0), (coords[i, 0], coords[i, 1]), frameon=True,
                                     pad=0.1))
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_title(title)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def phase_map(names: Sequence[str], axis_values: Sequence[float], phases: np.ndarray, path: Path,
              axis_label: str = "checkpoint", max_names: int = 80) -> Path:
    """Names x series heat map coloured by phase (1-4; 0 = unknown)."""
    plt = _figure()
    from matplotlib.colors import ListedColormap

    phases = np.asarray(phases)[:max_names]
    names = list(names)[:max_names]
    cmap = ListedColormap([PHASE_COLOURS[i] for i in range(5)])
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * len(axis_values), 1.0 + 0.16 * len(names)))
    ax.imshow(phases, cmap=cmap, vmin=0, vmax=4, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(names)), names, fontsize=6)
    ax.set_xticks(range(len(axis_values)), [f"{v:g}" for v in axis_values], fontsize=7, rotation=45)
    ax.set_xlabel(axis_label)
    handles = [plt.Rectangle((0, 0), 1, 1, color=PHASE_COLOURS[i]) for i in range(1, 5)]
    ax.legend(handles, ["1 parts", "2 attributes", "3 identity", "4 overfit"], fontsize=7,
              loc="upper left", bbox_to_anchor=(1.0, 1.0))
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def svg_histogram(values: np.ndarray, bins: int = 24, width: int = 320, height: int = 90) -> str:
    """An inline SVG histogram (a few hundred bytes; fast enough for thousands of pages)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return '<svg width="%d" height="%d"><text x="4" y="20" font-size="11">no activations</text></svg>' % (
            width, height)
    counts, edges = np.histogram(values, bins=bins)
    top = max(int(counts.max()), 1)
    bar = width / bins
    rects = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - 14 - (c / top) * (height - 20):.1f}" width="{bar - 1:.1f}" '
        f'height="{(c / top) * (height - 20):.1f}" fill="#3182bd"><title>{edges[i]:.3g}-{edges[i + 1]:.3g}: {c}'
        "</title></rect>"
        for i, c in enumerate(counts)
    )
    axis = (f'<text x="0" y="{height - 2}" font-size="10">{edges[0]:.3g}</text>'
            f'<text x="{width}" y="{height - 2}" font-size="10" text-anchor="end">{edges[-1]:.3g}</text>')
    return f'<svg width="{width}" height="{height}" role="img">{rects}{axis}</svg>'


def svg_curve(xs: Sequence[float], ys: Sequence[float], width: int = 320, height: int = 110,
              marker: float | None = None) -> str:
    """An inline SVG line chart of y over x (y in [0, 1]), with an optional vertical marker."""
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.clip(np.nan_to_num(np.asarray(ys, dtype=np.float64)), 0, 1)
    if xs.size == 0:
        return ""
    span = (xs.max() - xs.min()) or 1.0
    px = 20 + (xs - xs.min()) / span * (width - 30)
    py = height - 15 - ys * (height - 25)
    line = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py))
    dots = "".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="#de2d26"><title>{x:g}: {y:.3f}</title>'
                   "</circle>" for a, b, x, y in zip(px, py, xs, ys))
    mark = ""
    if marker is not None:
        mx = 20 + (marker - xs.min()) / span * (width - 30)
        mark = f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="5" y2="{height - 15}" stroke="#999" stroke-dasharray="3"/>'
    frame = (f'<line x1="20" x2="{width - 10}" y1="{height - 15}" y2="{height - 15}" stroke="#444"/>'
             f'<text x="0" y="14" font-size="10">1</text><text x="0" y="{height - 12}" font-size="10">0</text>')
    return (f'<svg width="{width}" height="{height}" role="img">{frame}{mark}'
            f'<polyline points="{html.escape(line)}" fill="none" stroke="#de2d26"/>{dots}</svg>')

"""Report figures: matplotlib PNGs for the few large plots, tiny inline SVGs for the many per-page ones."""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from namesae.io import atomic_file

log = logging.getLogger(__name__)

def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Save a figure atomically as PNG."""
    with atomic_file(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
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
    if logx:
        ax.set_xscale("log")
    if annotate is not None:
        place_labels(fig, ax, np.asarray(x, dtype=float), np.asarray(y, dtype=float), list(annotate))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def place_labels(fig: Any, ax: Any, x: np.ndarray, y: np.ndarray, labels: list[str], max_labels: int = 24) -> int:
    """Label points without overlap: extremes first (of y, then x), each label kept only when its box touches no
    label already placed; returns how many were placed (the rest are in the report's tables)."""
    order: list[int] = []
    for idx in (np.argsort(y), np.argsort(x)):
        for pair in zip(idx, idx[::-1]):
            order.extend(int(i) for i in pair if int(i) not in order)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed: list[Any] = []
    for i in order:
        if len(placed) == max_labels:
            break
        text = ax.annotate(labels[i], (x[i], y[i]), xytext=(3, 3), textcoords="offset points", fontsize=7,
                           alpha=0.85)
        box = text.get_window_extent(renderer).expanded(1.05, 1.15)
        if any(box.overlaps(other) for other in placed) or not ax.bbox.contains(box.x0, box.y0):
            text.remove()
        else:
            placed.append(box)
    return len(placed)


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


def svg_curve(xs: Sequence[float], ys: Sequence[float], width: int = 360, height: int = 150,
              marker: float | None = None, x_label: str = "", y_label: str = "",
              threshold: float | None = None) -> str:
    """An inline SVG line chart of y over x (y in [0, 1]) with both axes, their ticks and labels, an optional
    vertical marker at x = `marker` and a dashed horizontal line at y = `threshold` (the dedication threshold).
    Points where y is NaN (not measured) are left out of the line."""
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    if xs.size == 0:
        return ""
    left, right, top, bottom = 34, 10, 8, 34  # margins: room for tick labels and the axis labels
    span = (xs.max() - xs.min()) or 1.0

    def px(x: float) -> float:
        return left + (x - xs.min()) / span * (width - left - right)

    def py(y: float) -> float:
        return height - bottom - float(np.clip(y, 0, 1)) * (height - top - bottom)

    ok = np.isfinite(ys)
    line = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(xs[ok], ys[ok]))
    dots = "".join(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="#de2d26"><title>{x:g}: {y:.3f}'
                   "</title></circle>" for x, y in zip(xs[ok], ys[ok]))
    mark = ""
    if marker is not None and np.isfinite(marker):
        mark = (f'<line x1="{px(marker):.1f}" x2="{px(marker):.1f}" y1="{top}" y2="{height - bottom}" '
                'stroke="#999" stroke-dasharray="3"/>')
    if threshold is not None and np.isfinite(threshold):
        mark += (f'<line class="threshold" x1="{left}" x2="{width - right}" y1="{py(threshold):.1f}" '
                 f'y2="{py(threshold):.1f}" stroke="#3182bd" stroke-dasharray="4 2"><title>dedication threshold '
                 f'tau_p x tau_r = {threshold:.2f}</title></line>'
                 f'<text x="{width - right}" y="{py(threshold) - 3:.1f}" font-size="9" text-anchor="end" '
                 f'fill="#3182bd">threshold {threshold:.2f}</text>')
    x0, y0 = left, height - bottom
    ticks = "".join(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{y0}" y2="{y0 + 3}" stroke="#444"/>'
                    for x in xs)
    ticks += "".join(f'<text x="{px(x):.1f}" y="{y0 + 13}" font-size="9" text-anchor="middle">{x:g}</text>'
                     for x in (xs.min(), xs.max()))
    ticks += "".join(f'<line x1="{x0 - 3}" x2="{x0}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#444"/>'
                     f'<text x="{x0 - 5}" y="{py(y) + 3:.1f}" font-size="9" text-anchor="end">{y:g}</text>'
                     for y in (0, 0.5, 1))
    frame = (f'<line x1="{x0}" x2="{width - right}" y1="{y0}" y2="{y0}" stroke="#444"/>'
             f'<line x1="{x0}" x2="{x0}" y1="{top}" y2="{y0}" stroke="#444"/>')
    labels = (f'<text x="{(x0 + width - right) / 2:.1f}" y="{height - 4}" font-size="10" text-anchor="middle">'
              f'{html.escape(x_label)}</text>'
              f'<text x="10" y="{(top + y0) / 2:.1f}" font-size="10" text-anchor="middle" '
              f'transform="rotate(-90 10 {(top + y0) / 2:.1f})">{html.escape(y_label)}</text>')
    return (f'<svg class="curve" width="{width}" height="{height}" role="img">{frame}{ticks}{labels}{mark}'
            f'<polyline points="{html.escape(line)}" fill="none" stroke="#de2d26"/>{dots}</svg>')

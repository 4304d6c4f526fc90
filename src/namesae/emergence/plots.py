"""Emergence figures (matplotlib, Agg): dedication curves, the phase map, emergence index against frequency."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from namesae.emergence.result import EmergenceResult
from namesae.io import atomic_file

PHASE_COLOURS = {0: "#d9d9d9", 1: "#9ecae1", 2: "#fdd0a2", 3: "#74c476", 4: "#de2d26"}
PHASE_LABELS = {0: "undecided / missing", 1: "1 name parts", 2: "2 attributes stable", 3: "3 identity stable",
                4: "4 overfit"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Save a figure as PNG atomically and close it."""
    path = Path(path)
    try:
        with atomic_file(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return path


def _log_axis(values: Sequence[float]) -> bool:
    v = np.asarray(values, dtype=float)
    return bool(v.size >= 3 and (v > 0).all() and v[-1] / v[0] >= 100)


def default_curve_names(result: EmergenceResult, k: int) -> list[str]:
    """Up to k names spread over emergence indices (earliest first), then names that never emerge."""
    by_index: dict[int, list[str]] = {}
    for n in result.names:
        if n.emergence_index is not None:
            by_index.setdefault(n.emergence_index, []).append(n.name)
    picked: list[str] = []
    pools = [sorted(v) for _, v in sorted(by_index.items())]
    while len(picked) < k and any(pools):
        for pool in pools:
            if pool and len(picked) < k:
                picked.append(pool.pop(0))
    never = sorted(n.name for n in result.names if n.emergence_index is None)
    picked += never[:max(0, min(2, k - len(picked)))]
    return picked


def plot_dedication_curves(result: EmergenceResult, path: str | Path, names: Sequence[str] | None = None,
                           max_names: int = 12, tau: float | None = None) -> Path:
    """Dedication of chosen names at each point (markers: filled = dedicated), emergence marked by a star."""
    plt = _pyplot()
    table = result.by_name()
    names = [n for n in (names or default_curve_names(result, max_names)) if n in table][:max_names]
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    x = np.asarray(result.values, dtype=float)
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(names), 1)))
    for colour, name in zip(colours, names):
        row = table[name]
        y = np.array([np.nan if d is None else d for d in row.dedication])
        ax.plot(x, y, "-", color=colour, lw=1.3, label=name)
        ded = np.array([bool(d) for d in row.dedicated])
        ax.scatter(x[ded], y[ded], color=colour, s=22, zorder=3)
        ax.scatter(x[~ded], y[~ded], facecolors="none", edgecolors=colour, s=22, zorder=3)
        if row.emergence_index is not None:
            i = row.emergence_index
            ax.scatter([x[i]], [y[i]], marker="*", s=110, color=colour, edgecolors="k", linewidths=0.5, zorder=4)
    if tau is not None:
        ax.axhline(tau, color="#888", ls=":", lw=1, label=f"tau_p·tau_r = {tau:.2f}")
    if _log_axis(x):
        ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(result.axis)
    ax.set_ylabel("dedication = max_j precision·recall")
    ax.set_title("Dedication curves (filled: dedicated; star: emergence)")
    if names:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, Path(path))


def map_names(result: EmergenceResult, max_names: int) -> list[str]:
    """Names of the phase map: most dedicated at the last point first, then alphabetical; at most max_names."""
    def key(n):
        final = n.dedication[-1] if n.dedication and n.dedication[-1] is not None else -1.0
        first = n.emergence_index if n.emergence_index is not None else len(result.labels)
        return (first, -final, n.name)
    return [n.name for n in sorted(result.names, key=key)][:max_names]


def plot_phase_map(result: EmergenceResult, path: str | Path, names: Sequence[str] | None = None,
                   max_names: int = 200) -> Path:
    """Names x series heat map coloured by phase (grey: undecided or name missing at that point)."""
    plt = _pyplot()
    from matplotlib.colors import ListedColormap

    names = list(names) if names is not None else map_names(result, max_names)
    phases = result.phase_matrix(names)
    height = 1.2 + 0.13 * max(len(names), 1)
    fig, ax = plt.subplots(figsize=(2.2 + 0.55 * len(result.labels), min(height, 60)))
    cmap = ListedColormap([PHASE_COLOURS[i] for i in range(5)])
    ax.imshow(phases if phases.size else np.zeros((1, len(result.labels))), cmap=cmap, vmin=0, vmax=4,
              aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(names)), names, fontsize=5 if len(names) > 60 else 7)
    ax.set_xticks(range(len(result.labels)), [f"{lab}\n{v:g}" for lab, v in zip(result.labels, result.values)],
                  fontsize=7, rotation=45)
    ax.set_xlabel(result.axis)
    handles = [plt.Rectangle((0, 0), 1, 1, color=PHASE_COLOURS[i]) for i in range(5)]
    ax.legend(handles, [PHASE_LABELS[i] for i in range(5)], fontsize=7, loc="upper left",
              bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Phase of each name at each point")
    return _save(fig, Path(path))


def plot_emergence_vs_frequency(result: EmergenceResult, path: str | Path) -> Path | None:
    """Emergence index of each name against its frequency (log x); names that never emerge drawn above the axis."""
    rows = [n for n in result.names if n.frequency is not None and n.frequency > 0]
    if not rows:
        return None
    plt = _pyplot()
    t = len(result.labels)
    freq = np.array([n.frequency for n in rows])
    index = np.array([t if n.emergence_index is None else n.emergence_index for n in rows], dtype=float)
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, size=index.size)
    never = index == t
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.scatter(freq[~never], index[~never] + jitter[~never], s=14, color="#3182bd", alpha=0.8, label="emerges")
    ax.scatter(freq[never], index[never] + jitter[never], s=10, color="#bbbbbb", alpha=0.6, label="never")
    ax.set_xscale("log")
    ax.set_yticks(range(t + 1), [f"{lab}" for lab in result.labels] + ["never"], fontsize=7)
    ax.set_xlabel("name frequency")
    ax.set_ylabel(f"emergence index ({result.axis})")
    ax.set_title("Emergence against name frequency")
    ax.legend(fontsize=7, loc="best")
    return _save(fig, Path(path))

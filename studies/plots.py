"""Figure helpers: one look for every study, PNG and SVG side by side."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no screen needed
import matplotlib.pyplot as plt  # noqa: E402


def figure(rows: int = 1, cols: int = 1, size=(7, 4), **kw):
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, **kw)
    flat = axes.ravel().tolist()
    return fig, flat if len(flat) > 1 else flat[0]


def save(fig, out: Path, name: str) -> list[str]:
    """Write ``name``.png and ``name``.svg into ``out``; returns the file names."""
    fig.tight_layout()
    names = []
    for ext in ("png", "svg"):
        path = Path(out) / f"{name}.{ext}"
        fig.savefig(path, dpi=130)
        names.append(path.name)
    plt.close(fig)
    return names


def bars(ax, labels, means, spreads, ylabel: str, title: str) -> None:
    """Bars of means with +- one standard deviation over runs."""
    ax.bar(range(len(labels)), means, yerr=spreads, capsize=4, color="tab:blue",
           alpha=0.8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)

"""Figure helpers: one look for every study, PNG and SVG side by side.

Figures are ``matplotlib.figure.Figure`` objects drawn on an Agg canvas, never through
pyplot: importing aggregame.studies changes no global matplotlib state (a notebook
keeps its backend), and nothing is left open in pyplot's figure registry.
"""

from __future__ import annotations

from pathlib import Path

from aggregame.studies.files import atomic_write


def figure(rows: int = 1, cols: int = 1, size=(7, 4), **kw):
    """A new figure with an Agg canvas and its axes (one, or a flat list)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, **kw)
    flat = axes.ravel().tolist()
    return fig, flat if len(flat) > 1 else flat[0]


def save(fig, out: Path, name: str) -> list[str]:
    """Write ``name``.png and ``name``.svg into ``out``, each atomically; returns the
    file names."""
    fig.tight_layout()
    names = []
    for ext in ("png", "svg"):
        path = Path(out) / f"{name}.{ext}"
        atomic_write(path, lambda p, ext=ext: fig.savefig(p, format=ext, dpi=130))
        names.append(path.name)
    return names


def bars(ax, labels, means, spreads, ylabel: str, title: str) -> None:
    """Bars of means with +- one standard deviation over runs."""
    ax.bar(range(len(labels)), means, yerr=spreads, capsize=4, color="tab:blue",
           alpha=0.8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)

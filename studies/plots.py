"""Figure helpers: one look for every study, PNG and SVG side by side, bit for bit.

Figures are ``matplotlib.figure.Figure`` objects drawn on an Agg canvas, never through
pyplot: importing aggregame.studies changes no global matplotlib state (a notebook
keeps its backend), and nothing is left open in pyplot's figure registry.

The same data give the same files: SVG would otherwise carry the date it was written
and clip-path ids drawn from a random salt, so :func:`save` writes it with no date and
a fixed ``svg.hashsalt`` (set for that call only, through ``rc_context``); PNG
carries neither.
"""

from __future__ import annotations

from pathlib import Path

from aggregame.studies.files import atomic_write

#: The salt of SVG element ids: fixed, so identical figures give identical files.
SVG_HASH_SALT = "aggregame"


def figure(rows: int = 1, cols: int = 1, size=(7, 4), **kw):
    """A new figure with an Agg canvas and its axes (one, or a flat list)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, **kw)
    flat = axes.ravel().tolist()
    return fig, flat if len(flat) > 1 else flat[0]


def _write(fig, path: Path, ext: str) -> None:
    import matplotlib

    metadata = {"Date": None} if ext == "svg" else {"Software": None}
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASH_SALT}):
        fig.savefig(path, format=ext, dpi=110, metadata=metadata)


def save(fig, out: Path, name: str) -> list[str]:
    """Write ``name``.png and ``name``.svg into ``out``, each atomically; returns the
    file names."""
    fig.tight_layout()
    names = []
    for ext in ("png", "svg"):
        path = Path(out) / f"{name}.{ext}"
        atomic_write(path, lambda p, ext=ext: _write(fig, p, ext))
        names.append(path.name)
    return names


def title(fig, text: str, domain: str) -> None:
    """The figure's title: what it shows, and the domain it was computed in."""
    fig.suptitle(f"{text}\n{domain}", fontsize=9)


def bars(ax, labels, means, spreads, ylabel: str, title: str = "") -> None:
    """Bars of means with +- one standard deviation over runs."""
    ax.bar(range(len(labels)), means, yerr=spreads, capsize=4, color="tab:blue",
           alpha=0.8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)

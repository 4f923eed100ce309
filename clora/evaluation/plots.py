"""PNG charts of a report: an accuracy-matrix heatmap and grouped bars per method and mode.

Figures are drawn on their own Agg canvas (``matplotlib.figure.Figure``), never through
``pyplot``: clora changes no matplotlib backend or other global state of the caller's
process, at import or when it draws.
"""

from __future__ import annotations

from pathlib import Path


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def heatmap(path: Path, tasks: list[str], matrix: list[list[float]], title: str) -> None:
    """The accuracy matrix (rows: after task j; columns: task i) with the values printed in percent."""
    fig = heatmap_figure(tasks, matrix, title)
    fig.savefig(path, dpi=100)


def heatmap_figure(tasks: list[str], matrix: list[list[float]], title: str):
    """The heatmap's figure; cells and colour bar both in percent."""
    size = max(4.0, 1.1 * len(tasks) + 1.5)
    fig = _figure(size, size * 0.85)
    ax = fig.add_subplot()
    # in percent, as the cells are printed and the colour bar reads; not evaluated: left blank
    values = [[float("nan") if x is None else 100 * x for x in row] for row in matrix]
    image = ax.imshow(values, vmin=0.0, vmax=100.0, cmap="viridis")
    ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right")
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xlabel("evaluated on task")
    ax.set_ylabel("after training task")
    ax.set_title(title)
    for j, row in enumerate(matrix):
        for i, value in enumerate(row):
            if value is not None:
                ax.text(i, j, f"{100 * value:.0f}", ha="center", va="center",
                        color="white" if value < 0.6 else "black", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="accuracy (%)")
    fig.tight_layout()
    return fig


def grouped_bars(path: Path, bars: dict[str, dict[str, tuple[float, float | None]]], title: str,
                 ylabel: str = "average accuracy (%)") -> None:
    """One group per method, one bar per mode; ``bars[method][mode] = (value %, sd % or None)``.

    A method without a mode (mtl and seq have no routed mode) leaves a gap, not an error;
    an sd becomes an error bar.
    """
    methods = list(bars)
    modes = list(dict.fromkeys(mode for row in bars.values() for mode in row))
    fig = _figure(max(5.0, 1.2 * len(methods) + 2), 4)
    ax = fig.add_subplot()
    width = 0.8 / len(modes)
    for k, mode in enumerate(modes):
        have = [i for i, m in enumerate(methods) if mode in bars[m]]
        values = [bars[methods[i]][mode] for i in have]
        errors = [sd for _, sd in values] if all(sd is not None for _, sd in values) else None
        drawn = ax.bar([i + k * width for i in have], [v for v, _ in values], width, label=mode, yerr=errors, capsize=3)
        ax.bar_label(drawn, fmt="%.0f", fontsize=8, padding=4 if errors else 0)
    ax.set_xticks([i + width * (len(modes) - 1) / 2 for i in range(len(methods))], methods)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)

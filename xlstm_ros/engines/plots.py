"""Pictures of forecasts: fan charts of quantile forecasts with the history and, when known, the actuals.

Used by `xlstm-ros forecast --plot` and by the demo. matplotlib runs with the non-interactive Agg backend.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fan_chart(ax, history_x: np.ndarray, history: np.ndarray, forecast_x: np.ndarray, quantiles: np.ndarray,
              levels: Sequence[float], actual_x: np.ndarray | None = None, actual: np.ndarray | None = None,
              title: str = "", unit: str = "") -> None:
    """Draw history, nested quantile bands (outer lightest), the median, and optional actual values."""
    levels = list(levels)
    ax.plot(history_x, history, color="0.25", linewidth=1.0, label="observed")
    pairs = [(j, len(levels) - 1 - j) for j in range(len(levels) // 2)]
    for rank, (low, high) in enumerate(pairs):
        ax.fill_between(forecast_x, quantiles[:, low], quantiles[:, high], color="tab:blue",
                        alpha=0.12 + 0.1 * rank, linewidth=0,
                        label=f"{levels[low]:.0%}-{levels[high]:.0%}" if rank == 0 else None)
    if 0.5 in levels:
        ax.plot(forecast_x, quantiles[:, levels.index(0.5)], color="tab:blue", linewidth=1.5, label="median")
    if actual is not None and actual_x is not None:
        ax.plot(actual_x, actual, color="tab:red", linewidth=1.0, label="actual")
    ax.set_title(title, fontsize=10)
    if unit:
        ax.set_ylabel(unit)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def fan_chart_grid(path: str | Path, panels: Sequence[dict], columns: int = 2, dpi: int = 110) -> Path:
    """Write one figure with a fan chart per panel (each panel holds fan_chart's keyword arguments)."""
    plt = _pyplot()
    rows = max(1, -(-len(panels) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(6.2 * columns, 3.2 * rows), squeeze=False)
    for ax, panel in zip(axes.ravel(), panels):
        fan_chart(ax, **panel)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path

"""Forecast the series of a CSV file offline (`xlstm-ros forecast`), with the official TiRex computation.

Input: numeric columns are series, rows are time steps, empty cells (or NA/NaN) are missing; a first
column that is not numeric holds timestamps; a first row that is not numeric holds the names. Trailing
empty cells of a column are dropped, so each series is forecast from its own last row. The whole column
is the context (the model keeps the last train_ctx_len samples, as the official one does).
Output: `series,step,median,q0.1,...,q0.9`, one row per series and step 1..horizon.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from xlstm_ros.models.tirex import TiRex

MISSING = {"", "na", "nan", "n/a", "null", "none"}


class CsvFormatError(ValueError):
    """The CSV cannot be read as series; the message names the file, column and row."""


@dataclass
class SeriesTable:
    names: list[str]
    series: list[np.ndarray]     # one float64 array per column, trailing missing values dropped
    timestamps: list[str] | None


def _number(text: str) -> float | None:
    """float of a cell, NaN for a missing cell, None when it is not a number."""
    stripped = text.strip()
    if stripped.lower() in MISSING:
        return math.nan
    try:
        return float(stripped)
    except ValueError:
        return None


def read_series_csv(path: str | Path) -> SeriesTable:
    """Read a CSV of series (see the module docstring)."""
    path = Path(path)
    try:
        rows = [row for row in csv.reader(io.StringIO(path.read_text())) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CsvFormatError(f"{path}: cannot read CSV: {error}") from error
    if not rows:
        raise CsvFormatError(f"{path}: the file has no rows")
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    has_header = any(_number(cell) is None for cell in rows[0][1:]) or (
        width == 1 and _number(rows[0][0]) is None)
    header = rows[0] if has_header else [f"series_{j}" for j in range(width)]
    body = rows[1:] if has_header else rows
    if not body:
        raise CsvFormatError(f"{path}: no data rows after the header")
    first_is_time = width > 1 and any(_number(row[0]) is None for row in body)
    names, series = [], []
    for column in range(1 if first_is_time else 0, width):
        values = []
        for row_number, row in enumerate(body, start=2 if has_header else 1):
            value = _number(row[column])
            if value is None:
                raise CsvFormatError(f"{path}: column '{header[column]}' is not numeric "
                                     f"(row {row_number}: {row[column]!r})")
            values.append(value if math.isfinite(value) else math.nan)
        array = np.asarray(values, dtype=np.float64)
        observed = np.flatnonzero(~np.isnan(array))
        names.append(header[column].strip() or f"series_{column}")
        series.append(array[:observed[-1] + 1] if observed.size else array[:0])
    empty = [name for name, values in zip(names, series) if values.size == 0]
    if empty:
        raise CsvFormatError(f"{path}: column(s) {empty} have no values")
    return SeriesTable(names, series, [row[0] for row in body] if first_is_time else None)


def forecast_table(model: TiRex, table: SeriesTable, horizon: int):
    """The model's forecast (official rollout) of every series: TiRexForecast with (B, H, Q) quantiles."""
    return model.forecast([values.astype(np.float32) for values in table.series], horizon)


def write_forecast_csv(out: TextIO, names: list[str], quantiles: np.ndarray, median: np.ndarray,
                       levels) -> None:
    """`series,step,median,q0.1,...` rows; quantiles (B, H, Q), median (B, H)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["series", "step", "median", *[f"q{level:g}" for level in levels]])
    for name, series_quantiles, series_median in zip(names, quantiles, median):
        for step, (m, row) in enumerate(zip(series_median, series_quantiles), start=1):
            writer.writerow([name, step, f"{m:.9g}", *[f"{q:.9g}" for q in row]])


def plot_forecasts(path: str | Path, table: SeriesTable, quantiles: np.ndarray, levels,
                   history: int = 256, max_series: int = 12) -> Path:
    """Fan charts of the first `max_series` series, with the last `history` observations."""
    from xlstm_ros.engines.plots import fan_chart_grid

    panels = []
    for name, values, series_quantiles in list(zip(table.names, table.series, quantiles))[:max_series]:
        n = values.size
        shown = values[-history:]
        panels.append(dict(history_x=np.arange(n - shown.size, n), history=shown,
                           forecast_x=np.arange(n, n + series_quantiles.shape[0]), quantiles=series_quantiles,
                           levels=levels, title=name))
    return fan_chart_grid(path, panels)

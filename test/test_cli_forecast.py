"""`xlstm-ros forecast`: CSV in, CSV out, equal to the official tirex-ts forecasts for an official checkpoint."""
import csv
import io
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
import tirex.models.tirex as tirex_official  # tirex-ts==1.4.2, a test-only dependency

from support_tirex import SMALL_CONFIG, randomize_tirex_parameters  # noqa: E402
from xlstm_ros.cli import main  # noqa: E402
from xlstm_ros.engines.csv_forecast import CsvFormatError, read_series_csv  # noqa: E402


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """tirex-ts TiRexZero with seeded random weights, saved in the official format."""
    torch.set_num_threads(1)
    hyper = SMALL_CONFIG.to_hyper_parameters()
    model = tirex_official.TiRexZero(backend="torch", model_config=hyper["model_config"],
                                     train_ctx_len=hyper["train_ctx_len"])
    randomize_tirex_parameters(model, seed=5)
    path = tmp_path_factory.mktemp("official") / "TiRex" / "model.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hyper}, path)
    return model.eval(), path


def write_csv(path: Path, length=300) -> dict[str, np.ndarray]:
    """A CSV with a timestamp column, a gap, an NA cell and a shorter (ragged) column."""
    t = np.arange(length)
    columns = {"voltage": 16 - 0.002 * t + 0.05 * np.sin(t / 5), "temperature": 30 + 3 * np.sin(2 * np.pi * t / 48)}
    columns["voltage"][40:60] = np.nan
    short = np.full(length, np.nan)
    short[:200] = np.cumsum(np.random.default_rng(0).normal(size=200))
    columns["walk"] = short
    with open(path, "w") as out:
        out.write("time,voltage,temperature,walk\n")
        for k in range(length):
            cells = ["" if np.isnan(columns[c][k]) else repr(float(columns[c][k])) for c in columns]
            if k == 77:
                cells[1] = "NA"
            out.write(f"2026-11-29T{k // 3600:02d}:{k // 60 % 60:02d}:{k % 60:02d}," + ",".join(cells) + "\n")
    return {name: values[: 200 if name == "walk" else length] for name, values in columns.items()}


def read_output(text: str):
    rows = list(csv.DictReader(io.StringIO(text)))
    return rows


def test_forecast_csv_equals_official_model(official, tmp_path, capsys):
    model, checkpoint = official
    data = tmp_path / "data.csv"
    columns = write_csv(data)
    assert main(["forecast", str(data), "--horizon", "40", "--checkpoint", str(checkpoint)]) == 0
    rows = read_output(capsys.readouterr().out)
    assert list(rows[0]) == ["series", "step", "median"] + [f"q0.{k}" for k in range(1, 10)]
    assert len(rows) == 3 * 40 and [r["step"] for r in rows[:3]] == ["1", "2", "3"]

    contexts = [torch.tensor(np.where(np.arange(len(v)) == 77, np.nan, v), dtype=torch.float32)
                if name == "temperature" else torch.tensor(v, dtype=torch.float32) for name, v in columns.items()]
    quantiles, mean = model.forecast(contexts, prediction_length=40)
    for index, name in enumerate(columns):
        ours = [r for r in rows if r["series"] == name]
        got = np.array([[float(r[f"q0.{k}"]) for k in range(1, 10)] for r in ours], dtype=np.float32)
        np.testing.assert_array_equal(got, quantiles[index].numpy())  # 9 significant digits = float32 exact
        np.testing.assert_array_equal(np.array([float(r["median"]) for r in ours], np.float32), mean[index].numpy())


def test_forecast_to_file_with_plot_through_the_entry_point(official, tmp_path):
    _, checkpoint = official
    data = tmp_path / "data.csv"
    write_csv(data)
    out, plot = tmp_path / "out" / "forecast.csv", tmp_path / "fan.png"
    run = subprocess.run([str(Path(sys.executable).parent / "xlstm-ros"), "forecast", str(data), "--horizon", "8",
                          "--checkpoint", str(checkpoint), "--out", str(out), "--plot", str(plot)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert len(read_output(out.read_text())) == 3 * 8
    assert plot.stat().st_size > 10_000


def test_headerless_numeric_csv(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("1,2\n3,\n5,6\n")
    table = read_series_csv(path)
    assert table.names == ["series_0", "series_1"] and table.timestamps is None
    np.testing.assert_array_equal(table.series[0], [1, 3, 5])
    assert math.isnan(table.series[1][1]) and table.series[1][2] == 6


@pytest.mark.parametrize("text, message", [
    ("a,b\n1,x\n", "column 'b' is not numeric \\(row 2: 'x'\\)"),
    ("a,b\n", "no data rows"),
    ("a,b\n1,\n2,\n", "column\\(s\\) \\['b'\\] have no values"),
])
def test_bad_csv_gives_a_clear_error(tmp_path, text, message, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(CsvFormatError, match=message):
        read_series_csv(path)
    assert main(["forecast", str(path), "--checkpoint", str(tmp_path / "none.ckpt")]) == 2
    assert "error:" in capsys.readouterr().err


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "ok.csv"
    path.write_text("a\n1\n2\n")
    assert main(["forecast", str(path), "--checkpoint", str(tmp_path / "missing.ckpt")]) == 2
    assert "missing.ckpt: checkpoint file does not exist" in capsys.readouterr().err

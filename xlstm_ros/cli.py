"""The `xlstm-ros` command: the package's offline and demo faces (thin: the work is in the library).

  xlstm-ros demo                        the synthetic drone flight through the real nodes (README)
  xlstm-ros forecast data.csv ...       forecast the series of a CSV file
  xlstm-ros depth IMAGE_OR_FOLDER ...   depth maps of images
  xlstm-ros play BAG ...                replay a bag through the depth and forecaster nodes
  xlstm-ros train forecaster|depth ...  train the models
  xlstm-ros eval forecaster|depth ...   evaluate them against baselines
Each subcommand imports what it needs when it runs, so `--help` is quick.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, for example 256x320, got {text!r}") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return height, width


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


# ------------------------------------------------------------------------------------------- forecast

def _add_forecast(sub) -> None:
    p = sub.add_parser("forecast", help="forecast the numeric columns of a CSV file",
                       description="Forecast every numeric column of a CSV (rows are time steps, empty cells are "
                                   "missing, a non-numeric first column is taken as timestamps).")
    p.add_argument("csv", type=Path, help="input CSV")
    p.add_argument("--horizon", type=_positive_int, default=64, help="steps to forecast (default 64)")
    p.add_argument("--checkpoint", type=Path, help="TiRex checkpoint (official model.ckpt format); "
                                                  "default: the shipped model")
    p.add_argument("--out", type=Path, help="output CSV (default: standard output)")
    p.add_argument("--plot", type=Path, help="write fan charts to this PNG")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--precision", choices=("bf16-compatible", "fp32"), default="bf16-compatible",
                   help="bf16-compatible reproduces the official TiRex torch backend exactly (default)")
    p.set_defaults(run=_run_forecast)


def _run_forecast(args) -> int:
    from xlstm_ros.engines.csv_forecast import forecast_table, plot_forecasts, read_series_csv, write_forecast_csv
    from xlstm_ros.engines.device import select_backend, select_device
    from xlstm_ros.engines.forecaster import DEFAULT_CHECKPOINT
    from xlstm_ros.models.tirex import load_tirex_checkpoint

    table = read_series_csv(args.csv)
    device = select_device(args.device)
    model = load_tirex_checkpoint(args.checkpoint or DEFAULT_CHECKPOINT, precision=args.precision,
                                  backend=select_backend("auto", device), device=device)
    result = forecast_table(model, table, args.horizon)
    quantiles, median = result.quantiles.cpu().numpy(), result.median.cpu().numpy()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="") as out:
            write_forecast_csv(out, table.names, quantiles, median, result.levels)
        print(f"wrote {args.out} ({len(table.names)} series x {args.horizon} steps)", file=sys.stderr)
    else:
        write_forecast_csv(sys.stdout, table.names, quantiles, median, result.levels)
    if args.plot:
        print(f"wrote {plot_forecasts(args.plot, table, quantiles, result.levels)}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlstm-ros", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_forecast(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        # CheckpointError, CsvFormatError, DeviceError and bad arguments: one clear line, no traceback
        print(f"xlstm-ros {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

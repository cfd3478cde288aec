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


# ---------------------------------------------------------------------------------------------- depth

def _add_depth(sub) -> None:
    p = sub.add_parser("depth", help="depth maps of an image or of every image in a folder",
                       description="Writes NAME_depth.npy (float32, input size), NAME_depth.json (relative inverse "
                                   "depth or metres), NAME_depth.png and NAME_side.png per image.")
    p.add_argument("source", type=Path, help="an image file or a folder of images")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--checkpoint", type=Path, help="depth checkpoint; default: the shipped model")
    p.add_argument("--size", type=_size, help="network input HxW (multiples of 16); default: keep the aspect "
                                             "with the model's own short side")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.set_defaults(run=_run_depth)


def _run_depth(args) -> int:
    from xlstm_ros.engines.depth import DepthEstimator
    from xlstm_ros.engines.image_folder import estimate_files, image_paths

    paths = image_paths(args.source)
    estimator = DepthEstimator.from_checkpoint(args.checkpoint, device=args.device, input_size=args.size)
    written = estimate_files(estimator, paths, args.out, str(args.checkpoint or "default"))
    print(f"wrote depth for {len(written)} of {len(paths)} image(s) to {args.out}")
    return 0 if written else 1


# ----------------------------------------------------------------------------------------- demo, play

def _add_demo(sub) -> None:
    from xlstm_ros.demo.run import DemoOptions

    defaults = DemoOptions()
    p = sub.add_parser("demo", help="fly the synthetic drone through the real nodes (the README's first command)")
    p.add_argument("--out", type=Path, default=defaults.out_dir, help=f"output folder (default {defaults.out_dir})")
    p.add_argument("--duration", type=float, default=defaults.duration_s, help="flight seconds")
    p.add_argument("--fps", type=float, default=defaults.fps, help="camera frames per second")
    p.add_argument("--size", type=_size, default=(defaults.height, defaults.width), help="camera HxW")
    p.add_argument("--seed", type=int, default=defaults.seed, help="flight and scene seed")
    p.add_argument("--scene", default=defaults.scene_kind, choices=("street", "field", "corridor"))
    p.add_argument("--rate", type=float, default=defaults.rate, help="playback speed vs real time")
    p.add_argument("--depth-checkpoint", type=Path, help="depth model (default: the shipped one)")
    p.add_argument("--forecaster-checkpoint", type=Path, help="TiRex model (default: the shipped one)")
    p.add_argument("--config", type=Path, help="parameter file (default: the package's config/drone.yaml)")
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    from xlstm_ros.demo.run import DemoOptions, run_demo

    run_demo(DemoOptions(out_dir=args.out, duration_s=args.duration, fps=args.fps, height=args.size[0],
                         width=args.size[1], seed=args.seed, scene_kind=args.scene, rate=args.rate,
                         depth_checkpoint=args.depth_checkpoint, forecaster_checkpoint=args.forecaster_checkpoint,
                         config=args.config))
    return 0


def _add_play(sub) -> None:
    from xlstm_ros.graph.drone import LAUNCH_ARGUMENTS

    p = sub.add_parser("play", help="replay a bag through the depth and forecaster nodes",
                       description="Starts both nodes (drone graph) with their inputs remapped to the bag's topics "
                                   "and republishes the bag with its recorded timing.")
    p.add_argument("bag", type=Path, help="rosbag2 folder (mcap or sqlite3)")
    p.add_argument("--config", type=Path, help="parameter file (default: the package's config/drone.yaml)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed")
    p.add_argument("--record", type=Path, help="record the nodes' outputs into this new bag")
    p.add_argument("--log-dir", type=Path, default=Path("out/play"), help="node logs")
    for argument in LAUNCH_ARGUMENTS:
        if argument.name not in ("config", "namespace", "use_sim_time"):
            p.add_argument(f"--{argument.name.replace('_', '-')}", dest=f"input_{argument.name}",
                           default=argument.default, help=f"{argument.description} (default {argument.default})")
    p.set_defaults(run=_run_play)


def _run_play(args) -> int:
    from xlstm_ros.demo.play import PlayOptions, run_play

    inputs = {key[len("input_"):]: value for key, value in vars(args).items() if key.startswith("input_")}
    counts = run_play(PlayOptions(bag=args.bag, config=args.config, rate=args.rate, inputs=inputs,
                                  record=args.record, log_dir=args.log_dir))
    print(f"published {counts['published']} messages" +
          (f", recorded {counts['recorded']} outputs to {args.record}" if args.record else ""))
    return 0


# ---------------------------------------------------------------------------------------- train, eval

_TRAIN_EVAL = {("train", "forecaster"): "xlstm_ros.train.forecast_train",
               ("train", "depth"): "xlstm_ros.train.depth_train",
               ("eval", "forecaster"): "xlstm_ros.eval.forecaster",
               ("eval", "depth"): "xlstm_ros.eval.depth"}


def _add_train_eval(sub, command: str, help_text: str) -> None:
    p = sub.add_parser(command, help=help_text, add_help=False,
                       description=f"xlstm-ros {command} forecaster|depth [options]; "
                                   f"`xlstm-ros {command} MODEL --help` lists the options.")
    p.add_argument("model", choices=("forecaster", "depth"))
    p.add_argument("options", nargs=argparse.REMAINDER, help="options of the chosen model's command")
    p.set_defaults(run=_run_train_eval)


def _run_train_eval(args) -> int:
    import importlib

    options = args.options
    if (args.command, args.model) == ("train", "depth"):
        options = _depth_bag_options(options)
    module = importlib.import_module(_TRAIN_EVAL[(args.command, args.model)])
    module.main(options, prog=f"xlstm-ros {args.command} {args.model}")
    return 0


def _bag_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xlstm-ros train depth", add_help=False, description=(
        "rosbag2 options: train on a recording with an RGB camera and an aligned depth image (REP 118: 16UC1 "
        "millimetres or 32FC1 metres; 0 / NaN = no reading, masked). The pairs are written to OUT_DIR/bag_frames "
        "and, unless --from-scratch, the shipped model is fine-tuned."))
    p.add_argument("--bag", type=Path, help="rosbag2 folder (mcap or sqlite3)")
    p.add_argument("--image-topic", help="sensor_msgs/Image camera topic (any colour encoding)")
    p.add_argument("--depth-topic", help="sensor_msgs/Image depth topic registered to the camera")
    p.add_argument("--camera-info-topic", help="sensor_msgs/CameraInfo topic (checks the image size, keeps K)")
    p.add_argument("--max-stamp-diff", type=float, default=0.02,
                   help="largest header-stamp gap (s) between an image and its depth (default 0.02)")
    p.add_argument("--from-scratch", action="store_true", help="train new weights instead of fine-tuning")
    p.add_argument("--out-dir", default=None)
    return p


def _depth_bag_options(options: list[str]) -> list[str]:
    """`train depth` options with --bag ...: the bag's pairs extracted, and the depth trainer's options for them."""
    parser = _bag_parser()
    bag_args, rest = parser.parse_known_args(options)
    if "-h" in rest or "--help" in rest:
        print(parser.format_help())
    if bag_args.out_dir is not None:
        rest += ["--out-dir", bag_args.out_dir]
    if bag_args.bag is None:
        return rest
    if not bag_args.image_topic or not bag_args.depth_topic:
        raise ValueError("--bag needs --image-topic and --depth-topic")
    from xlstm_ros.engines.depth import DEFAULT_CHECKPOINT
    from xlstm_ros.graph.bag_frames import extract_depth_frames
    from xlstm_ros.train.depth_train import DepthTrainConfig

    frames = Path(bag_args.out_dir or DepthTrainConfig.out_dir) / "bag_frames"
    summary = extract_depth_frames(bag_args.bag, frames, bag_args.image_topic, bag_args.depth_topic,
                                   bag_args.camera_info_topic, bag_args.max_stamp_diff)
    print(f"{summary.frames} frames of {summary.width}x{summary.height} from {bag_args.bag} "
          f"({100 * summary.valid_share:.0f} % of pixels with depth, {summary.unpaired_images} images without a "
          f"depth image) in {frames}")
    rest += ["--frames", str(frames)]
    if not bag_args.from_scratch and "--init-checkpoint" not in rest:
        rest += ["--init-checkpoint", str(DEFAULT_CHECKPOINT)]
    return rest


# ---------------------------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlstm-ros", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_demo(sub)
    _add_forecast(sub)
    _add_depth(sub)
    _add_play(sub)
    _add_train_eval(sub, "train", "train the forecaster or the depth model (synthetic data made here)")
    _add_train_eval(sub, "eval", "evaluate a forecaster or depth checkpoint against baselines")
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

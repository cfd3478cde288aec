"""depth_node: monocular depth from a camera topic with a Vision-xLSTM (ViL) + DPT model.

Subscribes `image` (sensor_msgs/Image, any common encoding) and optionally `camera_info`; publishes, all
with the input image's header:
  depth              32FC1 (REP 118): metres for a metric model, else relative inverse depth (larger is
                     nearer, unit-less; see the README)
  depth/colored      bgr8 picture for rviz (near = warm), fixed or running limits
  depth/camera_info  the camera's CameraInfo (or one made from `default_fov_deg`) with the image's header
  points             optional PointCloud2 (x, y, z float32); for a relative model z = 1 / disparity is
                     correct only up to scale and shift
  /diagnostics, ~/status, ~/get_status   the report below
The image callback (sensor-data QoS) checks each frame's layout (encoding, step, data length, size) at
once, so a broken frame is rejected without displacing a good one, and keeps only the newest good frame;
a worker thread runs the model on the newest frame when it is free, so a slow model never blocks the
executor and latency stays bounded by about one inference. Every frame the callback received ends up
processed or dropped with a reason, each reason logged at most once per second:
  superseded            replaced by a newer frame before the worker was free
  unsupported_encoding, bad_step, short_data, not_convertible, empty_image, unsupported_image
                        the frame cannot be converted or is too small / too elongated for the model
  no_subscribers        `lazy` and nobody listens
  inference_error       the model failed on the frame (also counted in errors.inference)
  out_of_memory         CUDA out of memory without fallback_to_cpu (with it: the model moves to the CPU,
                        counts.cpu_fallbacks, and the frame is retried)
  dds_lost              frames DDS lost between a publisher and the node (gaps in the publishers' sequence
                        numbers; best-effort video may lose frames, and they are counted here)

Report (/diagnostics flattened, ~/status and ~/get_status as xlstm_ros_msgs/NodeStatus JSON):
  node, model, device, backend, dtype, output (relative|metric), metric, device_fallback ("" or why the
  node runs on the CPU), uptime_s, level (ok|warn|error), message
  counts.{frames_received,frames_processed,cpu_fallbacks}   rates_hz.<the same>
  drops.<reason>                       the reasons above
  errors.{inference,out_of_memory}
  latency_ms.{inference,end_to_end}.{p50,p90,p99}   model only; arrival to published
  frames.{received,processed,dropped,pending}       received = processed + dropped + pending (0..2: waiting
                                       or in the model; dds_lost are not in received)
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import rclpy
import torch
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from xlstm_ros.engines.depth import DepthEstimator
from xlstm_ros.engines.depth_outputs import COLORMAPS, RunningLimits, back_project, colorize, \
    intrinsics_from_fov, metric_z, nearness
from xlstm_ros.engines.device import BACKENDS, DEVICES_HELP, DeviceError
from xlstm_ros.models.depth import METRIC
from xlstm_ros.models.checkpoints import CheckpointError
from xlstm_ros.nodes.diagnostics import NodeHealth, PublicationGaps, StatusOutputs, ThrottledLog, \
    release_free_memory
from xlstm_ros.nodes.image_conv import RGB_CONVERTIBLE, ImageConversionError, image_to_numpy, numpy_to_image, \
    to_rgb8
from xlstm_ros.nodes.params import Param, ParameterError, at_least, declare_all, one_of, reject_unknown

NODE_PARAMS = [
    Param("checkpoint", "", "depth checkpoint; empty = the shipped default model"),
    Param("device", "auto", f"inference device: {DEVICES_HELP}"),
    Param("fallback_to_cpu", True, "run on the CPU with a warning when the requested CUDA device is unusable "
          "or runs out of memory"),
    Param("backend", "auto", "mLSTM kernels: auto (Triton on CUDA), triton or torch", one_of(*BACKENDS)),
    Param("dtype", "float32", "inference dtype: float32, bfloat16, or float16 (CUDA only)",
          one_of("float32", "bfloat16", "float16")),
    Param("input_height", 0, "network input height (multiple of 16); 0 = keep the frame's aspect", at_least(0)),
    Param("input_width", 0, "network input width (multiple of 16); 0 = keep the frame's aspect", at_least(0)),
    Param("short_side", 0, "network size of the frame's shorter side when keeping aspect; 0 = model default",
          at_least(0)),
    Param("smoothing", 0.0, "temporal smoothing factor in [0, 1); 0 = off",
          lambda a: None if 0.0 <= a < 1.0 else "must be in [0, 1)"),
    Param("max_rate_hz", 0.0, "process at most this many frames per second; 0 = as fast as possible",
          at_least(0.0)),
    Param("publish_colored", True, "publish depth/colored (bgr8)"),
    Param("colormap", "turbo", "colour map of depth/colored", one_of(*COLORMAPS)),
    Param("color_limits", "running", "depth/colored limits: running (follow the scene) or fixed",
          one_of("running", "fixed")),
    Param("color_min", 0.0, "fixed limits: nearness (1/m for metric, disparity for relative) drawn coldest"),
    Param("color_max", 1.0, "fixed limits: nearness drawn warmest"),
    Param("publish_points", False, "publish a PointCloud2 on `points`"),
    Param("points_stride", 4, "use every n-th pixel in both directions for `points`", at_least(1)),
    Param("default_fov_deg", 90.0, "horizontal field of view used when no camera_info arrived",
          lambda f: None if 1.0 <= f <= 179.0 else "must be in [1, 179] degrees"),
    Param("lazy", False, "skip inference while nobody subscribes to any output"),
    Param("diagnostics_period_s", 1.0, "how often /diagnostics and ~/status are published", at_least(0.01)),
]


@dataclass
class Frame:
    msg: Image
    pixels: np.ndarray  # the image in its own encoding (a view of msg.data when in native byte order)
    received: float  # time.monotonic() at arrival


class DepthNode(Node):
    def __init__(self, **kwargs):
        super().__init__("depth_node", **kwargs)
        self.health = NodeHealth()
        self.warn = ThrottledLog(self.get_logger().warning)
        self.config = c = declare_all(self, NODE_PARAMS)
        reject_unknown(self)
        if bool(c["input_height"]) != bool(c["input_width"]):
            raise ParameterError("input_width", "set input_height and input_width together (or both 0)")
        self.device_fallback = ""
        self.estimator = self._load_estimator(c["device"])
        self.limits = RunningLimits()
        self.gaps = PublicationGaps()
        self._camera_info: CameraInfo | None = None
        self._pending: Frame | None = None
        self._busy = False  # the worker holds a frame
        self._wake = threading.Condition()
        self._running = True

        self.depth_pub = self.create_publisher(Image, "depth", qos_profile_sensor_data)
        self.colored_pub = self.create_publisher(Image, "depth/colored", qos_profile_sensor_data)
        self.info_pub = self.create_publisher(CameraInfo, "depth/camera_info", qos_profile_sensor_data)
        self.points_pub = self.create_publisher(PointCloud2, "points", qos_profile_sensor_data)
        self.outputs = StatusOutputs(self, "depth", self.report)
        self.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data)
        self.create_timer(c["diagnostics_period_s"], self._publish_status)
        self._worker = threading.Thread(target=self._work, name="depth_inference", daemon=True)
        self._worker.start()
        self.get_logger().info(f"depth model {self.model_name} ({self.estimator.kind}) on "
                               f"{self.estimator.device}, dtype {self.estimator.dtype}")

    def _load_estimator(self, device: str, dtype: str | None = None) -> DepthEstimator:
        c = self.config
        fixed_size = (c["input_height"], c["input_width"]) if c["input_height"] and c["input_width"] else None

        def fell_back(message: str) -> None:
            self.device_fallback = message
            self.get_logger().warning(message)

        try:
            return DepthEstimator.from_checkpoint(
                c["checkpoint"] or None, device=device, dtype=dtype or c["dtype"], input_size=fixed_size,
                short_side=c["short_side"] or None, smoothing=c["smoothing"], backend=c["backend"],
                fallback_to_cpu=c["fallback_to_cpu"], on_fallback=fell_back)
        except DeviceError as error:
            raise ParameterError("device", str(error)) from None
        except CheckpointError as error:
            raise ParameterError("checkpoint", str(error)) from None
        except ValueError as error:
            raise ParameterError("input_height" if "input_size" in str(error) else "short_side",
                                 str(error)) from None

    @property
    def model_name(self) -> str:
        return self.config["checkpoint"] or "default"

    # --- callbacks (executor thread): never block --------------------------------------------------
    def _on_image(self, msg: Image, info) -> None:
        received = time.monotonic()
        lost = self.gaps.lost(info)
        if lost:
            self.health.drop("dds_lost", lost)
            self.warn("dds_lost", f"{lost} frame(s) lost between the camera and this node")
        self.health.count("frames_received")
        try:
            pixels = image_to_numpy(msg)
            if msg.encoding not in RGB_CONVERTIBLE:
                raise ImageConversionError(f"Image.encoding '{msg.encoding}' is not a colour, mono, bayer or YUV "
                                           "encoding", "not_convertible")
        except ImageConversionError as error:
            self._reject(error.cause, str(error))
            return
        if pixels.shape[0] < 2 or pixels.shape[1] < 2:
            self._reject("empty_image", f"image of {pixels.shape[1]}x{pixels.shape[0]} pixels is too small")
            return
        with self._wake:
            if self._pending is not None:
                self.health.drop("superseded")
            self._pending = Frame(msg, pixels, received)
            self._wake.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    # --- worker thread -----------------------------------------------------------------------------
    def _work(self) -> None:
        period = 1.0 / self.config["max_rate_hz"] if self.config["max_rate_hz"] > 0 else 0.0
        last_start = 0.0
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._pending is not None or not self._running)
                if not self._running:
                    return
                wait = last_start + period - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)  # newer frames may replace the pending one meanwhile
                frame, self._pending = self._pending, None
                self._busy = frame is not None
            if frame is None:
                continue
            last_start = time.monotonic()
            try:
                self._process(frame)
            except Exception as error:  # keep serving frames; the cause is counted and logged
                self.health.error("inference")
                self.health.drop("inference_error")
                self.warn("inference_error", f"depth inference failed: {error!r}")
            finally:
                with self._wake:
                    self._busy = False

    def _process(self, frame: Frame) -> None:
        if self.config["lazy"] and not self._has_subscribers():
            self.health.drop("no_subscribers")
            return
        try:
            rgb = to_rgb8(frame.pixels, frame.msg.encoding)
        except ImageConversionError as error:
            self._reject(error.cause, str(error))
            return
        try:
            started = time.perf_counter()
            result = self._estimate(rgb)
            self.health.observe_latency("inference", time.perf_counter() - started)
        except ValueError as error:  # for example an aspect ratio the model cannot take
            self._reject("unsupported_image", str(error))
            return
        except torch.cuda.OutOfMemoryError as error:
            self._reject("out_of_memory", f"out of memory on {self.estimator.device}: {error}")
            return
        header = frame.msg.header
        self.depth_pub.publish(numpy_to_image(result.depth, "32FC1", header))
        if self.config["publish_colored"]:
            limits = (self.config["color_min"], self.config["color_max"])
            if self.config["color_limits"] == "running":
                limits = self.limits.update(nearness(result.depth, result.kind))
            picture = colorize(result.depth, result.kind, limits, self.config["colormap"])
            self.colored_pub.publish(numpy_to_image(picture, "bgr8", header))
        info = self._info_for(frame.msg)
        self.info_pub.publish(info)
        if self.config["publish_points"]:
            self.points_pub.publish(self._points(result, info))
        self.health.count("frames_processed")
        self.health.observe_latency("end_to_end", time.monotonic() - frame.received)

    def _estimate(self, rgb: np.ndarray):
        """One frame's depth; on a CUDA out-of-memory error with fallback_to_cpu the model moves to the CPU
        (float32 if it ran float16) and the frame is retried there."""
        try:
            return self.estimator.estimate([rgb])[0]
        except torch.cuda.OutOfMemoryError as error:
            self.health.error("out_of_memory")
            if not self.config["fallback_to_cpu"]:
                raise
            reason = f"out of memory on {self.estimator.device} ({str(error).splitlines()[0]})"
        dtype = "float32" if self.estimator.dtype == torch.float16 else str(self.estimator.dtype).split(".")[-1]
        self.estimator = self._load_estimator("cpu", dtype)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.device_fallback = f"{reason}; running on the CPU"
        self.health.count("cpu_fallbacks")
        self.get_logger().warning(self.device_fallback)
        return self.estimator.estimate([rgb])[0]

    def _reject(self, reason: str, message: str) -> None:
        self.health.drop(reason)
        self.warn(reason, f"frame dropped ({reason}): {message}")

    def _has_subscribers(self) -> bool:
        return any(pub.get_subscription_count() for pub in
                   (self.depth_pub, self.colored_pub, self.info_pub, self.points_pub))

    def _info_for(self, image: Image) -> CameraInfo:
        """The latest CameraInfo if it matches the image size, else one made from default_fov_deg."""
        source = self._camera_info
        if source is not None and (source.width, source.height) == (image.width, image.height):
            info = CameraInfo(width=source.width, height=source.height, distortion_model=source.distortion_model,
                              d=list(source.d), k=list(source.k), r=list(source.r), p=list(source.p),
                              binning_x=source.binning_x, binning_y=source.binning_y, roi=source.roi)
        else:
            if source is not None:
                self.warn("camera_info_size", f"camera_info is {source.width}x{source.height} but images are "
                                              f"{image.width}x{image.height}; using default_fov_deg")
            K = intrinsics_from_fov(image.width, image.height, self.config["default_fov_deg"])
            info = CameraInfo(width=image.width, height=image.height, distortion_model="plumb_bob",
                              d=[0.0] * 5, k=K.ravel().tolist(), r=np.eye(3).ravel().tolist(),
                              p=np.hstack([K, np.zeros((3, 1))]).ravel().tolist())
        info.header = image.header
        return info

    def _points(self, result, info: CameraInfo) -> PointCloud2:
        K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
        points = back_project(metric_z(result.depth, result.kind), K, self.config["points_stride"])
        cloud = PointCloud2(header=info.header, height=1, width=len(points), is_bigendian=sys.byteorder == "big",
                            point_step=12, row_step=12 * len(points), is_dense=True)
        cloud.fields = [PointField(name=axis, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                        for i, axis in enumerate("xyz")]
        cloud.data = points.tobytes()
        return cloud

    def _publish_status(self) -> None:
        self.outputs.publish(self.report(periodic=True))
        release_free_memory()

    def report(self, periodic: bool = False) -> dict:
        """The status report (module docstring). `periodic`: the timer's report, which moves the mark that
        level ("warn": drops since then) compares with."""
        with self._wake:
            pending = int(self._pending is not None) + int(self._busy)
        identity = {"node": self.get_fully_qualified_name(), "model": self.model_name,
                    "device": str(self.estimator.device), "backend": self.estimator.model.backbone.mlstm.backend,
                    "dtype": str(self.estimator.dtype).split(".")[-1], "output": self.estimator.kind,
                    "metric": self.estimator.kind == METRIC, "device_fallback": self.device_fallback}
        report = self.health.report(identity, periodic=periodic)
        dropped = sum(count for reason, count in report["drops"].items() if reason != "dds_lost")
        report["frames"] = {"received": report["counts"].get("frames_received", 0),
                            "processed": report["counts"].get("frames_processed", 0),
                            "dropped": dropped, "pending": pending}
        return report

    def stop(self) -> None:
        with self._wake:
            self._running = False
            self._wake.notify_all()
        self._worker.join(timeout=30)


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = DepthNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except ParameterError as error:
        rclpy.logging.get_logger("depth_node").fatal(str(error))
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

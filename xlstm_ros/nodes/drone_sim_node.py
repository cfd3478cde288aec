"""drone_sim_node: a synthetic drone flight published in real time, the demo's stand-in for a real drone.

Publishes, stamped with the simulated sample times (node clock at start + flight time):
  camera/image_raw     rgb8 frames rendered from the procedural scene at `fps`
  camera/camera_info   the pinhole intrinsics of the frames
  camera/depth_gt      32FC1 ground-truth depth in metres (REP 118, +inf for the sky), for evaluation
  battery_state        sensor_msgs/BatteryState (voltage), 10 Hz
  imu                  sensor_msgs/Imu (linear_acceleration.z), 100 Hz
  altitude             geometry_msgs/PointStamped (point.z, m), 20 Hz
  motor_temperature    sensor_msgs/Temperature (deg C), 5 Hz
and exits when the flight is over. `rate` > 1 plays the flight faster than real time.
"""
from __future__ import annotations

import heapq
import sys
import time

import numpy as np
import rclpy
from geometry_msgs.msg import PointStamped
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import BatteryState, CameraInfo, Image, Imu, Temperature

from xlstm_ros.nodes.image_conv import numpy_to_image
from xlstm_ros.nodes.params import Param, ParameterError, at_least, declare_all, positive, reject_unknown
from xlstm_ros.sim.flight import scene_of_kind, simulate_flight
from xlstm_ros.sim.scenes import KINDS, Renderer

NODE_PARAMS = [
    Param("seed", 7, "flight and scene seed"),
    Param("duration_s", 60.0, "length of the flight in seconds", positive),
    Param("fps", 5.0, "camera frame rate", positive),
    Param("width", 320, "camera image width in pixels", at_least(16)),
    Param("height", 240, "camera image height in pixels", at_least(16)),
    Param("rate", 1.0, "playback speed relative to real time", positive),
    Param("scene_kind", "street", f"scene kind: {', '.join(KINDS)}",
          lambda k: None if k in KINDS else f"must be one of {', '.join(KINDS)}"),
    Param("frame_id", "camera", "frame_id of the camera topics"),
    Param("wait_for_subscribers_s", 30.0, "before flying, wait up to this long until every topic has "
          "subscribers_per_topic subscribers (so nothing is published into the void while the other nodes start)",
          at_least(0.0)),
    Param("subscribers_per_topic", 1, "subscribers each camera and sensor topic needs before the flight starts "
          "(the demo's recorder makes it 2)", at_least(1)),
]


class DroneSimNode(Node):
    def __init__(self, **kwargs):
        super().__init__("drone_sim_node", **kwargs)
        self.config = c = declare_all(self, NODE_PARAMS)
        reject_unknown(self)
        self.flight = simulate_flight(c["seed"], c["duration_s"], c["fps"], scene_of_kind(c["scene_kind"]))
        self.image_pub = self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        self.info_pub = self.create_publisher(CameraInfo, "camera/camera_info", qos_profile_sensor_data)
        self.depth_pub = self.create_publisher(Image, "camera/depth_gt", qos_profile_sensor_data)
        self.sensor_pubs = {
            "battery_voltage": self.create_publisher(BatteryState, "battery_state", 50),
            "accel_z": self.create_publisher(Imu, "imu", 200),
            "altitude": self.create_publisher(PointStamped, "altitude", 50),
            "motor_temperature": self.create_publisher(Temperature, "motor_temperature", 50),
        }
        self.get_logger().info(f"flight of {self.flight.duration_s:.0f} s through a {self.flight.scene.kind} "
                               f"scene, {len(self.flight.cameras)} frames, faults at "
                               f"{[(f.channel, round(f.start_s, 1)) for f in self.flight.faults]}")

    def events(self):
        """(time_s, kind, index) of every frame and sensor sample, in time order."""
        frames = ((i / self.flight.fps, "frame", i) for i in range(len(self.flight.cameras)))
        sensors = [[(float(t), name, i) for i, t in enumerate(series.times_s)]
                   for name, series in self.flight.sensors.items()]
        return heapq.merge(frames, *sensors)

    def wait_for_subscribers(self) -> bool:
        """Wait until every publisher is matched (or the timeout passes); True when all are."""
        publishers = [self.image_pub, *self.sensor_pubs.values()]
        deadline = time.monotonic() + self.config["wait_for_subscribers_s"]
        wanted = self.config["subscribers_per_topic"]
        while not all(p.get_subscription_count() >= wanted for p in publishers):
            if time.monotonic() > deadline:
                missing = [p.topic_name for p in publishers if p.get_subscription_count() < wanted]
                self.get_logger().warning(f"flying without subscribers on {missing}")
                return False
            time.sleep(0.1)
        return True

    def fly(self) -> int:
        """Publish the whole flight in real time (scaled by `rate`); returns the number of messages."""
        c = self.config
        start_ns = self.get_clock().now().nanoseconds
        start_wall = time.monotonic()
        published = 0
        with Renderer(c["width"], c["height"]) as renderer:
            for time_s, kind, index in self.events():
                if not rclpy.ok(context=self.context):
                    break
                delay = time_s / c["rate"] - (time.monotonic() - start_wall)
                if delay > 0:
                    time.sleep(delay)
                stamp = _stamp(start_ns + int(time_s * 1e9))
                if kind == "frame":
                    self._publish_frame(renderer, index, stamp)
                else:
                    self._publish_sensor(kind, float(self.flight.sensors[kind].values[index]), stamp)
                published += 1
        return published

    def _publish_frame(self, renderer: Renderer, index: int, stamp) -> None:
        frame = renderer.render(self.flight.scene, self.flight.cameras[index], time_s=index / self.flight.fps)
        image = numpy_to_image(frame.rgb, "rgb8")
        image.header.stamp, image.header.frame_id = stamp, self.config["frame_id"]
        depth = numpy_to_image(frame.depth_m.astype(np.float32), "32FC1", image.header)
        K = frame.K
        info = CameraInfo(header=image.header, width=image.width, height=image.height, distortion_model="plumb_bob",
                          d=[0.0] * 5, k=K.ravel().tolist(), r=np.eye(3).ravel().tolist(),
                          p=np.hstack([K, np.zeros((3, 1))]).ravel().tolist())
        self.image_pub.publish(image)
        self.info_pub.publish(info)
        self.depth_pub.publish(depth)

    def _publish_sensor(self, name: str, value: float, stamp) -> None:
        if name == "battery_voltage":
            msg = BatteryState(voltage=value, present=True,
                               power_supply_technology=BatteryState.POWER_SUPPLY_TECHNOLOGY_LIPO)
        elif name == "accel_z":
            msg = Imu()
            msg.linear_acceleration.z = value
        elif name == "altitude":
            msg = PointStamped()
            msg.point.z = value
        else:
            msg = Temperature(temperature=value)
        msg.header.stamp, msg.header.frame_id = stamp, "base_link"
        self.sensor_pubs[name].publish(msg)


def _stamp(nanoseconds: int):
    from builtin_interfaces.msg import Time

    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = DroneSimNode()
        node.wait_for_subscribers()
        count = node.fly()
        node.get_logger().info(f"flight finished: {count} messages published")
    except ParameterError as error:
        rclpy.logging.get_logger("drone_sim_node").fatal(str(error))
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""RGB-D frames from a rosbag2 (`train depth --bag`): REP 118 depth, stamp pairing and every bad bag's error."""
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from xlstm_ros import cli
from xlstm_ros.graph.bag_frames import BagFramesError, extract_depth_frames
from xlstm_ros.sim.scenes import SceneDataset
from xlstm_ros.train.depth_train import FrameBank

STORE = get_typestore(Stores.ROS2_KILTED)
T0 = 1_750_000_000 * 10**9
K = [100.0, 0.0, 32.0, 0.0, 100.0, 24.0, 0.0, 0.0, 1.0]


def image_message(array: np.ndarray, encoding: str, stamp_ns: int):
    types = STORE.types
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id="cam")
    array = np.ascontiguousarray(array)
    return types["sensor_msgs/msg/Image"](header=header, height=array.shape[0], width=array.shape[1],
                                          encoding=encoding, is_bigendian=0, step=array.strides[0],
                                          data=array.view(np.uint8).reshape(-1))


def camera_info(height: int, width: int, stamp_ns: int):
    types = STORE.types
    info = types["sensor_msgs/msg/CameraInfo"]
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    header = image_message(np.zeros((1, 1), np.uint8), "mono8", stamp_ns).header
    return info(header=header, height=height, width=width, distortion_model="plumb_bob", d=np.zeros(5),
                k=np.array(K), r=np.eye(3).reshape(-1), p=np.zeros(12), binning_x=0, binning_y=0, roi=roi)


def write_bag(path, frames, *, depth_encoding="16UC1", depth_offset_ns=0, info_size=None):
    """A bag with /cam/image (rgb8) and /cam/depth; `frames` is a list of (rgb, depth) arrays, 10 per second."""
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    image = writer.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=STORE)
    depth = writer.add_connection("/cam/depth", "sensor_msgs/msg/Image", typestore=STORE)
    info = writer.add_connection("/cam/info", "sensor_msgs/msg/CameraInfo", typestore=STORE)
    for k, (rgb, depth_array) in enumerate(frames):
        stamp = T0 + k * 100_000_000
        writer.write(image, stamp, STORE.serialize_cdr(image_message(rgb, "rgb8", stamp), "sensor_msgs/msg/Image"))
        message = image_message(depth_array, depth_encoding, stamp + depth_offset_ns)
        writer.write(depth, stamp + depth_offset_ns, STORE.serialize_cdr(message, "sensor_msgs/msg/Image"))
        height, width = info_size or rgb.shape[:2]
        writer.write(info, stamp, STORE.serialize_cdr(camera_info(height, width, stamp), "sensor_msgs/msg/CameraInfo"))
    writer.close()
    return path


def frames(n=3, size=(48, 64)):
    rng = np.random.default_rng(0)
    rgb = [rng.integers(0, 255, (*size, 3), dtype=np.uint8) for _ in range(n)]
    millimetres = [rng.integers(500, 5000, size).astype(np.uint16) for _ in range(n)]
    for depth in millimetres:
        depth[:5, :7] = 0   # no reading
    return list(zip(rgb, millimetres))


def test_millimetre_depth_becomes_metres_with_invalid_pixels_masked(tmp_path):
    pairs = frames()
    bag = write_bag(tmp_path / "bag", pairs)
    summary = extract_depth_frames(bag, tmp_path / "frames", "/cam/image", "/cam/depth", "/cam/info")
    assert (summary.frames, summary.height, summary.width, summary.unpaired_images) == (3, 48, 64, 0)
    assert summary.valid_share == pytest.approx(1 - 35 / (48 * 64))
    dataset = SceneDataset(tmp_path / "frames")
    assert dataset.manifest["source"]["depth_topic"] == "/cam/depth"
    rgb, depth_m = dataset[1]
    np.testing.assert_array_equal(rgb, pairs[1][0])
    assert np.isnan(depth_m[:5, :7]).all()
    np.testing.assert_allclose(depth_m[5:], pairs[1][1][5:] / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(dataset.shard(0)["K"][0].reshape(-1), K)
    bank = FrameBank(tmp_path / "frames")   # the trainer reads it: NaN disparity where depth is missing
    assert np.isnan(bank.disparity[0, :5, :7]).all() and np.isfinite(bank.disparity[0, 5:]).all()


def test_float_depth_in_metres_follows_rep_118(tmp_path):
    depth = np.full((48, 64), 2.5, np.float32)
    depth[0, 0], depth[0, 1], depth[0, 2], depth[0, 3] = np.nan, 0.0, -np.inf, np.inf
    rgb = np.zeros((48, 64, 3), np.uint8)
    bag = write_bag(tmp_path / "bag", [(rgb, depth)] * 2, depth_encoding="32FC1", depth_offset_ns=5_000_000)
    extract_depth_frames(bag, tmp_path / "frames", "/cam/image", "/cam/depth")
    _, depth_m = SceneDataset(tmp_path / "frames")[0]
    assert np.isnan(depth_m[0, :3]).all() and depth_m[0, 3] == np.inf and (depth_m[1:] == 2.5).all()


@pytest.mark.parametrize("change, message", [
    (dict(image_topic="/cam/color"), "image topic '/cam/color' is not in the bag; its topics: /cam/depth"),
    (dict(depth_topic="/cam/info"), "depth topic '/cam/info' has type sensor_msgs/msg/CameraInfo"),
    (dict(depth_topic="/cam/image"), "encoding 'rgb8' is not a depth encoding"),
    (dict(max_stamp_diff_s=0.001), "no image of '/cam/image' has a depth image of '/cam/depth' within 0.001 s"),
])
def test_wrong_topics_and_unsynchronised_streams_name_the_problem(tmp_path, change, message):
    bag = write_bag(tmp_path / "bag", frames(), depth_offset_ns=10_000_000)
    arguments = dict(image_topic="/cam/image", depth_topic="/cam/depth") | change
    with pytest.raises(BagFramesError, match=message.replace("(", r"\(")):
        extract_depth_frames(bag, tmp_path / "frames", **arguments)


def test_sizes_that_differ_and_no_valid_depth_are_refused(tmp_path):
    rgb, depth = frames(1)[0]
    bag = write_bag(tmp_path / "small_depth", [(rgb, depth[::2, ::2])])
    with pytest.raises(BagFramesError, match="image 64x48 and depth 32x24 differ in size"):
        extract_depth_frames(bag, tmp_path / "f1", "/cam/image", "/cam/depth")
    bag = write_bag(tmp_path / "other_info", [(rgb, depth)], info_size=(96, 128))
    with pytest.raises(BagFramesError, match="camera info is for 128x96 images"):
        extract_depth_frames(bag, tmp_path / "f2", "/cam/image", "/cam/depth", "/cam/info")
    bag = write_bag(tmp_path / "no_depth", [(rgb, np.zeros_like(depth))])
    with pytest.raises(BagFramesError, match="no valid depth"):
        extract_depth_frames(bag, tmp_path / "f3", "/cam/image", "/cam/depth")
    with pytest.raises(BagFramesError, match="does not exist"):
        extract_depth_frames(tmp_path / "nothing", tmp_path / "f4", "/cam/image", "/cam/depth")


def test_command_line_reports_a_bad_bag_in_one_line(tmp_path, capsys):
    bag = write_bag(tmp_path / "bag", frames(1))
    code = cli.main(["train", "depth", "--bag", str(bag), "--image-topic", "/cam/image", "--depth-topic", "/nope",
                     "--out-dir", str(tmp_path / "run")])
    assert code == 2
    assert "xlstm-ros train: error: depth topic '/nope' is not in the bag" in capsys.readouterr().err
    code = cli.main(["train", "depth", "--bag", str(bag), "--image-topic", "/cam/image"])
    assert code == 2 and "--bag needs --image-topic and --depth-topic" in capsys.readouterr().err

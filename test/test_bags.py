"""BagRecorder and BagPlayer: what travelled over DDS is what the bag holds and what playback sends."""
import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Float64
from xlstm_ros_msgs.msg import Forecast

from xlstm_ros.graph.bags import BagPlayer, BagRecorder, read_messages
from xlstm_ros.graph.spinning import wait_for
from xlstm_ros.nodes.image_conv import image_to_numpy, numpy_to_image

pytestmark = pytest.mark.ros


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_record_then_read_and_play_back(ros_graph, tmp_path, storage):
    node = ros_graph.client.node
    bag = tmp_path / f"bag_{storage}"
    recorder = BagRecorder(node, bag, {"/value": "std_msgs/msg/Float64",
                                       "/forecast": "xlstm_ros_msgs/msg/Forecast",
                                       "/image": "sensor_msgs/msg/Image"}, storage=storage)
    value_pub = node.create_publisher(Float64, "/value", 10)
    forecast_pub = node.create_publisher(Forecast, "/forecast", 10)
    image_pub = node.create_publisher(Image, "/image", 10)
    picture = np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    assert wait_for(lambda: value_pub.get_subscription_count() and forecast_pub.get_subscription_count()
                    and image_pub.get_subscription_count(), 10)
    for k in range(5):
        value_pub.publish(Float64(data=float(k)))
        forecast_pub.publish(Forecast(channel="battery", horizon=2, median=[k, k + 1.0]))
        image_pub.publish(numpy_to_image(picture, "rgb8"))
    assert wait_for(lambda: sum(recorder.counts.values()) == 15, 10), recorder.counts
    recorder.close()

    messages = list(read_messages(bag))
    values = [m.data for topic, _, m in messages if topic == "/value"]
    assert values == [0.0, 1.0, 2.0, 3.0, 4.0]
    forecasts = [m for topic, _, m in messages if topic == "/forecast"]
    assert [f.channel for f in forecasts] == ["battery"] * 5 and list(forecasts[-1].median) == [4.0, 5.0]
    image = next(m for topic, _, m in messages if topic == "/image")
    assert (image.height, image.width, image.encoding) == (12, 16, "rgb8")

    received = ros_graph.client.collect(Float64, "/replayed", 10)
    images = ros_graph.client.collect(Image, "/image", 10)
    player = BagPlayer(node, bag, rate=20.0, remap={"/value": "/replayed"})
    assert wait_for(lambda: player._publishers["/value"].get_subscription_count(), 10)
    assert player.play() == 15
    player.close()
    assert wait_for(lambda: len(received) == 5 and len(images) == 5, 10)
    assert [m.data for m in received] == values
    np.testing.assert_array_equal(image_to_numpy(images[0]), picture)


def test_player_rejects_bad_rate(ros_graph, tmp_path):
    with pytest.raises(ValueError, match="rate"):
        BagPlayer(ros_graph.client.node, tmp_path / "none", rate=0)

"""ROS-free evaluation of the two models next to baselines: forecaster.py (M1/M3/Tourism and sensor series) and
depth.py (held-out rendered scenes and real Middlebury views); the metrics themselves are in xlstm_ros.metrics."""

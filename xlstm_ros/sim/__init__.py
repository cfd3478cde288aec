"""ROS-free simulation: procedural scenes (scenes/), camera effects for augmentation (camera_effects.py), drone
flights (flight.py), sensor physics (sensors.py) and synthetic series (series.py, signals.py). Training, the
demo's simulator node and the benchmarks draw on it."""

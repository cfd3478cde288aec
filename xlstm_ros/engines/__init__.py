"""ROS-free inference engines: persistent state, batching, pre/post-processing, devices."""

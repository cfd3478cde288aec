"""ROS 2 nodes of xlstm_ros: one node per file, thin adapters around the engines, and their ROS helpers."""

"""ROS 2 faces of xlstm_ros: thin node adapters around the engines (the only place rclpy is imported)."""

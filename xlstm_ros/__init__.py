"""xlstm_ros: xLSTM models for robots and drones.

Layers (imports only point down): nodes/ and cli.py -> engines/ -> models/ -> kernels/; train/ sits beside
engines. Importing this package never imports rclpy: only xlstm_ros.nodes does.
"""

__version__ = "0.1.0"

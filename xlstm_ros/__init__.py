"""xlstm_ros: xLSTM models for robots and drones.

Layers (imports only point down; DEVELOPERS.md lists the rules, test/test_layering.py checks them):
cli.py, nodes/, demo/ -> graph/ -> engines/ -> models/ -> kernels/; sim/, train/ and eval/ sit beside
engines. Importing this package never imports rclpy: only the ROS faces (nodes, graph, demo) do.
"""

__version__ = "0.1.0"

"""Starting and watching the node graph, for the demo, `xlstm-ros play`, the benchmarks and the tests.

  running     the one context manager: a reserved domain, node processes, a client node in this process
  status      a node's report through its ~/get_status service
  spinning    the client node's background executor, and polling with a timeout
  bags        rosbag2 recording and playback from the client node
  drone       the drone graph of the launch files: executables, parameter file, launch arguments
  processes   domain reservation, the ROS environment and node processes (entry points)

drone and processes do not import rclpy (the CLI and the launch files read them); the others do, so this
package imports none of them itself.
"""

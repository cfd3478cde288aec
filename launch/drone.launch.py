"""Depth and forecaster nodes for a drone: `ros2 launch xlstm_ros drone.launch.py camera:=/my/cam`.

The graph (nodes, remapped inputs, launch arguments) comes from xlstm_ros.graph.drone, the same
description the demo uses; launch/drone.launch.xml is the same graph in XML.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from xlstm_ros.graph.drone import DRONE_NODES, LAUNCH_ARGUMENTS, SHIPPED_CONFIG
from xlstm_ros.graph.processes import FASTDDS_PROFILE


def generate_launch_description():
    shipped = PathJoinSubstitution([FindPackageShare("xlstm_ros"), "config", "drone.yaml"])
    arguments = [DeclareLaunchArgument(a.name, default_value=shipped if a.default == SHIPPED_CONFIG else a.default,
                                       description=a.description) for a in LAUNCH_ARGUMENTS]
    # Whole camera frames and depth maps through shared memory (config/fastdds_large_shm.xml says why),
    # unless FASTDDS_DEFAULT_PROFILES_FILE already names a profile.
    profile = PathJoinSubstitution([FindPackageShare("xlstm_ros"), "config", FASTDDS_PROFILE])
    transport = SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                                       EnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", default_value=profile))
    nodes = [Node(package="xlstm_ros", executable=spec.executable, name=spec.executable,
                  namespace=LaunchConfiguration("namespace"), output="screen",
                  parameters=[LaunchConfiguration("config"), {"use_sim_time": LaunchConfiguration("use_sim_time")}],
                  remappings=[(topic, LaunchConfiguration(argument)) for topic, argument in spec.inputs.items()])
             for spec in DRONE_NODES]
    return LaunchDescription(arguments + [transport] + nodes)

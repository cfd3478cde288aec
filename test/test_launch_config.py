"""Launch files, the demo and config/ describe one graph; every configured parameter is a declared one."""
import importlib.metadata
import sys
import types
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import yaml

from xlstm_ros.graph.drone import DRONE_NODES, LAUNCH_ARGUMENTS, SHIPPED_CONFIG, default_config, node_arguments
from xlstm_ros.graph.processes import FASTDDS_PROFILE, fastdds_profile, ros_arguments, ros_environment
from xlstm_ros.nodes import depth_node, drone_sim_node, forecaster_node

REPO = Path(__file__).resolve().parents[1]
NODE_PARAMS = {"depth_node": depth_node.NODE_PARAMS, "forecaster_node": forecaster_node.NODE_PARAMS}
CHANNEL_FIELDS = ("topic", "type", "field", "unit")


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def node_sections(path: Path) -> dict[str, dict]:
    """{node name: flat parameters} of a ROS parameter file with /**/<node> keys."""
    return {key.split("/")[-1]: flatten(value["ros__parameters"]) for key, value in yaml.safe_load(path.read_text()).items()}


def declared(node: str, parameters: dict) -> set[str]:
    names = {param.name for param in NODE_PARAMS[node]}
    for channel in parameters.get("channels", []):
        names |= {f"channel.{channel}.{field}" for field in CHANNEL_FIELDS}
    return names


# ----------------------------------------------------------------------------------------- launch files

def xml_graph():
    root = ElementTree.parse(REPO / "launch" / "drone.launch.xml").getroot()
    arguments = {a.get("name"): (a.get("default"), a.get("description")) for a in root.findall("arg")}
    nodes = {}
    for node in root.findall("node"):
        assert node.get("pkg") == "xlstm_ros" and node.get("name") == node.get("exec")
        params = [p.attrib for p in node.findall("param")]
        nodes[node.get("exec")] = {
            "params_file": next(p["from"] for p in params if "from" in p),
            "remaps": {r.get("from"): r.get("to") for r in node.findall("remap")},
            "namespace": node.get("namespace"),
            "sim_time": next(p["value"] for p in params if p.get("name") == "use_sim_time"),
        }
    return arguments, nodes


def test_xml_launch_file_is_the_graph():
    root = ElementTree.parse(REPO / "launch" / "drone.launch.xml").getroot()
    [transport] = root.findall("set_env")
    assert transport.attrib == {"name": "FASTDDS_DEFAULT_PROFILES_FILE", "value": (
        f"$(env FASTDDS_DEFAULT_PROFILES_FILE $(find-pkg-share xlstm_ros)/config/{FASTDDS_PROFILE})")}
    arguments, nodes = xml_graph()
    assert arguments == {a.name: (a.default, a.description) for a in LAUNCH_ARGUMENTS}
    assert list(nodes) == [spec.executable for spec in DRONE_NODES]
    for spec in DRONE_NODES:
        node = nodes[spec.executable]
        assert node["params_file"] == "$(var config)" and node["namespace"] == "$(var namespace)"
        assert node["sim_time"] == "$(var use_sim_time)"
        assert node["remaps"] == {topic: f"$(var {argument})" for topic, argument in spec.inputs.items()}


class _Recorded:
    """Stand-in for a launch class: remembers how it was constructed (launch is not installable here)."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def test_python_launch_file_is_the_graph(monkeypatch):
    modules = {}
    for name, classes in {"launch": ["LaunchDescription"],
                          "launch.actions": ["DeclareLaunchArgument", "SetEnvironmentVariable"],
                          "launch.substitutions": ["EnvironmentVariable", "LaunchConfiguration",
                                                   "PathJoinSubstitution"],
                          "launch_ros.actions": ["Node"], "launch_ros.substitutions": ["FindPackageShare"]}.items():
        module = modules[name] = types.ModuleType(name)
        for cls in classes:
            setattr(module, cls, type(cls, (_Recorded,), {}))
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "launch_ros", types.ModuleType("launch_ros"))
    namespace = {}
    exec(compile((REPO / "launch" / "drone.launch.py").read_text(), "drone.launch.py", "exec"), namespace)
    description = namespace["generate_launch_description"]()
    entities = description.args[0]
    declared_arguments = [e for e in entities if type(e).__name__ == "DeclareLaunchArgument"]
    launched = [e for e in entities if type(e).__name__ == "Node"]
    assert [a.args[0] for a in declared_arguments] == [a.name for a in LAUNCH_ARGUMENTS]
    config = next(a for a in declared_arguments if a.args[0] == "config").kwargs["default_value"]
    assert config.args[0][0].args == ("xlstm_ros",) and config.args[0][1:] == ["config", "drone.yaml"]
    assert [n.kwargs["executable"] for n in launched] == [spec.executable for spec in DRONE_NODES]
    [transport] = [e for e in entities if type(e).__name__ == "SetEnvironmentVariable"]
    assert entities.index(transport) < entities.index(launched[0])  # set before the nodes start
    name, value = transport.args
    assert name == value.args[0] == "FASTDDS_DEFAULT_PROFILES_FILE"
    profile = value.kwargs["default_value"]
    assert profile.args[0][0].args == ("xlstm_ros",) and profile.args[0][1:] == ["config", FASTDDS_PROFILE]
    for node, spec in zip(launched, DRONE_NODES):
        assert node.kwargs["package"] == "xlstm_ros" and node.kwargs["name"] == spec.executable
        params_file, extra = node.kwargs["parameters"]
        assert params_file.args == ("config",) and list(extra) == ["use_sim_time"]
        assert [(topic, target.args[0]) for topic, target in node.kwargs["remappings"]] == list(spec.inputs.items())


def test_demo_starts_the_same_executables_with_the_same_parameter_file():
    config = default_config()
    assert config.name == "drone.yaml" and config.is_file()
    for spec in DRONE_NODES:
        args = node_arguments(spec, config)
        assert args[:3] == ["--ros-args", "--params-file", str(config)]
        defaults = {a.name: a.default for a in LAUNCH_ARGUMENTS}
        for topic, argument in spec.inputs.items():
            assert f"{topic}:={defaults[argument]}" in args
    assert SHIPPED_CONFIG.endswith("/config/drone.yaml")


def test_every_executable_is_an_installed_entry_point():
    scripts = {ep.name for ep in importlib.metadata.distribution("xlstm_ros").entry_points
               if ep.group == "console_scripts"}
    assert {spec.executable for spec in DRONE_NODES} | {"drone_sim_node", "xlstm-ros"} <= scripts
    for name in scripts:
        assert (Path(sys.executable).parent / name).is_file(), name


# ----------------------------------------------------------------------------------------------- config

@pytest.mark.parametrize("file", ["drone.yaml", "depth.yaml", "forecaster.yaml"])
def test_every_configured_parameter_is_declared_by_its_node(file):
    for node, parameters in node_sections(REPO / "config" / file).items():
        unknown = set(parameters) - declared(node, parameters)
        assert not unknown, f"{file}: {node} does not declare {sorted(unknown)}"


@pytest.mark.parametrize("node, file", [("depth_node", "depth.yaml"), ("forecaster_node", "forecaster.yaml")])
def test_node_config_lists_every_parameter_with_its_default(node, file):
    parameters = node_sections(REPO / "config" / file)[node]
    assert parameters == {param.name: param.default for param in NODE_PARAMS[node]}


def test_drone_config_channels_read_existing_fields():
    from xlstm_ros.nodes.fields import compile_field_path, import_message_type

    parameters = node_sections(REPO / "config" / "drone.yaml")["forecaster_node"]
    for channel in parameters["channels"]:
        msg_type = import_message_type(parameters[f"channel.{channel}.type"])
        compile_field_path(msg_type, parameters[f"channel.{channel}.field"])


@pytest.mark.ros
@pytest.mark.parametrize("executable, params", [("depth_node", {"colour_map": "turbo"}),
                                                ("drone_sim_node", {"sed": 1})])
def test_nodes_refuse_unknown_parameters(ros_graph, executable, params):
    process = ros_graph.start(executable, ros_arguments(parameters=params), expect_exit=True)
    assert process.process.wait(120) == 2
    assert f"parameter '{next(iter(params))}': unknown parameter" in process.output()


def test_drone_sim_parameters_are_valid_defaults():
    assert all(param.check is None or param.check(param.default) is None for param in drone_sim_node.NODE_PARAMS)


def test_node_processes_get_the_shipped_fastdds_profile_unless_one_is_set():
    profile = fastdds_profile()
    assert profile is not None and profile.read_bytes() == (REPO / "config" / FASTDDS_PROFILE).read_bytes()
    namespace = {"dds": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    segment = ElementTree.parse(profile).getroot().find(".//dds:transport_descriptor/dds:segment_size", namespace)
    assert int(segment.text) >= 1280 * 720 * 4  # a 720p float32 depth map in one piece
    base = {"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
    assert ros_environment(7, base=base)["FASTDDS_DEFAULT_PROFILES_FILE"] == str(profile)
    assert ros_environment(7, base={**base, "FASTDDS_DEFAULT_PROFILES_FILE": "/mine.xml"})[
        "FASTDDS_DEFAULT_PROFILES_FILE"] == "/mine.xml"
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in ros_environment(7, base={"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"})

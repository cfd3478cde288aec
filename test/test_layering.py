"""The import rules of DEVELOPERS.md, checked on the source: imports only point down, and only the ROS faces
(nodes, graph, demo) import rclpy or ROS message packages."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROS = ("rclpy", "rosidl_runtime_py", "rosbags", "*_msgs", "*_interfaces")
FACES = ("xlstm_ros.nodes", "xlstm_ros.graph", "xlstm_ros.demo", "xlstm_ros.cli")
#: The node modules: started as processes by their entry points, never imported by the harness or the demo.
NODES = ("xlstm_ros.nodes.depth_node", "xlstm_ros.nodes.forecaster_node", "xlstm_ros.nodes.drone_sim_node")

#: For each part of the package (a module prefix), the modules it must never import besides its own (prefixes;
#: "*_x": a top-level package whose name ends in _x).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "xlstm_ros.kernels": ("xlstm_ros",),
    "xlstm_ros.models": ("xlstm_ros.engines", "xlstm_ros.sim", "xlstm_ros.train", "xlstm_ros.eval", *FACES, *ROS),
    "xlstm_ros.engines": ("xlstm_ros.sim", "xlstm_ros.train", "xlstm_ros.eval", *FACES, *ROS),
    "xlstm_ros.sim": ("xlstm_ros.train", "xlstm_ros.eval", *FACES, *ROS),
    "xlstm_ros.train": ("xlstm_ros.eval", *FACES, *ROS),
    "xlstm_ros.eval": ("xlstm_ros.train", *FACES, *ROS),
    "xlstm_ros.metrics": ("xlstm_ros.engines", "xlstm_ros.sim", "xlstm_ros.train", "xlstm_ros.eval", *FACES, *ROS),
    "xlstm_ros.options": ("xlstm_ros.models", "xlstm_ros.engines", "xlstm_ros.sim", "xlstm_ros.train",
                          "xlstm_ros.eval", *FACES, *ROS),
    "xlstm_ros.nodes": ("xlstm_ros.train", "xlstm_ros.eval", "xlstm_ros.graph", "xlstm_ros.demo", "xlstm_ros.cli"),
    "xlstm_ros.graph": ("xlstm_ros.train", "xlstm_ros.eval", "xlstm_ros.demo", "xlstm_ros.cli", *NODES),
    "xlstm_ros.demo": ("xlstm_ros.train", "xlstm_ros.cli", *NODES),
}


def module_name(path: Path, root: Path) -> str:
    """The dotted name a source file is imported as (kernels/ is installed as xlstm_ros.kernels)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[0] == "kernels":
        parts.insert(0, "xlstm_ros")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) of every import in the file, at any depth, relative ones resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def matches(name: str, pattern: str) -> bool:
    head = name.split(".")[0]
    if pattern.startswith("*"):
        return head.endswith(pattern[1:])
    return name == pattern or name.startswith(pattern + ".")


def violations(root: Path) -> list[str]:
    """Every import under root/xlstm_ros and root/kernels that breaks FORBIDDEN, as 'file:line: a imports b'."""
    out = []
    files = sorted([*(root / "xlstm_ros").rglob("*.py"), *(root / "kernels").glob("*.py")])
    for path in files:
        if (root / "xlstm_ros" / "kernels") in path.parents:   # the source-tree symlink to kernels/
            continue
        module = module_name(path, root)
        rules = [(part, rule) for part, rule in FORBIDDEN.items() if matches(module, part)]
        for line, imported in imports_of(path, module):
            for part, rule in rules:
                if not matches(imported, part) and any(matches(imported, pattern) for pattern in rule):
                    out.append(f"{path.relative_to(root)}:{line}: {module} imports {imported}")
    return out


def test_the_source_follows_the_import_rules():
    assert violations(ROOT) == []


def test_the_checker_finds_a_violation(tmp_path):
    for folder, text in (("xlstm_ros/engines", "from xlstm_ros.nodes.params import Param\n"),
                         ("xlstm_ros/models", "def f():\n    from ..engines import device\n"),
                         ("xlstm_ros/sim", "import sensor_msgs.msg\n"),
                         ("kernels", "from xlstm_ros.models import tirex\n")):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "bad.py").write_text(text)
    (tmp_path / "xlstm_ros" / "nodes").mkdir()
    (tmp_path / "xlstm_ros" / "nodes" / "fine.py").write_text("import rclpy\nfrom xlstm_ros.sim import flight\n")
    assert violations(tmp_path) == [
        "kernels/bad.py:1: xlstm_ros.kernels.bad imports xlstm_ros.models",
        "kernels/bad.py:1: xlstm_ros.kernels.bad imports xlstm_ros.models.tirex",
        "xlstm_ros/engines/bad.py:1: xlstm_ros.engines.bad imports xlstm_ros.nodes.params",
        "xlstm_ros/engines/bad.py:1: xlstm_ros.engines.bad imports xlstm_ros.nodes.params.Param",
        "xlstm_ros/models/bad.py:2: xlstm_ros.models.bad imports xlstm_ros.engines",
        "xlstm_ros/models/bad.py:2: xlstm_ros.models.bad imports xlstm_ros.engines.device",
        "xlstm_ros/sim/bad.py:1: xlstm_ros.sim.bad imports sensor_msgs.msg",
    ]


@pytest.mark.parametrize("package", ["xlstm_ros", "xlstm_ros.cli", "xlstm_ros.engines.forecaster",
                                     "xlstm_ros.engines.depth", "xlstm_ros.train.forecast_train",
                                     "xlstm_ros.eval.depth", "xlstm_ros.sim.flight"])
def test_importing_the_library_does_not_import_rclpy(package):
    code = f"import sys, {package}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'rclpy'))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                               cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "[]"

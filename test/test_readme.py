"""The README documents what the code does: parameter tables generated from the node declarations."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_parameter_tables_match_the_nodes():
    run = subprocess.run([sys.executable, str(REPO / "tools" / "readme_tables.py"), "--check"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_every_cli_command_is_in_the_readme():
    from xlstm_ros.cli import build_parser

    readme = (REPO / "README.md").read_text()
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        assert f"xlstm-ros {name}" in readme, name

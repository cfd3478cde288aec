"""Regenerate the parameter tables of README.md from the nodes' declarations (or --check them).

Between `<!-- params:<node>:start -->` and `<!-- params:<node>:end -->` the README holds a table of every
parameter the node declares, with its default and description, so the README can never drift from the
code: test/test_readme.py runs `--check`.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
sys.path.insert(0, str(REPO))  # the nodes of this tree, not an installed copy


def table(params) -> str:
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    for param in params:
        default = json.dumps(list(param.default) if param.string_array else param.default)
        rows.append(f"| `{param.name}` | `{default}` | {param.description} |")
    return "\n".join(rows)


def render(text: str) -> str:
    from xlstm_ros.nodes import depth_node, forecaster_node

    for name, module in (("depth_node", depth_node), ("forecaster_node", forecaster_node)):
        pattern = re.compile(rf"(<!-- params:{name}:start -->\n).*?(<!-- params:{name}:end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no params:{name} markers")
        text = pattern.sub(lambda m: m.group(1) + table(module.NODE_PARAMS) + "\n" + m.group(2), text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if README.md is not up to date")
    args = parser.parse_args()
    current = README.read_text()
    wanted = render(current)
    if args.check:
        if wanted != current:
            print("README.md parameter tables are out of date: run python tools/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())

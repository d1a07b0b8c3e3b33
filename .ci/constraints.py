"""Print constraints.txt: the exact installed version of every distribution in pypi-pulse[test]'s dependency closure.

Run after `pip install -e '.[test]'` on a machine whose tests pass: `python3 .ci/constraints.py > constraints.txt`.
`pip freeze` alone would also pin whatever else the machine has installed (other tools, the BigQuery emulator's
own packages), and a pin of something the project never asks for can only break a fresh install.
"""

from __future__ import annotations

import importlib.metadata as md

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = "pypi-pulse"
# installers, not dependencies: pinned here they would fight the build backend's own requirement (pyproject)
TOOLS = {"pip", "setuptools", "wheel"}


def closure(root: str, extras: set[str]) -> dict[str, str]:
    """name -> installed version, for everything `root[extras]` needs here (markers evaluated on this machine)."""
    seen: dict[str, set[str]] = {}
    todo = [(canonicalize_name(root), set(extras))]
    while todo:
        name, wanted = todo.pop()
        if name in seen and wanted <= seen[name]:
            continue
        have = seen.setdefault(name, set())
        have |= wanted
        for line in md.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in have | {""}):
                todo.append((canonicalize_name(req.name), set(req.extras)))
    seen.pop(canonicalize_name(root))
    return {name: md.version(name) for name in seen if name not in TOOLS}


if __name__ == "__main__":
    print("# Exact versions the tests run (`pip install -c constraints.txt -e '.[test]'`, as .ci/run does);")
    print("# regenerate with `python3 .ci/constraints.py > constraints.txt` after changing dependencies.")
    for name, version in sorted(closure(ROOT, {"test"}).items()):
        print(f"{name}=={version}")

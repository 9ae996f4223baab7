#!/usr/bin/env python3
"""Print the oldest torch ctcnet declares (the ``torch>=X`` floor in pyproject.toml).

CI installs exactly this version (tools/check_colab_install.sh, tools/check_plain_install.sh),
so the declared floor is the tested one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def torch_floor(root: Path = ROOT) -> str:
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    m = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", text, re.M | re.S)
    deps = m.group(1) if m else ""
    found = re.findall(r"""["']torch\s*>=\s*([0-9][0-9.]*)\s*["',]""", deps)
    if len(found) != 1:
        raise SystemExit("pyproject.toml: expected one 'torch>=X' in [project] dependencies")
    return found[0]


if __name__ == "__main__":
    print(torch_floor())
    sys.exit(0)

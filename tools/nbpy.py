"""Convert chapters between .ipynb (what the repository stores) and a percent-format .py text
that is pleasant to edit and review.

    python tools/nbpy.py to-py book/04_fsau.ipynb  > /tmp/04_fsau.py
    python tools/nbpy.py to-nb /tmp/04_fsau.py book/04_fsau.ipynb

Percent format: a line ``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose
lines are prefixed with ``# ``; ``# %% tags=["hide-input"]`` sets cell tags. Notebooks are
written without outputs (as nbstripout would leave them).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HEADER = re.compile(r"^# %%(?P<md> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")
KERNEL = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def py_to_cells(text: str) -> list[dict]:
    cells: list[dict] = []
    current: dict | None = None
    for line in text.splitlines():
        match = HEADER.match(line)
        if match:
            current = {
                "cell_type": "markdown" if match["md"] else "code",
                "metadata": {"tags": json.loads(match["tags"])} if match["tags"] else {},
                "lines": [],
            }
            cells.append(current)
            continue
        if current is None:
            continue  # text before the first cell marker (e.g. a file docstring) is dropped
        if current["cell_type"] == "markdown":
            line = line[2:] if line.startswith("# ") else line.lstrip("#")
        current["lines"].append(line)
    out = []
    for cell in cells:
        lines = cell.pop("lines")
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        source = [ln + "\n" for ln in lines]
        if source:
            source[-1] = source[-1].rstrip("\n")
        cell["source"] = source
        if cell["cell_type"] == "code":
            cell["execution_count"] = None
            cell["outputs"] = []
        out.append(cell)
    return out


def to_notebook(py_path: Path, nb_path: Path) -> None:
    notebook = {
        "cells": py_to_cells(py_path.read_text()),
        "metadata": KERNEL,
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    for index, cell in enumerate(notebook["cells"]):
        cell["id"] = f"{nb_path.stem[:20]}-{index}".replace("_", "-")
    nb_path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")


def to_py(nb_path: Path) -> str:
    notebook = json.loads(nb_path.read_text())
    chunks = []
    for cell in notebook["cells"]:
        tags = cell.get("metadata", {}).get("tags")
        suffix = f" tags={json.dumps(tags)}" if tags else ""
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            body = "\n".join(("# " + ln) if ln else "#" for ln in source.splitlines())
            chunks.append(f"# %% [markdown]{suffix}\n{body}\n")
        else:
            chunks.append(f"# %%{suffix}\n{source}\n")
    return "\n".join(chunks)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "to-py":
        sys.stdout.write(to_py(Path(argv[1])))
        return 0
    if len(argv) == 3 and argv[0] == "to-nb":
        to_notebook(Path(argv[1]), Path(argv[2]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

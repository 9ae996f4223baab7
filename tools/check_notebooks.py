#!/usr/bin/env python3
"""Check the course notebooks (book/**/*.ipynb) before they are committed.

Run by ``make test``.  A notebook fails the check if it

* has outputs or execution counts (commit notebooks stripped: ``nbstripout``);
* does not start (first code cell) with the Colab install cell, character for character
  (``CANONICAL_FIRST_CELL`` below with ``repository.url`` from ``_config.yml``; print it with
  ``python tools/check_notebooks.py --print-first-cell``): on Colab it installs ctcnet with
  ``--no-deps``, then ``ctcnet/colab_install.py`` installs only what the runtime lacks, never
  touching its torch, numpy or OpenCV (``tools/check_colab_install.sh`` proves it in CI);
* has no markdown cell with an "Audience & objectives" section or a ``> **Objectives.**``
  blockquote (docs/AUTHORING.md);
* declares a kernel other than ``python3`` (the build runs the ``python3`` kernel);
* (notebooks under book/ only) is not listed in ``_toc.yml`` -- such a notebook
  would silently never be built nor executed.

Usage::

    python tools/check_notebooks.py               # every book/**/*.ipynb
    python tools/check_notebooks.py NB.ipynb ...  # just these files
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Canonical first code cell of every chapter; ``{repo_url}`` is ``repository.url``
#: from ``_config.yml`` (the single source of truth for the repository URL).
CANONICAL_FIRST_CELL = '''\
# Colab only (a no-op elsewhere): install ctcnet, then only what this runtime lacks. The
# runtime's torch, numpy and OpenCV are never upgraded, downgraded or reinstalled.
import subprocess
import sys

if "google.colab" in sys.modules:
    from importlib.metadata import distribution

    PACKAGE = "ctcnet @ git+{repo_url}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", PACKAGE], check=True)
    installer = distribution("ctcnet").locate_file("ctcnet/colab_install.py")
    subprocess.run([sys.executable, installer, "analysis"], check=True)
'''

# "Audience & objectives" (a heading), or the blockquote of docs/AUTHORING.md: "> **Objectives.**"
AUDIENCE_RE = re.compile(r"audience\s*(?:&|&amp;|and)\s*objectives|^>\s*\*\*(?:audience|objectives)\b",
                         re.IGNORECASE | re.MULTILINE)
PIP_INSTALL_RE = re.compile(r"pip\W{1,8}install")
EXPECTED_KERNEL = "python3"


def read_repo_url(root: Path = REPO_ROOT) -> str:
    """Return ``repository.url`` from ``<root>/_config.yml`` (no trailing slash)."""
    text = (root / "_config.yml").read_text(encoding="utf-8")
    try:
        import yaml
    except ModuleNotFoundError:  # fall back to a regex on the ``repository:`` block
        m = re.search(r"^repository:\s*\n(?:[ \t]+.*\n)*?[ \t]+url:\s*(\S+)", text, re.MULTILINE)
        if not m:
            raise ValueError("_config.yml has no repository.url") from None
        url = m.group(1).strip("'\"")
    else:
        url = (yaml.safe_load(text).get("repository") or {}).get("url")
        if not url:
            raise ValueError("_config.yml has no repository.url")
    return str(url).rstrip("/")


def read_baseurl(root: Path = REPO_ROOT) -> str:
    """Return ``html.baseurl`` from ``<root>/_config.yml`` (with a trailing slash), or ""."""
    text = (root / "_config.yml").read_text(encoding="utf-8")
    try:
        import yaml
    except ModuleNotFoundError:
        m = re.search(r"^html:\s*\n(?:[ \t]+.*\n)*?[ \t]+baseurl:\s*(\S*)", text, re.MULTILINE)
        url = m.group(1).strip("'\"") if m else ""
    else:
        url = str((yaml.safe_load(text).get("html") or {}).get("baseurl") or "")
    return url if not url or url.endswith("/") else url + "/"


def canonical_first_cell(root: Path = REPO_ROOT) -> str:
    return CANONICAL_FIRST_CELL.format(repo_url=read_repo_url(root))


def toc_files(root: Path = REPO_ROOT) -> set[str]:
    """Every ``file:`` entry of ``_toc.yml`` (plus ``root:``), without suffix."""
    text = (root / "_toc.yml").read_text(encoding="utf-8")
    found: set[str] = set()
    try:
        import yaml
    except ModuleNotFoundError:
        for line in text.splitlines():
            m = re.match(r"\s*(?:-\s*)?(?:file|root):\s*(\S+)", line)
            if m:
                found.add(m.group(1).strip("'\""))
    else:

        def walk(node: object) -> None:
            if isinstance(node, dict):
                for key in ("file", "root"):
                    if isinstance(node.get(key), str):
                        found.add(node[key])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(yaml.safe_load(text))
    return {str(Path(f).with_suffix("")) if Path(f).suffix in {".ipynb", ".md"} else f
            for f in found}


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def check_notebook(path: Path, repo_url: str, toc: set[str] | None = None,
                   root: Path = REPO_ROOT) -> list[str]:
    """Return a list of problems (empty when the notebook is fine)."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"cannot be read as JSON: {exc}"]
    if not isinstance(nb, dict) or "cells" not in nb:
        return ["is not a Jupyter notebook (no 'cells')"]
    problems: list[str] = []
    cells = nb["cells"]

    for i, cell in enumerate(cells):
        # a control character is a backslash eaten by a Python string ("\frac" -> form feed + "rac")
        control = sorted({f"0x{ord(ch):02x}" for ch in _source(cell) if ord(ch) < 32 and ch not in "\t\n\r"})
        if control:
            problems.append(f"cell {i} holds control characters {', '.join(control)} (an escaped "
                            "backslash lost, e.g. \\f in \\frac)")
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {i} has outputs (strip them: nbstripout {path})")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {i} has an execution count (strip it: nbstripout {path})")

    code_cells = [c for c in cells if c.get("cell_type") == "code"]
    if not code_cells:
        problems.append("has no code cell (the first one must be the Colab install cell)")
    else:
        first = _source(code_cells[0])
        missing = []
        if "google.colab" not in first:
            missing.append("'google.colab' detection")
        if not PIP_INSTALL_RE.search(first):
            missing.append("a pip install")
        if not re.search(re.escape(f"git+{repo_url}") + r"(?:\.git)?(?![\w/.-])", first):
            missing.append(f"'git+{repo_url}'")
        if missing:
            problems.append(
                "first code cell is not the Colab install cell (missing "
                + ", ".join(missing)
                + "); see `python tools/check_notebooks.py --print-first-cell`"
            )
        elif first.strip() != canonical_first_cell(root).strip():
            problems.append(
                "first code cell differs from the canonical Colab install cell (copy it from "
                "`python tools/check_notebooks.py --print-first-cell`)")

    if not any(c.get("cell_type") == "markdown" and AUDIENCE_RE.search(_source(c))
               for c in cells):
        problems.append('has no markdown cell with an "Audience & objectives" section (or the '
                        '"> **Objectives.** …" blockquote of docs/AUTHORING.md)')

    kernel = (nb.get("metadata", {}).get("kernelspec") or {}).get("name")
    if kernel not in (None, EXPECTED_KERNEL):
        problems.append(f"kernelspec is {kernel!r}; use {EXPECTED_KERNEL!r}")

    if toc is not None:
        try:
            rel = path.resolve().relative_to(root.resolve())
        except ValueError:
            rel = None
        if rel is not None and rel.parts[:1] == ("book",):
            if str(rel.with_suffix("")) not in toc:
                problems.append(f"is not listed in _toc.yml (add `- file: {rel.with_suffix('')}`)")
    return problems


def find_notebooks(root: Path = REPO_ROOT) -> list[Path]:
    return sorted(p for p in (root / "book").rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts and "_build" not in p.parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to check (default: book/**/*.ipynb)")
    parser.add_argument("--root", type=Path, default=REPO_ROOT,
                        help="repository root holding _config.yml and _toc.yml")
    parser.add_argument("--print-first-cell", action="store_true",
                        help="print the canonical first code cell and exit")
    args = parser.parse_args(argv)

    if args.print_first_cell:
        print(canonical_first_cell(args.root), end="")
        return 0

    repo_url = read_repo_url(args.root)
    toc = toc_files(args.root)
    notebooks = args.notebooks or find_notebooks(args.root)
    failed = 0
    for nb in notebooks:
        problems = check_notebook(nb, repo_url, toc, args.root)
        if problems:
            failed += 1
            for problem in problems:
                print(f"{nb}: {problem}", file=sys.stderr)
    if failed:
        print(f"check_notebooks: {failed} of {len(notebooks)} notebook(s) FAILED", file=sys.stderr)
        return 1
    print(f"check_notebooks: {len(notebooks)} notebook(s) OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())

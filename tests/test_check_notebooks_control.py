"""tools/check_notebooks.py refuses a cell whose text holds a control character: the trace of a
backslash that a Python string ate while the cell was written (``"\frac"`` is a form feed + "rac",
which MathJax then fails on in the built page)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_notebooks", ROOT / "tools" / "check_notebooks.py")
check_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_notebooks)


def _problems_with(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "01_task.ipynb"
    shutil.copy(ROOT / "book" / "01_task.ipynb", path)
    nb = nbformat.read(path, as_version=4)
    markdown = next(c for c in nb.cells if c.cell_type == "markdown")
    markdown.source += "\n" + text
    nbformat.write(nb, path)
    return check_notebooks.check_notebook(path, check_notebooks.read_repo_url())


def test_a_backslash_lost_to_a_form_feed_is_refused(tmp_path):
    problems = _problems_with(tmp_path, "at $\x0crac H4$")
    assert any("control characters 0x0c" in p for p in problems), problems


def test_tabs_and_newlines_are_not_control_faults(tmp_path):
    problems = _problems_with(tmp_path, "at $\\frac H4$\tand\r\nmore")
    assert not any("control characters" in p for p in problems), problems

"""tools/smoke_full_mode.py's plan: which chapters `make smoke-full` executes in full mode, and why.

The plan may leave a chapter out only when its code is the same in both modes (the book build then
executes that code); these tests pin down what counts as "differs" on small synthetic notebooks,
and check the plan against the real book so that no chapter with a full-mode path is skipped.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import pytest

from ctcnet.course.book import BookSettings

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("smoke_full_mode",
                                                  ROOT / "tools" / "smoke_full_mode.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


smoke = _tool()


def notebook(tmp_path: Path, *cells: str, name: str = "nb.ipynb") -> Path:
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# S.mode in prose"]}]
          + [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
              "source": src.splitlines(keepends=True)} for src in cells],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / name
    path.write_text(json.dumps(nb))
    return path


def test_size_fields_are_the_settings_sizes():
    sizes = {f.name for f in dataclasses.fields(BookSettings)} - {"mode", "device", "cap"}
    assert smoke.SIZE_FIELDS == sizes


def test_sizes_used_as_values_do_not_make_a_chapter_differ(tmp_path):
    path = notebook(tmp_path, "S = banner()",
                    "n = min(S.eval_images, 10)\nfor i in range(S.train_steps):\n    pass",
                    "img.convert('RGB')  # not the settings")
    dep = smoke.mode_dependence(path)
    assert not dep.differs and not dep.calls_subject, dep.reasons


@pytest.mark.parametrize("code, why", [
    ("if S.mode == 'full':\n    x = 1", "reads .mode"),
    ("sizes = (1, 2) if S.mode == 'small' else (3,)", "reads .mode"),
    ("FULL = S.cap == 'none'", "reads .cap"),
    ("config = settings()", "calls settings()"),
    ("plan = reproduction_plan(S)", "calls reproduction_plan()"),
    ("import os\nos.environ.get('CTCNET_BOOK_MODE')", "reads $CTCNET_BOOK_MODE"),
    ("if S.eval_images > 100:\n    x = 1", "branches on .eval_images"),
    ("x = [f for f in faces if S.lam_steps > 4]", "branches on .lam_steps"),
    ("while i < S.train_steps:\n    i += 1", "branches on .train_steps"),
])
def test_code_that_reads_the_mode_or_branches_on_a_size_differs(tmp_path, code, why):
    dep = smoke.mode_dependence(notebook(tmp_path, "S = banner()", code))
    assert dep.differs and any(why in r for r in dep.reasons), dep.reasons
    assert dep.reasons[0].startswith("code cell 2:")


def test_a_chapter_that_asks_which_subject_it_got_gets_both_passes(tmp_path):
    dep_path = notebook(tmp_path, "subj = ctcnet.course.book.subject(S)",
                        "if subj.official:\n    pass", name="a.ipynb")
    plain = notebook(tmp_path, "x = 1", name="b.ipynb")
    tasks, deps = smoke.plan([dep_path, plain])
    assert {(t.path.name, t.stand_in) for t in tasks} == {("a.ipynb", True), ("a.ipynb", False)}
    assert deps[0].calls_subject and deps[0].asks_which_subject and not deps[1].differs


def test_a_chapter_that_only_calls_subject_gets_the_stand_in_pass_alone(tmp_path):
    # the same lines run on either path; subject()'s own fall-back is tests/test_full_mode.py's
    dep_path = notebook(tmp_path, "subj = ctcnet.course.book.subject(S)",
                        "print(subj.label)\nif S.mode == 'full':\n    pass", name="a.ipynb")
    plain = notebook(tmp_path, "x = 1", name="b.ipynb")
    tasks, deps = smoke.plan([dep_path, plain])
    assert [(t.path.name, t.stand_in) for t in tasks] == [("a.ipynb", True)]
    assert deps[0].differs and not deps[0].asks_which_subject
    everything, _ = smoke.plan([dep_path, plain], everything=True)
    assert ("b.ipynb", False) in {(t.path.name, t.stand_in) for t in everything}


def test_a_cell_that_does_not_parse_is_run_to_be_safe(tmp_path):
    dep = smoke.mode_dependence(notebook(tmp_path, "def broken(:\n    pass"))
    assert dep.differs and "does not parse" in dep.reasons[0]


def test_shell_and_magic_lines_are_not_python(tmp_path):
    dep = smoke.mode_dependence(notebook(tmp_path, "!pip install x\n%matplotlib inline\ny = 2"))
    assert not dep.differs, dep.reasons


def test_branches_no_cpu_smoke_can_take_are_listed(tmp_path):
    dep = smoke.mode_dependence(notebook(
        tmp_path, "FULL = S.mode == 'full' and S.cap == 'none'",
        "if S.device.type == 'cuda':\n    pass"))
    assert len(dep.unreachable) == 2
    assert "S.cap == 'none'" in dep.unreachable[0] and "'cuda'" in dep.unreachable[1]


def test_the_real_plan_runs_every_chapter_whose_code_mentions_the_mode():
    """Cross-check of the AST reading against a plain text search of each chapter's code: a
    chapter left out must not mention the mode, the cap, subject() or reproduction_plan(), and
    the book build must execute it (it is in _toc.yml)."""
    notebooks = smoke.default_notebooks()
    assert len(notebooks) >= 16
    tasks, deps = smoke.plan(notebooks)
    fall_back = {t.path for t in tasks if not t.stand_in}
    stand_in = {t.path for t in tasks if t.stand_in}
    toc = (ROOT / "_toc.yml").read_text()
    pattern = re.compile(r"\.mode\b|\.cap\b|\bsubject\(|\breproduction_plan\(|\bsettings\(\)"
                         r"|CTCNET_BOOK_(MODE|CAP)")
    for dep in deps:
        code = "\n".join(smoke._code_cells(dep.path))
        if pattern.search(code):
            assert dep.path in fall_back | stand_in, f"{dep.path.name} mentions the mode but is not run"
        else:
            assert dep.path not in fall_back or dep.reasons
            assert f"book/{dep.path.stem}" in toc, f"{dep.path.name} is executed by no build"
        if re.search(r"\bsubject\(", code):
            assert dep.path in stand_in, f"{dep.path.name} calls subject() but has no stand-in run"
            if re.search(r"\.(official|notice)\b", code):
                assert dep.path in fall_back, f"{dep.path.name} asks which subject it got"


@pytest.mark.parametrize("message, line", [
    ("A cell timed out while it was being executed, after 600 seconds.\nThe message was: x\n"
     "-------------------\nfor i in range(9):\n-------------------\n",
     "A cell timed out while it was being executed, after 600 seconds."),
    ("----\nTraceback (most recent call last)\n  File x, line 3\nValueError: bad size\n",
     "ValueError: bad size"),
])
def test_a_failure_is_reported_by_the_line_that_says_what_went_wrong(message, line):
    assert smoke._first_error_line(RuntimeError(message)) == line

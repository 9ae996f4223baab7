"""Packaging and repository-hygiene smoke tests (version, notebook checker, repo URL)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

import ctcnet

ROOT = Path(__file__).resolve().parents[1]


def _load_tool(name: str):
    tools = str(ROOT / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pyproject_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        return re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE).group(1)
    return tomllib.loads(text)["project"]["version"]


def test_version_matches_pyproject():
    assert ctcnet.__version__ == _pyproject_version()


def _notebook(cells: list[dict]) -> dict:
    return {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _code(source: str, outputs=None, execution_count=None) -> dict:
    return {"cell_type": "code", "metadata": {}, "source": source,
            "outputs": outputs or [], "execution_count": execution_count}


def _md(source: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


@pytest.fixture(scope="module")
def check_notebooks():
    return _load_tool("check_notebooks")


def _good_cells(check_notebooks) -> list[dict]:
    return [
        _md("# Chapter\n\n## Audience & objectives\n\nFor readers who ..."),
        _code(check_notebooks.canonical_first_cell(ROOT)),
        _code("x = 1 + 1\nx"),
    ]


def _run_check(check_notebooks, tmp_path: Path, nb: dict) -> int:
    path = tmp_path / "chapter.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    return check_notebooks.main([str(path)])


def test_check_notebooks_accepts_clean_notebook(check_notebooks, tmp_path):
    assert _run_check(check_notebooks, tmp_path, _notebook(_good_cells(check_notebooks))) == 0


def test_check_notebooks_flags_outputs(check_notebooks, tmp_path, capsys):
    cells = _good_cells(check_notebooks)
    cells[2] = _code("x = 1 + 1\nx", execution_count=3,
                     outputs=[{"output_type": "execute_result", "execution_count": 3,
                               "data": {"text/plain": "2"}, "metadata": {}}])
    assert _run_check(check_notebooks, tmp_path, _notebook(cells)) == 1
    err = capsys.readouterr().err
    assert "has outputs" in err and "execution count" in err


def test_check_notebooks_flags_missing_sections(check_notebooks, tmp_path, capsys):
    cells = [_md("# Chapter"), _code("import torch")]
    assert _run_check(check_notebooks, tmp_path, _notebook(cells)) == 1
    err = capsys.readouterr().err
    assert "Colab install cell" in err
    assert "Audience & objectives" in err


def test_check_notebooks_flags_wrong_repository(check_notebooks, tmp_path, capsys):
    cells = _good_cells(check_notebooks)
    url = check_notebooks.read_repo_url(ROOT)
    cells[1] = _code(cells[1]["source"].replace(url, url + "-fork"))
    assert _run_check(check_notebooks, tmp_path, _notebook(cells)) == 1
    assert f"git+{url}" in capsys.readouterr().err


def test_repository_url_is_consistent():
    problems = _load_tool("check_repo_url").check(ROOT)
    assert problems == []

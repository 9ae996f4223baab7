"""Packaging and repository-hygiene smoke tests: a plain install (no extras) imports and runs,
package data is complete, the version, the notebook checker and the repository URL."""

from __future__ import annotations

import importlib.util
import json
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
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


# What the extras bring; the core must run without any of them (a plain `pip install ctcnet`).
OPTIONAL = ("pandas", "matplotlib", "seaborn", "captum", "ipywidgets", "torchinfo", "skimage")
# The course and the analysis helpers are the parts of the package that may use the extras.
NOT_CORE = ("ctcnet.course", "ctcnet.analysis", "ctcnet.__main__")


def core_modules() -> list[str]:
    return [
        m.name
        for m in pkgutil.walk_packages(ctcnet.__path__, "ctcnet.")
        if not m.name.startswith(NOT_CORE)
    ]


def test_core_modules_import_no_optional_package():
    modules = core_modules()
    for name in ("ctcnet.model", "ctcnet.train", "ctcnet.evaluate", "ctcnet.upscale", "ctcnet.cli",
                 "ctcnet.weights", "ctcnet.runtime", "ctcnet.metrics", "ctcnet.stats"):
        assert name in modules
    # One fresh interpreter, checked after each import, so a failure names the module to blame.
    script = textwrap.dedent(f"""
        import importlib, sys
        for name in {modules!r}:
            importlib.import_module(name)
            loaded = [p for p in {OPTIONAL!r} if p in sys.modules]
            if loaded:
                sys.exit(f"importing {{name}} loaded {{loaded}}")
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]


BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {optional!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)")
    sys.meta_path.insert(0, Block())
    from ctcnet.cli import main
    sys.exit(main(sys.argv[1:]))
    """)


def test_cli_info_and_eval_run_with_every_optional_package_blocked(tmp_path):
    from PIL import Image

    from ctcnet import build_model
    from ctcnet.weights import save_checkpoint

    data = tmp_path / "faces"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(data / f"{i}.png")
    ckpt = save_checkpoint(tmp_path / "tiny.pt", build_model("tiny"))
    script = BLOCKER.format(optional=OPTIONAL)
    for argv in (["info"], ["eval", "--checkpoint", ckpt, "--data", data, "--out", tmp_path / "e"]):
        proc = subprocess.run([sys.executable, "-c", script, *map(str, argv)],
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert "95% CI" in proc.stdout
    assert (tmp_path / "e" / "per_image.csv").read_text().startswith("name,psnr,ssim")


def test_every_file_under_weights_is_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    package = ROOT / "ctcnet"
    matched = {p for pattern in config["tool"]["setuptools"]["package-data"]["ctcnet"]
               for p in package.glob(pattern)}
    shipped = [p for p in (package / "weights").rglob("*")  # the .py files are modules
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py"]
    assert (package / "weights" / "ablations" / "logs" / "full_s1_200steps.csv") in shipped  # the nested case
    assert [str(p.relative_to(package)) for p in shipped if p not in matched] == []


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

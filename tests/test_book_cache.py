"""The book's execution cache: tools/book_cache.py empties it when anything but a notebook's code
changed, and tools/book_timings.py tells the notebooks executed in a build from those taken from
the cache (`.ci/run` fails on the latter)."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cache_tool = _tool("book_cache")
timings = _tool("book_timings")


def test_config_executes_through_the_cache_that_the_tool_keys():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["execute"]
    assert config["execute_notebooks"] == "cache"
    assert not config.get("cache"), "the cache must be _build/.jupyter_cache, where the tool looks"
    make = (ROOT / "Makefile").read_text()
    assert make.index("tools/book_cache.py") < make.index("jupyter-book build")


def test_any_library_file_changes_the_key(tmp_path):
    (tmp_path / "ctcnet" / "weights").mkdir(parents=True)
    (tmp_path / "ctcnet" / "__pycache__").mkdir()
    (tmp_path / "ctcnet" / "model.py").write_text("x = 1\n")
    (tmp_path / "ctcnet" / "weights" / "w.pt").write_bytes(b"\0\1")
    (tmp_path / "ctcnet" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"junk")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    before = cache_tool.library_files(tmp_path)
    assert sorted(before) == ["ctcnet/model.py", "ctcnet/weights/w.pt", "pyproject.toml"]
    (tmp_path / "ctcnet" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"other")
    assert cache_tool.library_files(tmp_path) == before  # bytecode is not an input
    (tmp_path / "ctcnet" / "weights" / "w.pt").write_bytes(b"\0\2")
    after = cache_tool.library_files(tmp_path)
    old, new = ({"parts": {"library": files}} for files in (before, after))
    for part in ("execute_config", "environment", "data"):
        new["parts"][part] = old["parts"][part] = {} if part != "execute_config" else ""
    assert cache_tool.changes(old, new) == ["library: ctcnet/weights/w.pt"]


def test_the_environment_part_sees_book_variables_and_packages(monkeypatch):
    monkeypatch.delenv("CTCNET_BOOK_MODE", raising=False)
    base = cache_tool.environment()
    monkeypatch.setenv("CTCNET_BOOK_MODE", "full")
    assert cache_tool.environment()["variables"] != base["variables"]
    monkeypatch.setenv("SOMETHING_ELSE", "1")
    monkeypatch.delenv("CTCNET_BOOK_MODE")
    assert cache_tool.environment() == base
    assert "distributions" in base and base["python"]


def test_a_changed_key_empties_the_cache_and_an_unchanged_one_keeps_it(tmp_path, monkeypatch,
                                                                       capsys):
    cache = tmp_path / "_build" / ".jupyter_cache"
    key = {"key": "a", "parts": {"library": {"ctcnet/x.py": "1"}, "execute_config": "",
                                 "environment": {}, "data": {}}}
    monkeypatch.setattr(cache_tool, "inputs", lambda: key)
    assert cache_tool.main(["--cache", str(cache)]) == 0
    assert "new, every notebook will be executed" in capsys.readouterr().out
    (cache / "global.db").write_text("executed outputs")
    assert cache_tool.main(["--cache", str(cache)]) == 0
    assert "kept" in capsys.readouterr().out and (cache / "global.db").exists()
    key = {"key": "b", "parts": dict(key["parts"], library={"ctcnet/x.py": "2"})}
    assert cache_tool.main(["--cache", str(cache), "--status"]) == 0
    assert "stale (library: ctcnet/x.py)" in capsys.readouterr().out
    assert (cache / "global.db").exists()  # --status changes nothing
    assert cache_tool.main(["--cache", str(cache)]) == 0
    assert "cleared" in capsys.readouterr().out
    assert not (cache / "global.db").exists()
    assert json.loads((cache / cache_tool.KEY_FILE).read_text())["key"] == "b"


def test_cached_notebooks_are_told_from_executed_ones(tmp_path, capsys):
    pytest.importorskip("jupyter_cache")
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    src = tmp_path
    cache = get_cache(str(src / "_build" / ".jupyter_cache"))
    for name, code in (("old", "1 + 1"), ("new", "2 + 2")):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
        nbformat.write(nb, src / f"{name}.ipynb")
        if name == "new":  # executed after the build started
            time.sleep(1.1)
            (src / "_build" / "start").touch()
            time.sleep(1.1)
        cache.cache_notebook_bundle(CacheBundleIn(nb, str(src / f"{name}.ipynb"),
                                                  data={"execution_seconds": 3.0}),
                                    check_validity=False)
    args = ["--build-dir", str(src / "_build"), "--src-dir", str(src),
            "--since", str(src / "_build" / "start")]
    assert timings.main(args) == 0
    table = capsys.readouterr().out
    assert "| new.ipynb | 3.0 | executed (cache mode) | yes |" in table
    assert "| old.ipynb | 3.0 | cached (executed " in table
    assert "executed in this build: 1 of 2" in table
    assert timings.main(args + ["--require-executed"]) == 1
    assert "old.ipynb" in capsys.readouterr().err
    os.utime(src / "_build" / "start", (0, 0))  # a build that started before both
    assert timings.main(args + ["--require-executed"]) == 0

"""tools/book_execute.py: notebooks executed before the book build, stored in the execution cache
as myst-nb would store them, and written back with their outputs after the build."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("book_execute", ROOT / "tools" / "book_execute.py")
book_execute = importlib.util.module_from_spec(spec)
spec.loader.exec_module(book_execute)

jupyter_cache = pytest.importorskip("jupyter_cache")


def _notebook(tmp_path: Path, code: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A page"), nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "book" / "page.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_every_notebook_run_alone_is_in_the_book():
    assert set(book_execute.ALONE) <= set(book_execute.book_notebooks())


def test_an_executed_notebook_is_cached_and_written_back_with_its_outputs(tmp_path, monkeypatch):
    path = _notebook(tmp_path, "print(6 * 7)")
    monkeypatch.setattr(book_execute, "ROOT", tmp_path)
    monkeypatch.setattr(book_execute, "book_notebooks", lambda: ["book/page.ipynb"])
    name, executed, seconds, error = book_execute._execute("book/page.ipynb", 60, 1)
    assert error == "" and seconds > 0
    cache = jupyter_cache.get_cache(str(tmp_path / "cache"))
    stage = cache.add_nb_to_project(str(path))
    cache.cache_notebook_bundle(jupyter_cache.base.CacheBundleIn(executed, stage.uri),
                                check_validity=False, overwrite=True)
    # what the build (myst-nb) finds: the stored notebook, unexecuted, matches the cache record
    cache.match_cache_notebook(nbformat.read(path, as_version=4))
    assert book_execute.write_executed(cache, tmp_path / "out") == 0
    written = nbformat.read(tmp_path / "out" / "book" / "page.ipynb", as_version=4)
    assert written.cells[1].outputs[0]["text"] == "42\n"


def test_a_notebook_that_raises_returns_its_error(tmp_path, monkeypatch):
    _notebook(tmp_path, "raise ValueError('a broken chapter')")
    monkeypatch.setattr(book_execute, "ROOT", tmp_path)
    _, _, _, error = book_execute._execute("book/page.ipynb", 60, 1)
    assert "a broken chapter" in error


def test_writing_back_fails_when_a_notebook_is_not_in_the_cache(tmp_path, monkeypatch, capsys):
    _notebook(tmp_path, "x = 1")
    monkeypatch.setattr(book_execute, "ROOT", tmp_path)
    monkeypatch.setattr(book_execute, "book_notebooks", lambda: ["book/page.ipynb"])
    cache = jupyter_cache.get_cache(str(tmp_path / "cache"))
    assert book_execute.write_executed(cache, tmp_path / "out") == 1
    assert "not in the execution cache" in capsys.readouterr().err

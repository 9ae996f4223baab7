"""tools/book_links.py: links to the web book become relative in the built book, and a link to a
page or anchor that does not exist fails the build (checked on a tiny Jupyter Book in tmp)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE = "https://example-org.github.io/tiny-book/"
JB_MAIN = "from jupyter_book.cli.main import main; main()"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


book_links = _load("book_links")


def _site(tmp_path: Path, pages: dict[str, str]) -> Path:
    for rel, body in pages.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"<html><body>{body}</body></html>")
    return tmp_path


def test_rewrite_makes_links_relative_and_reports_missing_pages_and_anchors(tmp_path):
    site = _site(tmp_path, {
        "index.html": '<section id="top"></section>',
        "book/a.html": f'<a class="reference external" href="{BASE}book/b.html#sec-2">b</a>'
                       f'<a href="{BASE}book/bibliography.html#cite-gao2023">cite</a>'
                       f'<a href="{BASE}">home</a>'
                       f'<a href="{BASE}book/missing.html">gone</a>'
                       f'<a href="{BASE}book/b.html#nowhere">bad anchor</a>'
                       '<a href="https://example.org/other.html#x">elsewhere</a>',
        "book/b.html": '<section id="sec-2"><h2>Two</h2></section>',
        "book/bibliography.html": '<div id="cite-gao2023">Gao et al.</div>',
        "_static/x.html": f'<a href="{BASE}book/missing.html">not a page</a>',
    })
    n, problems = book_links.rewrite_site(site, BASE.rstrip("/"))
    assert n == 5
    assert len(problems) == 2
    assert "not in the book" in problems[0] and "book/missing.html" in problems[0]
    assert "missing anchor #nowhere of book/b.html" in problems[1]
    html = (site / "book/a.html").read_text()
    assert 'href="b.html#sec-2"' in html and 'href="bibliography.html#cite-gao2023"' in html
    assert 'href="../index.html"' in html
    assert 'href="https://example.org/other.html#x"' in html  # other sites are left alone
    assert BASE + "book/missing.html" in html  # a broken link is reported, not rewritten


def test_no_baseurl_rewrites_nothing(tmp_path):
    site = _site(tmp_path, {"a.html": f'<a href="{BASE}a.html">x</a>'})
    assert book_links.rewrite_site(site, "") == (0, [])


CONFIG = f"""\
title: tiny
only_build_toc_files: true
execute:
  execute_notebooks: "off"
html:
  baseurl: "{BASE}"
bibtex_bibfiles:
  - refs.bib
sphinx:
  local_extensions:
    book_links: {ROOT / "tools"}
  config:
    bibtex_reference_style: author_year
    bibtex_cite_id: "cite-{{key}}"
"""
TOC = "format: jb-book\nroot: intro\nchapters:\n  - file: two\n  - file: bibliography\n"
BIB = textwrap.dedent("""\
    @article{gao2023ctcnet, author = {Gao, Guangwei and others}, title = {CTCNet},
      journal = {IEEE TIP}, year = {2023}}
    @article{liu2015celeba, author = {Liu, Ziwei}, title = {CelebA}, journal = {ICCV},
      year = {2015}}
    """)


@pytest.mark.skipif(shutil.which("jupyter-book") is None
                    and importlib.util.find_spec("jupyter_book") is None,
                    reason="jupyter-book is not installed (pip install -e '.[book]')")
def test_tiny_book_build_rewrites_links_and_fails_on_broken_ones(tmp_path):
    (tmp_path / "_config.yml").write_text(CONFIG)
    (tmp_path / "_toc.yml").write_text(TOC)
    (tmp_path / "refs.bib").write_text(BIB)
    (tmp_path / "bibliography.md").write_text("# Bibliography\n\n```{bibliography}\n:all:\n```\n")
    (tmp_path / "two.md").write_text("# Two\n\n## A section\n\nText.\n")
    good = (f"# Intro\n\nSee [the section]({BASE}two.html#a-section) and "
            f"([Gao et al., 2023]({BASE}bibliography.html#cite-gao2023ctcnet)).\n")
    (tmp_path / "intro.md").write_text(good)

    def build():
        return subprocess.run([sys.executable, "-c", JB_MAIN, "build", "--all",
                               "-W", "-n", "--keep-going", str(tmp_path)],
                              capture_output=True, text=True, timeout=300)

    proc = build()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = (tmp_path / "_build/html/intro.html").read_text()
    assert 'href="two.html#a-section"' in html
    assert 'href="bibliography.html#cite-gao2023ctcnet"' in html
    bib = (tmp_path / "_build/html/bibliography.html").read_text()
    assert 'id="cite-gao2023ctcnet"' in bib and 'id="cite-liu2015celeba"' in bib  # :all:

    (tmp_path / "intro.md").write_text(good + f"\n[Gone]({BASE}two.html#no-such-section) and "
                                       f"([Nobody, 2020]({BASE}bibliography.html#cite-nobody)).\n")
    proc = build()
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "missing anchor #no-such-section of two.html" in out
    assert "missing anchor #cite-nobody of bibliography.html" in out


def test_check_repo_url_wants_the_pages_address_of_the_repository(tmp_path):
    check_repo_url = _load("check_repo_url")
    assert check_repo_url.pages_url("https://github.com/Ctcnet-Book/ctcnet-book") == \
        "https://ctcnet-book.github.io/ctcnet-book/"
    (tmp_path / "book").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        '[project.urls]\nHomepage = "https://github.com/o/r"\n')
    config = 'repository:\n  url: https://github.com/o/r\nhtml:\n  baseurl: "{}"\n'
    (tmp_path / "_config.yml").write_text(config.format("https://o.github.io/r/"))
    (tmp_path / "book" / "x.md").write_text("[ok](https://o.github.io/r/book/a.html#s)\n")
    assert check_repo_url.check(tmp_path) == []
    (tmp_path / "book" / "y.md").write_text("[bad](https://o.github.io/other/book/a.html)\n")
    (problem,) = check_repo_url.check(tmp_path)
    assert "not under html.baseurl" in problem
    (tmp_path / "book" / "y.md").unlink()
    (tmp_path / "_config.yml").write_text(config.format("https://example.org/book/"))
    problems = check_repo_url.check(tmp_path)  # the address, and the link no longer under it
    assert len(problems) == 2
    assert "html.baseurl is 'https://example.org/book/'" in problems[0]

"""Links to the web book, written as absolute URLs, made relative in the built book and checked.

The chapters are read in two homes (docs/AUTHORING.md): on Colab a link must be an absolute URL
of the web book (``html.baseurl`` in ``_config.yml``, e.g.
``https://ctcnet-book.github.io/ctcnet-book/book/08_ctcnet.html#lgcm``), while in the built book
the same link should stay inside the copy being read (offline, a local build, a preview). As a
Sphinx extension (``sphinx: local_extensions`` in ``_config.yml``), after the HTML is written,
this rewrites every ``<a href>`` under ``html_baseurl`` into a relative link and logs a warning
(an error under ``-W``) for each one whose page is not in the build or whose ``#anchor`` is not
an ``id`` of that page. Citations link to ``bibliography.html#cite-KEY``: ``bibtex_cite_id`` is
``cite-{key}``, so a key missing from the bibliography page fails the build too.

``tools/check_repo_url.py`` checks that ``html.baseurl`` is the GitHub Pages address of
``repository.url`` and that every web-book link in the sources starts with it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

A_HREF = re.compile(r"""(<a\b[^>]*?\bhref=)(["'])(.*?)\2""", re.I | re.S)
ID_ATTR = re.compile(r"""\bid=(["'])(.*?)\1""", re.I)
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads"}


def normalise_base(base: str) -> str:
    base = (base or "").strip()
    return base if not base or base.endswith("/") else base + "/"


def page_ids(html: str) -> set[str]:
    return {m.group(2) for m in ID_ATTR.finditer(html)}


def resolve(url: str, base: str) -> tuple[str, str] | None:
    """``(page path relative to the site root, anchor)`` for a URL under ``base``, else None."""
    if not base or not url.startswith(base):
        return None
    parts = urlsplit(url)
    path = unquote(url[len(base):].split("#", 1)[0].split("?", 1)[0])
    if path == "" or path.endswith("/"):
        path += "index.html"
    return path, unquote(parts.fragment)


def rewrite_site(outdir: Path, base: str, write: bool = True) -> tuple[int, list[str]]:
    """Rewrite (or, with ``write=False``, only check) the web-book links of every page.

    Returns (links to the web book, problems)."""
    base = normalise_base(base)
    outdir = Path(outdir)
    pages = [p for p in sorted(outdir.rglob("*.html"))
             if not SKIP_DIRS.intersection(p.relative_to(outdir).parts[:-1])]
    texts = {p.relative_to(outdir).as_posix(): p.read_text(encoding="utf-8") for p in pages}
    ids: dict[str, set[str]] = {}
    n_links, problems = 0, []

    for rel, text in texts.items():
        def fix(m: re.Match, rel=rel) -> str:
            nonlocal n_links
            target = resolve(m.group(3).replace("&amp;", "&"), base)
            if target is None:
                return m.group(0)
            n_links += 1
            path, anchor = target
            if path not in texts:
                problems.append(f"{rel}: link to a page that is not in the book: {m.group(3)}")
                return m.group(0)
            if anchor:
                if path not in ids:
                    ids[path] = page_ids(texts[path])
                if anchor not in ids[path]:
                    problems.append(f"{rel}: link to a missing anchor #{anchor} of {path}: "
                                    f"{m.group(3)}")
            new = posixpath.relpath(path, posixpath.dirname(rel) or ".")
            if anchor:
                new += "#" + anchor
            return f"{m.group(1)}{m.group(2)}{new}{m.group(2)}"

        new_text = A_HREF.sub(fix, text)
        if write and new_text != text:
            (outdir / rel).write_text(new_text, encoding="utf-8")
    return n_links, problems


# ------------------------------------------------------------------------- Sphinx extension
def _build_finished(app, exc) -> None:
    if exc is not None or app.builder.format != "html":
        return
    from sphinx.util import logging

    log = logging.getLogger(__name__)
    base = normalise_base(app.config.html_baseurl)
    if not base:
        log.warning("book_links: html_baseurl is empty: links to the web book cannot be checked "
                    "(set html.baseurl in _config.yml)", type="book_links")
        return
    n, problems = rewrite_site(Path(app.outdir), base)
    for problem in problems:
        log.warning(f"book_links: {problem}", type="book_links")
    log.info(f"book_links: {n} links to {base} made relative, {len(problems)} broken")


def setup(app):
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

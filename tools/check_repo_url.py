#!/usr/bin/env python3
"""Check that the repository URL is used consistently (run by ``make test``).

The single source of truth is ``repository.url`` in ``_config.yml``.  This script
fails when

* ``pyproject.toml`` ``[project.urls] Homepage`` differs from it;
* the first code cell of a notebook in ``book/`` does not ``pip install``
  ``git+<url>`` (the Colab install cell, see ``tools/check_notebooks.py``);
* any ``git+https://github.com/OWNER/REPO`` or Colab ``/github/OWNER/REPO`` link in
  the notebooks, the book's markdown, README.md or environment.yml points to a
  different repository;
* ``html.baseurl`` (the web book, the one place its address lives) is not the GitHub Pages
  address of the repository (``https://OWNER.github.io/REPO/``), or a link in those files
  points to a GitHub Pages site other than it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_notebooks import REPO_ROOT, find_notebooks, read_baseurl, read_repo_url  # noqa: E402

GIT_LINK_RE = re.compile(r"git\+(https://github\.com/[\w.-]+/[\w.-]+?)(?:\.git)?(?![\w.-])")
COLAB_LINK_RE = re.compile(r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)")
PAGES_LINK_RE = re.compile(r"https?://[\w-]+\.github\.io/[\w.-]*/?", re.IGNORECASE)


def pages_url(repo_url: str) -> str:
    """The GitHub Pages address of ``https://github.com/OWNER/REPO``."""
    owner, repo = repo_url.removeprefix("https://github.com/").split("/")[:2]
    return f"https://{owner.lower()}.github.io/{repo}/"


def pyproject_homepage(root: Path) -> str | None:
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        m = re.search(r"^\[project\.urls\][^\[]*?^Homepage\s*=\s*\"([^\"]+)\"", text,
                      re.MULTILINE | re.DOTALL)
        return m.group(1) if m else None
    return tomllib.loads(text).get("project", {}).get("urls", {}).get("Homepage")


def first_code_cell(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            src = cell.get("source", "")
            return "".join(src) if isinstance(src, list) else src
    return ""


def check(root: Path = REPO_ROOT) -> list[str]:
    url = read_repo_url(root)
    owner_repo = url.removeprefix("https://github.com/")
    problems: list[str] = []

    homepage = pyproject_homepage(root)
    if (homepage or "").rstrip("/") != url:
        problems.append(f"pyproject.toml [project.urls] Homepage is {homepage!r}, "
                        f"_config.yml repository.url is {url!r}")

    baseurl = read_baseurl(root)
    if baseurl != pages_url(url):
        problems.append(f"_config.yml html.baseurl is {baseurl!r}, the GitHub Pages address of "
                        f"repository.url is {pages_url(url)!r}")

    for nb in find_notebooks(root):
        if f"git+{url}" not in first_code_cell(nb):
            problems.append(f"{nb.relative_to(root)}: first code cell does not install git+{url}")

    files = [*find_notebooks(root), *sorted((root / "book").rglob("*.md"))]
    files += [root / name for name in ("README.md", "environment.yml") if (root / name).exists()]
    for path in files:
        text = path.read_text(encoding="utf-8")
        for m in GIT_LINK_RE.finditer(text):
            if m.group(1).rstrip("/") != url:
                problems.append(f"{path.relative_to(root)}: git+{m.group(1)} != git+{url}")
        for m in COLAB_LINK_RE.finditer(text):
            if m.group(1) != owner_repo:
                problems.append(f"{path.relative_to(root)}: Colab link to {m.group(1)} "
                                f"!= {owner_repo}")
        for m in PAGES_LINK_RE.finditer(text):
            if baseurl and not (m.group(0) + "/").startswith(baseurl):
                problems.append(f"{path.relative_to(root)}: web-book link {m.group(0)} is not "
                                f"under html.baseurl {baseurl}")
    return problems


def main() -> int:
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("check_repo_url: FAILED (the URL lives in _config.yml repository.url)",
              file=sys.stderr)
        return 1
    print(f"check_repo_url: OK ({read_repo_url()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Fail on what a reader would see as a fault in the built book (``_build/html``).

Run by ``make book`` after ``jupyter-book build``::

    .venv/bin/python tools/check_html.py _build/html

It reads every generated page (not the static theme files) and reports, one line per fault:

* **stray repr output**: a cell whose only visible result is the repr of its last expression
  (``'0.48'``, ``<torch._C.Generator object at 0x...>``, a lone ``0``) -- the cell should end
  in ``;``, assign the value, or print a sentence;
* **broken maths**: a literal ``$`` or ``$$`` left next to a rendered maths span, or a ``$$`` in
  running text (MyST only treats ``$$`` as display maths when it starts a paragraph; otherwise
  it swallows the prose after it);
* **stderr / warnings**: any ``stderr`` output block, or a stream output that contains a Python
  warning (``SomethingWarning:``) -- warnings are fixed or silenced with a stated reason;
* **truncated table cells**: a table cell ending in ``...``/``…`` (pandas' column or value
  truncation);
* **small figures**: a figure in a cell output smaller than ``--min-px`` on its longer side.

Exit status 1 when anything is found, 0 otherwise.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image

_REPR = re.compile(
    r"""^(?:'[^'\n]{0,80}'|"[^"\n]{0,80}"|<[^\n>]{1,160}>|-?\d+(?:\.\d+)?(?:e-?\d+)?|None|True|False)$"""
)
_WARNING = re.compile(r"\b[A-Z][A-Za-z]*Warning: ")


class _Page(HTMLParser):
    """Collects cell outputs, table cells and image sources of one page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str]] = []  # (tag, class)
        self.text_plain: list[str] = []
        self.streams: list[str] = []
        self.stderr = 0
        self.cells: list[str] = []
        self.images: list[str] = []
        self._buf: list[str] | None = None
        self._buf_kind = ""
        self._buf_depth = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class") or ""
        self.stack.append((tag, cls))
        if tag == "div" and "output" in cls.split():
            if "stderr" in cls.split():
                self.stderr += 1
            kind = ("text_plain" if "text_plain" in cls.split()
                    else "stream" if "stream" in cls.split() else "")
            if kind and self._buf is None:
                self._buf, self._buf_kind, self._buf_depth = [], kind, len(self.stack)
        if tag in ("td", "th"):
            self._cell = []
        if tag == "img" and any("cell_output" in c or "output" in c.split() for _, c in self.stack):
            src = dict(attrs).get("src")
            if src:
                self.images.append(src)

    def handle_endtag(self, tag):
        if self._buf is not None and tag == "div" and len(self.stack) == self._buf_depth:
            text = "".join(self._buf).strip("\n")
            (self.text_plain if self._buf_kind == "text_plain" else self.streams).append(text)
            self._buf = None
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        if self._buf is not None:
            self._buf.append(data)
        if self._cell is not None:
            self._cell.append(data)


def check_page(path: Path, root: Path, min_px: int) -> list[str]:
    raw = path.read_text(encoding="utf-8", errors="replace")
    page = _Page()
    page.feed(raw)
    name = str(path.relative_to(root))
    faults = []
    for text in page.text_plain:
        if _REPR.match(text.strip()):
            faults.append(f"{name}: stray repr output {text.strip()[:60]!r}")
    if page.stderr:
        faults.append(f"{name}: {page.stderr} stderr output block(s)")
    for text in page.streams:
        m = _WARNING.search(text)
        if m:
            line = next(ln for ln in text.splitlines() if m.group(0) in ln)
            faults.append(f"{name}: warning in output: {line.strip()[:100]}")
    if re.search(r'\$\s*<span class="math|</span>\s*\$|\$\s*<div class="math|</div>\s*\$', raw):
        faults.append(f"{name}: a literal $ next to a maths span (broken maths)")
    body = re.sub(r"<(script|style|pre|code)\b.*?</\1>", "", raw, flags=re.S)
    body = re.sub(r'<(span|div) class="math[^"]*">.*?</\1>', "", body, flags=re.S)
    if "$$" in html.unescape(re.sub(r"<[^>]+>", "", body)):
        faults.append(f"{name}: '$$' in running text (display maths must start a paragraph)")
    for cell in page.cells:
        if cell.endswith(("...", "…")) and len(cell) > 3:
            faults.append(f"{name}: truncated table cell {cell[-40:]!r}")
    for src in page.images:
        if src.startswith("data:"):
            continue
        img_path = (path.parent / src.split("#")[0].split("?")[0]).resolve()
        if img_path.suffix.lower() not in (".png", ".jpg", ".jpeg") or not img_path.exists():
            continue
        with Image.open(img_path) as im:
            w, h = im.size
        if max(w, h) < min_px:
            faults.append(f"{name}: figure {img_path.name} is only {w}x{h} px (< {min_px})")
    return faults


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html_dir", nargs="?", default="_build/html", type=Path)
    ap.add_argument("--min-px", type=int, default=400,
                    help="smallest allowed longer side of an output figure (default 400)")
    args = ap.parse_args(argv)
    root = args.html_dir
    pages = [p for p in sorted(root.rglob("*.html"))
             if not any(part.startswith("_") for part in p.relative_to(root).parts)]
    if not pages:
        print(f"check_html: no pages under {root} (build the book first)", file=sys.stderr)
        return 1
    faults = [f for p in pages for f in check_page(p, root, args.min_px)]
    for f in faults:
        print(f"check_html: {f}")
    print(f"check_html: {len(pages)} page(s), {len(faults)} fault(s)")
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main())

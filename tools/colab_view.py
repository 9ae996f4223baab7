#!/usr/bin/env python3
"""The chapters as Colab shows them: render, check for MyST, fold, numbers, browser.

Colab renders a notebook's markdown as CommonMark with GitHub's tables, raw HTML and MathJax for
``$…$`` / ``$$…$$``; it knows nothing of MyST. This tool renders every markdown cell that way
(markdown-it-py, maths protected from the markdown parser as Colab does) into one HTML page per
notebook and fails on what a Colab reader would see as raw markup or miss:

* **MyST constructs** (docs/AUTHORING.md says what to write instead): roles (``{cite:p}`x```,
  ``{glue:text}`x```, ``{doc}`x```…), directive fences (```` ```{note} ````, ``:::{admonition}``)
  and their option lines (``:class: dropdown``), ``(label)=`` targets, ``%`` comment lines,
  ``{{ substitutions }}``, equation labels (``$$ … $$ (label)``), ``+++`` block breaks;
* links and images that Colab cannot follow (a relative path: the notebook is opened alone);
* **folding**: every ``<details>`` closes in its own cell and starts with a ``<summary>``, with a
  blank line after ``</summary>`` (otherwise CommonMark shows the markdown inside as raw text);
  every code cell of an "Exercises" section is a folded solution (first line ``# @title …``,
  metadata ``cellView: form`` for Colab and the tag ``hide-cell`` for the book), and no answer is
  written out unfolded;
* with ``--check-numbers DIR``: every ``<!--out: LABEL-->`` marker of the *executed* notebooks in
  DIR (Jupyter Book 1 writes them to ``_build/jupyter_execute/book``) against what the cells
  printed: the first number after ``LABEL`` in the text outputs (streams and ``text/plain``), rounded
  to the precision of the number the prose quotes right before the marker, must equal it to ±1
  in the last digit; ``<!--out: LABEL ~20%-->`` allows a relative difference instead;
* with ``--browser``: the rendered views are opened in headless Chromium (the machinery of
  ``tools/check_browser.py``, MathJax served locally from ``_build/web_assets``) and fail on maths
  that did not typeset and on raw markup left in the visible text.

Notebooks listed in ``tools/colab_view_pending.txt`` (chapters not yet rewritten for both homes)
are counted and reported but do not fail; a listed notebook that has become clean fails until it
is taken off the list, so the list only shrinks.

    python tools/colab_view.py                       # the markup check (make test)
    python tools/colab_view.py --counts              # MyST constructs per notebook, by kind
    python tools/colab_view.py --out _build/colab_view --browser     # + views in Chromium
    python tools/colab_view.py --check-numbers _build/jupyter_execute/book   # after the build
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PENDING_FILE = ROOT / "tools" / "colab_view_pending.txt"
DEFAULT_OUT = ROOT / "_build" / "colab_view"
WEB_ASSETS = ROOT / "_build" / "web_assets"
MATHJAX_REL = "mathjax/es5/tex-mml-chtml.js"  # inside the web-assets folder

# ---------------------------------------------------------------------------- MyST patterns
ROLE_NAME = r"[A-Za-z][\w.+-]*(?::[\w.+-]+)*"
ROLE_AT_END = re.compile(r"\{(" + ROLE_NAME + r")\}$")  # text right before a code span
ROLE_IN_TEXT = re.compile(r"\{(" + ROLE_NAME + r")\}`[^`\n]*`")  # a role inside code/HTML
DIRECTIVE_INFO = re.compile(r"^\{(" + ROLE_NAME + r")\}")  # ```{note} ...
COLON_FENCE = re.compile(r"^:{3,}\s*(\{(" + ROLE_NAME + r")\})?")  # :::{note} and its closing :::
NESTED_FENCE = re.compile(r"^(?:`{3,}|~{3,})\s*\{(" + ROLE_NAME + r")\}")  # inside a directive
OPTION_LINE = re.compile(r"^:[\w-]+:(?:\s|$)")  # :class: dropdown
TARGET_LINE = re.compile(r"^\([^()\s]+\)=\s*$")  # (my-label)=
COMMENT_LINE = re.compile(r"^%")  # % a MyST comment
BLOCK_BREAK = re.compile(r"^\+\+\+(?:\s|$)")
SUBSTITUTION = re.compile(r"\{\{[^{}\n]*\}\}")
# A link or image target Colab resolves: the web, an anchor in the same notebook, an attachment.
ABSOLUTE_TARGET = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|#|//)")
HTML_SRC_HREF = re.compile(r"""<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']*)["']""", re.I)

# Inline markdown that CommonMark leaves raw inside an HTML block (no blank line after the tag).
MARKDOWN_IN_HTML = re.compile(r"\*\*[^*\n]+\*\*|`[^`\n]+`|\]\([^)\s]+\)|\$[^$\n]+\$|^\s*[-*] ",
                              re.M)


@dataclass
class Finding:
    cell: int  # index in nb["cells"]
    kind: str  # "role {cite:p}", "directive fence", "unfolded solution", ...
    excerpt: str
    myst: bool = True  # a MyST construct (counted as such); False for the other checks

    def line(self, name: str) -> str:
        return f"{name}: cell {self.cell}: {self.kind}: {self.excerpt}"


def _short(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def cell_source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


# ------------------------------------------------------------------------------- rendering
def markdown_parser():
    """CommonMark + GFM tables and strikethrough + raw HTML, maths kept for MathJax (Colab)."""
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    def render_math(content: str, info: dict) -> str:
        tex = html.escape(content)
        if info.get("display_mode"):
            return f'<div class="math">\\[{tex}\\]</div>\n'
        return f'<span class="math">\\({tex}\\)</span>'

    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    # Colab takes $$…$$ inside a line as display maths, and never "$ x $" with inner spaces
    # any differently: the plugin's defaults match that closely enough for a check.
    md.use(dollarmath_plugin, allow_labels=True, allow_space=True, allow_digits=False,
           double_inline=True, renderer=render_math)
    return md


def _myst_in_lines(text: str, cell: int, in_code: bool = False) -> list[Finding]:
    """Line-level MyST in visible text (a paragraph's source, or a code block's content)."""
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        m = COLON_FENCE.match(stripped)
        if m:
            if m.group(1):
                found.append(Finding(cell, "directive fence", _short(stripped)))
            continue  # a bare closing ::: belongs to its opening fence
        if in_code and NESTED_FENCE.match(stripped):  # a directive nested in a shown directive
            found.append(Finding(cell, "directive fence", _short(stripped)))
            continue
        if OPTION_LINE.match(stripped):
            found.append(Finding(cell, "directive option line", _short(stripped)))
        elif TARGET_LINE.match(stripped):
            found.append(Finding(cell, "(label)= target", _short(stripped)))
        elif not in_code and COMMENT_LINE.match(line):
            found.append(Finding(cell, "% comment line", _short(stripped)))
        elif BLOCK_BREAK.match(stripped):
            found.append(Finding(cell, "+++ block break", _short(stripped)))
    return found


def _check_target(target: str, cell: int, what: str) -> list[Finding]:
    if not target or ABSOLUTE_TARGET.match(target):
        return []
    return [Finding(cell, f"relative {what} (Colab opens the notebook alone)",
                    _short(target), myst=False)]


def scan_markdown(text: str, cell: int, md=None) -> list[Finding]:
    """Every MyST construct, and every link or image Colab cannot follow, in one markdown cell."""
    md = md or markdown_parser()
    found: list[Finding] = []
    for tok in md.parse(text):
        if tok.type in ("fence", "code_block"):
            m = DIRECTIVE_INFO.match(tok.info.strip()) if tok.type == "fence" else None
            if m:  # a directive shown as a code block: its options and roles show too
                found.append(Finding(cell, "directive fence", _short(f"```{tok.info}")))
                found += _myst_in_lines(tok.content, cell, in_code=True)
                found += [Finding(cell, f"role {{{r.group(1)}}}", _short(r.group(0)))
                          for r in ROLE_IN_TEXT.finditer(tok.content)]
        elif tok.type == "math_block_label":
            found.append(Finding(cell, "equation label", _short(f"$$ … $$ ({tok.info})")))
        elif tok.type == "html_block":
            found += [Finding(cell, f"role {{{r.group(1)}}}", _short(r.group(0)))
                      for r in ROLE_IN_TEXT.finditer(tok.content)]
            found += [Finding(cell, "substitution", _short(s.group(0)))
                      for s in SUBSTITUTION.finditer(tok.content)]
            for target in HTML_SRC_HREF.findall(tok.content):
                found += _check_target(target, cell, "link or image")
            raw = MARKDOWN_IN_HTML.search(tok.content)
            if raw:
                found.append(Finding(
                    cell, "markdown inside an HTML block shows raw (leave a blank line after "
                    "the HTML line)", _short(raw.group(0)), myst=False))
        elif tok.type == "inline":
            found += _myst_in_lines(tok.content, cell)
            children = tok.children or []
            for i, child in enumerate(children):
                if child.type == "text":
                    m = ROLE_AT_END.search(child.content)
                    nxt = children[i + 1] if i + 1 < len(children) else None
                    if m and nxt is not None and nxt.type == "code_inline":
                        found.append(Finding(cell, f"role {{{m.group(1)}}}",
                                             _short(f"{m.group(0)}`{nxt.content}`")))
                    found += [Finding(cell, "substitution", _short(s.group(0)))
                              for s in SUBSTITUTION.finditer(child.content)]
                elif child.type in ("link_open", "image"):
                    key = "href" if child.type == "link_open" else "src"
                    found += _check_target(str(child.attrs.get(key, "")), cell,
                                           "link" if key == "href" else "image")
                elif child.type == "html_inline":
                    for target in HTML_SRC_HREF.findall(child.content):
                        found += _check_target(target, cell, "link or image")
    return found


# ------------------------------------------------------------------------ folding checks
DETAILS_OPEN = re.compile(r"<details\b[^>]*>", re.I)
DETAILS_CLOSE = re.compile(r"</details\s*>", re.I)
SUMMARY = re.compile(r"<summary\b[^>]*>.*?</summary\s*>", re.I | re.S)
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXERCISES = re.compile(r"^(?:[\d.]+\s*)?exercises\b", re.I)
SOLUTION_LINE = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*|\*\*|__)?[ \t]*(?:solution|answer)s?\b[^\n]*",
                           re.I | re.M)
TITLE_LINE = re.compile(r"^#\s*@title\b")


def check_details(text: str, cell: int) -> list[Finding]:
    """Each <details> closes in this cell, starts with a <summary>, and its markdown renders."""
    found = []
    opens = list(DETAILS_OPEN.finditer(text))
    closes = list(DETAILS_CLOSE.finditer(text))
    if len(opens) != len(closes):
        found.append(Finding(cell, "unclosed <details> (each cell is rendered alone: close it in "
                             "the same cell)" if len(opens) > len(closes) else
                             "</details> without its <details>",
                             f"{len(opens)} <details>, {len(closes)} </details>", myst=False))
    for m in opens:
        rest = text[m.end():]
        end = DETAILS_CLOSE.search(rest)
        body = rest[: end.start()] if end else rest
        summary = SUMMARY.match(body.lstrip())
        if not summary:
            found.append(Finding(cell, "<details> without a <summary> right after it",
                                 _short(text[m.start():m.start() + 60]), myst=False))
            continue
        after = body.lstrip()[summary.end():]
        first_line, _, remainder = after.partition("\n")
        if first_line.strip() or (remainder.strip() and not remainder.startswith(("\n", "\r\n"))
                                  and not remainder.lstrip().lower().startswith("</details")):
            found.append(Finding(cell, "no blank line after </summary> (the markdown inside "
                                 "would show raw)", _short(after), myst=False))
    return found


def _unfolded_answers(text: str) -> list[str]:
    """'Solution'/'Answer' lines outside any <details> block of a markdown cell."""
    outside = re.sub(r"<details\b.*?</details\s*>", "", text, flags=re.I | re.S)
    return [m.group(0) for m in SOLUTION_LINE.finditer(outside)
            if "<summary" not in m.group(0).lower()]


def check_exercises(cells: list[dict]) -> list[Finding]:
    """Solutions are folded: code cells of an Exercises section are `# @title` form cells with
    the tag hide-cell; anywhere, a `# @title Solution` cell carries both; no open answer text."""
    found = []
    level = None  # heading level of the Exercises section we are in, if any
    for i, cell in enumerate(cells):
        src = cell_source(cell)
        if cell.get("cell_type") == "markdown":
            for line in src.splitlines():
                h = HEADING.match(line)
                if h:
                    n = len(h.group(1))
                    if level is not None and n <= level:
                        level = None
                    if EXERCISES.match(h.group(2)):
                        level = n
            if level is not None:
                for answer in _unfolded_answers(src):
                    found.append(Finding(i, "an answer written out unfolded (put it in "
                                         "<details><summary>…</summary>)", _short(answer),
                                         myst=False))
            continue
        if cell.get("cell_type") != "code":
            continue
        first = src.lstrip().split("\n", 1)[0]
        meta = cell.get("metadata") or {}
        tags = set(meta.get("tags") or [])
        is_title = bool(TITLE_LINE.match(first))
        if level is None and not (is_title and re.search(r"solution", first, re.I)):
            continue
        missing = []
        if not is_title:
            missing.append("a first line `# @title …`")
        if meta.get("cellView") != "form":
            missing.append('metadata "cellView": "form"')
        if "hide-cell" not in tags:
            missing.append("the tag hide-cell")
        if missing:
            found.append(Finding(i, "exercise solution not folded (missing " + ", ".join(missing)
                                 + ")", _short(first), myst=False))
    return found


# --------------------------------------------------------------------------- notebooks
@dataclass
class Report:
    path: Path
    findings: list[Finding] = field(default_factory=list)
    error: str = ""

    @property
    def myst(self) -> list[Finding]:
        return [f for f in self.findings if f.myst]

    @property
    def ok(self) -> bool:
        return not self.findings and not self.error

    def counts(self) -> Counter:
        """MyST constructs by kind ("role {cite:p}", "directive fence", ...)."""
        return Counter(f.kind for f in self.myst)


def load_notebook(path: Path) -> dict:
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("not a Jupyter notebook (no 'cells')")
    return nb


def check_notebook(path: Path, md=None) -> Report:
    rep = Report(Path(path))
    try:
        nb = load_notebook(path)
    except (OSError, ValueError) as exc:
        rep.error = f"cannot be read: {exc}"
        return rep
    md = md or markdown_parser()
    for i, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") == "markdown":
            src = cell_source(cell)
            rep.findings += scan_markdown(src, i, md)
            rep.findings += check_details(src, i)
    rep.findings += check_exercises(nb["cells"])
    return rep


def find_notebooks(root: Path = ROOT) -> list[Path]:
    return sorted(p for p in (root / "book").rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts and "_build" not in p.parts)


def read_pending(path: Path = PENDING_FILE) -> set[str]:
    """Notebook names (e.g. ``book/01_task.ipynb``) not yet rewritten for Colab."""
    if not path.is_file():
        return set()
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(line)
    return names


def _rel(path: Path, root: Path = ROOT) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


# ------------------------------------------------------------------------------ the view
PAGE_CSS = """
body { font-family: Roboto, Arial, sans-serif; max-width: 920px; margin: 2em auto; line-height: 1.5;
       color: #212121; }
.cell { margin: 0.6em 0; }
.code pre, pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; }
.form { border: 1px solid #ddd; padding: 0.3em 0.6em; color: #555; }
.form::before { content: "▸ "; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 8px; }
blockquote { border-left: 4px solid #ddd; margin-left: 0; padding-left: 1em; color: #444; }
"""


def render_notebook(nb: dict, title: str, mathjax_src: str | None, md=None) -> str:
    """One HTML page: markdown cells as Colab renders them, code cells as code (a form cell
    shows only its title, as Colab does)."""
    md = md or markdown_parser()
    parts = []
    for cell in nb["cells"]:
        src = cell_source(cell)
        if cell.get("cell_type") == "markdown":
            parts.append(f'<div class="cell markdown">{md.render(src)}</div>')
        elif cell.get("cell_type") == "code":
            first = src.lstrip().split("\n", 1)[0]
            if (cell.get("metadata") or {}).get("cellView") == "form":
                label = re.sub(r"^#\s*@title\s*", "", first).strip() or "(form)"
                parts.append(f'<div class="cell form">{html.escape(label)} '
                             f'<em>(code hidden)</em></div>')
            else:
                parts.append(f'<div class="cell code"><pre><code>{html.escape(src)}'
                             f'</code></pre></div>')
    mathjax = ""
    if mathjax_src:
        mathjax = ("<script>window.MathJax = {tex: {inlineMath: [['\\\\(', '\\\\)']], "
                   "displayMath: [['\\\\[', '\\\\]']]}, options: {processHtmlClass: 'math', "
                   "ignoreHtmlClass: 'cell'}};</script>\n"
                   f'<script defer src="{html.escape(mathjax_src)}"></script>')
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)} (Colab view)</title>\n<style>{PAGE_CSS}</style>\n"
            f"{mathjax}</head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n")


def write_views(notebooks: list[Path], out: Path, web_assets: Path = WEB_ASSETS) -> list[Path]:
    """Write ``out/<name>.html`` for each notebook; MathJax from ``web_assets`` (relative)."""
    out.mkdir(parents=True, exist_ok=True)
    mj = web_assets / MATHJAX_REL
    mathjax_src = Path(os.path.relpath(mj, out)).as_posix() if mj.is_file() else None
    md = markdown_parser()
    pages = []
    for nb_path in notebooks:
        page = out / (Path(nb_path).stem + ".html")
        page.write_text(render_notebook(load_notebook(nb_path), Path(nb_path).stem,
                                        mathjax_src, md), encoding="utf-8")
        pages.append(page)
    return pages


# ------------------------------------------------------------------------ numbers check
MARKER = re.compile(r"<!--\s*out:\s*(?P<label>.+?)(?:\s+~\s*(?P<tol>\d+(?:\.\d+)?)\s*%)?\s*-->",
                    re.S)
# A number as prose and print() write it: sign (also U+2212), thousands commas, decimals,
# an exponent.
NUMBER = re.compile(r"(?<![\w.])(?P<sign>[-+\u2212]?)(?P<int>\d{1,3}(?:,\d{3})+|\d+)"
                    r"(?:\.(?P<frac>\d+))?(?:[eE](?P<exp>[-+]?\d+))?(?![\w])")
MAX_GAP = 16  # characters of unit/space allowed between a quoted number and its marker


@dataclass
class Quoted:
    value: float
    unit: float  # one in the last quoted digit
    text: str


def parse_number(m: re.Match) -> Quoted:
    sign = -1.0 if m.group("sign") in ("-", "\u2212") else 1.0
    frac = m.group("frac") or ""
    exp = int(m.group("exp") or 0)
    value = sign * float(m.group("int").replace(",", "") + ("." + frac if frac else "")) * 10**exp
    return Quoted(value, 10.0 ** (exp - len(frac)), m.group(0))


def quoted_before(text: str) -> Quoted | None:
    """The number the prose quotes right before a marker (at most a unit in between)."""
    last = None
    for m in NUMBER.finditer(text):
        last = m
    if last is None:
        return None
    gap = text[last.end():]
    if len(gap) > MAX_GAP or re.search(r"\d", gap):
        return None
    return parse_number(last)


def output_texts(nb: dict) -> list[str]:
    """The text outputs of every code cell, in order: streams and text/plain."""
    texts = []
    for cell in nb.get("cells", []):
        for out in cell.get("outputs") or []:
            if out.get("output_type") == "stream":
                t = out.get("text", "")
            else:
                t = (out.get("data") or {}).get("text/plain", "")
            t = "".join(t) if isinstance(t, list) else str(t)
            if t:
                texts.append(t)
    return texts


def printed_after(label: str, texts: list[str]) -> tuple[float, str] | None:
    """The first number after the first occurrence of ``label`` in the outputs."""
    for t in texts:
        pos = t.find(label)
        if pos < 0:
            continue
        m = NUMBER.search(t, pos + len(label))
        if m is None:
            return None
        return parse_number(m).value, m.group(0)
    return None


def check_numbers(nb: dict) -> tuple[int, list[Finding]]:
    """(number of markers, problems) for one executed notebook."""
    texts = output_texts(nb)
    problems, n = [], 0
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "markdown":
            continue
        src = cell_source(cell)
        for m in MARKER.finditer(src):
            n += 1
            label = " ".join(m.group("label").split())
            tol = float(m.group("tol")) / 100 if m.group("tol") else None
            quoted = quoted_before(src[: m.start()])
            where = f"<!--out: {label}-->"
            if quoted is None:
                problems.append(Finding(i, "no number right before the marker (at most a unit "
                                        "between them)", where, myst=False))
                continue
            got = printed_after(label, texts)
            if got is None:
                problems.append(Finding(i, "label not printed (no output holds it, followed by "
                                        "a number)", where, myst=False))
                continue
            value, printed = got
            if tol is not None:
                ok = abs(value - quoted.value) <= tol * abs(value) + 1e-12
                want = f"within {tol:.0%} of {printed}"
            else:
                digits = max(0, -round(math.log10(quoted.unit)))
                rounded = round(value / quoted.unit) * quoted.unit
                ok = abs(rounded - quoted.value) <= quoted.unit * (1 + 1e-9)
                want = f"{rounded:.{digits}f} (printed {printed}), ±1 in the last digit"
            if not ok:
                problems.append(Finding(i, f"the prose says {quoted.text}, the output {want}",
                                        where, myst=False))
    return n, problems


def executed_path(folder: Path, nb_path: Path) -> Path | None:
    """The executed copy of ``nb_path`` in ``folder`` (``folder/name`` or ``folder/book/name``)."""
    for cand in (folder / nb_path.name, folder / "book" / nb_path.name):
        if cand.is_file():
            return cand
    return None


# ------------------------------------------------------------------------------ browser
# Run in the page after tools/check_browser.py's probe (MathJax has finished): raw markup in
# the visible text, outside code and typeset maths.
RAW_MARKUP_PROBE = r"""
const skip = 'pre, code, mjx-container, script, style, .form';
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const chunks = [];
let node;
while ((node = walker.nextNode())) {
  if (node.parentElement && node.parentElement.closest(skip)) continue;
  chunks.push(node.textContent);
}
const text = chunks.join('');
const rules = [
  [new RegExp('\\{(?:[a-z]+:[a-z][\\w:-]*|cite|doc|ref|numref|eq|math|glue|note|tip|warning|'
              + 'admonition|figure|dropdown|bibliography|code-cell|toctree)\\}'),
   'MyST role or directive name'],
  [/(^|\n)\s*:::/, 'colon fence'],
  [/(^|\n)\s*:[\w-]+:\s/, 'directive option line'],
  [/\$\$|\$[^$\s][^$\n]*\$/, 'maths left as $…$ (not typeset)'],
  [/\\(?:frac|mathrm|mathbf|left|right|begin|end|sum|hat|cdot|times|sqrt|alpha|sigma)\b/,
   'TeX command shown as text'],
  [/\*\*[^*\s]/, 'unrendered **emphasis**'],
  [/\]\((?:https?:|#|\.)/, 'unrendered [link](…)'],
  [/<\/?(?:details|summary|div|span|br|img|a)\b/i, 'HTML tag shown as text'],
  [/\{\{/, 'substitution'],
];
const problems = [];
for (const [re, what] of rules) {
  const m = text.match(re);
  if (m) {
    const at = Math.max(0, m.index - 30);
    problems.push('raw markup (' + what + '): ...' +
                  text.slice(at, m.index + 40).replace(/\s+/g, ' ') + '...');
  }
}
return problems;
"""


def browser_check(pages: list[Path], root: Path, timeout_s: float = 60.0,
                  lenient: frozenset = frozenset()) -> tuple[int, list[str]]:
    """Open each page (under ``root``) in headless Chromium; (pages, problem lines).

    Pages in ``lenient`` (not-yet-converted notebooks) fail on everything but raw markup."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import check_browser as cb

    chromium, chromedriver, why = cb.find_browser()
    if why:
        return 0, [f"browser: {why}"]
    problems = []
    with tempfile.TemporaryDirectory(prefix="colab-view-") as profile, \
            cb.serve(root) as (base, errors), \
            cb.chromium_driver(chromium, chromedriver, profile) as driver:
        driver.set_page_load_timeout(timeout_s)
        driver.set_script_timeout(timeout_s + 10)
        for page in pages:
            rel = Path(page).resolve().relative_to(root.resolve()).as_posix()
            res = cb.check_page(driver, base, rel, errors, timeout_s)
            if not res.crashed and Path(page).stem not in lenient:
                res.problems += driver.execute_script(RAW_MARKUP_PROBE)
            print(res.line(), flush=True)
            problems += [f"{rel}: {p}" for p in res.problems]
    return len(pages), problems


# ---------------------------------------------------------------------------------- main
def _count_line(rep: Report) -> str:
    c = rep.counts()
    detail = ", ".join(f"{n} {k}" for k, n in c.most_common())
    return f"{sum(c.values()):4d} MyST" + (f" ({detail})" if detail else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: book/**/*.ipynb")
    ap.add_argument("--counts", action="store_true",
                    help="print the MyST constructs of every notebook, by kind")
    ap.add_argument("--all", action="store_true",
                    help="fail on every notebook, ignoring tools/colab_view_pending.txt")
    ap.add_argument("--pending-file", type=Path, default=PENDING_FILE)
    ap.add_argument("--out", type=Path, help="write the HTML views into this folder")
    ap.add_argument("--web-assets", type=Path, default=WEB_ASSETS,
                    help="folder holding MathJax (tools/web_assets.py fetch)")
    ap.add_argument("--browser", action="store_true",
                    help="open the views (written to --out, default _build/colab_view) in "
                         "headless Chromium")
    ap.add_argument("--check-numbers", type=Path, metavar="DIR",
                    help="check the <!--out: …--> markers against the executed notebooks in DIR")
    args = ap.parse_args(argv)

    notebooks = args.notebooks or find_notebooks()
    pending = set() if args.all else read_pending(args.pending_file)
    md = markdown_parser()
    failed = []  # lines
    n_pending = 0
    total = Counter()
    for nb in notebooks:
        rep = check_notebook(nb, md)
        name = _rel(nb)
        is_pending = name in pending
        total.update(rep.counts())
        if args.counts or is_pending:
            tag = "pending" if is_pending else ("ok" if rep.ok else "FAIL")
            print(f"{tag:7s} {name}: {_count_line(rep)}, "
                  f"{len(rep.findings) - len(rep.myst)} other")
        if rep.error:
            failed.append(f"{name}: {rep.error}")
        elif is_pending:
            n_pending += 1
            if rep.ok:
                failed.append(f"{name}: now clean for Colab: take it off {_rel(args.pending_file)}")
        else:
            failed += [f.line(name) for f in rep.findings]
    stale = sorted(p for p in pending if not (ROOT / p).is_file())
    failed += [f"{_rel(args.pending_file)}: {p} does not exist" for p in stale
               if not args.notebooks]
    print(f"colab_view: {len(notebooks)} notebooks, {sum(total.values())} MyST constructs in all"
          f"; {n_pending} not yet converted ({_rel(args.pending_file)})")

    if args.check_numbers:
        n_markers = 0
        for nb in notebooks:
            name = _rel(nb)
            ex = executed_path(args.check_numbers, Path(nb))
            if ex is None:
                failed.append(f"{name}: no executed copy in {args.check_numbers}")
                continue
            n, probs = check_numbers(load_notebook(ex))
            n_markers += n
            failed += [p.line(name) for p in probs]
        print(f"colab_view: {n_markers} <!--out: …--> markers checked against "
              f"{args.check_numbers}")

    if args.out or args.browser:
        out = args.out or DEFAULT_OUT
        pages = write_views(notebooks, out, args.web_assets)
        print(f"colab_view: {len(pages)} views written to {_rel(out)}")
        if args.browser:
            if not (args.web_assets / MATHJAX_REL).is_file():
                failed.append(f"browser: no MathJax in {args.web_assets} "
                              "(python tools/web_assets.py fetch)")
            else:
                root = Path(os.path.commonpath([out.resolve(), args.web_assets.resolve()]))
                lenient = frozenset(Path(p).stem for p in pending)
                n, probs = browser_check(pages, root, lenient=lenient)
                failed += probs
                print(f"colab_view: {n} views opened in Chromium, {len(probs)} faults")

    for line in failed:
        print(line, file=sys.stderr)
    if failed:
        print(f"colab_view: FAILED ({len(failed)} problems)", file=sys.stderr)
        return 1
    print("colab_view: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())

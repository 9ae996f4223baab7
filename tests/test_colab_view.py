"""tools/colab_view.py: the MyST detector, the folding checks, the numbers check and the view.

Each detector rule has a case it must catch and a look-alike it must leave alone (what Colab
renders correctly); the browser test is skipped without chromium, chromedriver or MathJax.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("markdown_it")
pytest.importorskip("mdit_py_plugins")

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


cv = _load("colab_view")


def kinds(text: str) -> list[str]:
    return [f.kind.split(" (")[0] for f in cv.scan_markdown(text, 0)]


def md_cell(text, **meta):
    return {"cell_type": "markdown", "metadata": meta, "source": text}


def code_cell(text, outputs=(), **meta):
    return {"cell_type": "code", "metadata": meta, "source": text, "outputs": list(outputs),
            "execution_count": None}


def write_nb(path: Path, cells) -> Path:
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))
    return path


# --------------------------------------------------------------------------- MyST detector
@pytest.mark.parametrize("text, expected", [
    ("Gain {glue:text}`gain:.2f` dB.", ["role {glue:text}"]),
    ("As shown {cite:p}`gao2023ctcnet`.", ["role {cite:p}"]),
    ("See {doc}`08_ctcnet` and {ref}`sec-x`.", ["role {doc}", "role {ref}"]),
    ("{math}`x^2` inline", ["role {math}"]),
    ("```{note}\nA note.\n```", ["directive fence"]),
    ("````{admonition} Solution\n:class: dropdown\n\n```{glue:figure} fig\n```\n"
     "{glue:text}`v`\n````",
     ["directive fence", "directive option line", "directive fence", "role {glue:text}"]),
    (":::{admonition} Objectives\n:class: tip\nText\n:::", ["directive fence",
                                                            "directive option line"]),
    ("(sec-intro)=\n# Intro", ["(label)= target"]),
    ("% a MyST comment\nText", ["% comment line"]),
    ("Value {{ psnr }} dB", ["substitution"]),
    ("$$\nx = 1\n$$ (eq-one)", ["equation label"]),
    ("Text\n\n+++\n\nMore", ["+++ block break"]),
    ("<div>{cite:p}`x`</div>", ["role {cite:p}", "markdown inside an HTML block shows raw"]),
])
def test_detector_catches_myst(text, expected):
    assert sorted(k for k in kinds(text)) == sorted(expected)


@pytest.mark.parametrize("text", [
    "Plain text with **bold**, `code {cite:p}` and a [link](https://example.org/x.html#a).",
    "Write `{cite:p}` in MyST, never here.",  # a role named inside a code span
    "```python\n% not a comment in code\n:class: x\n```",  # options in an ordinary code block
    "Inline $x_{1} * y_{2}$ and a set $\\{a, b\\}$ stay maths.",
    "$$\n\\begin{aligned} a &= b \\\\ c &= d \\end{aligned}\n$$",
    "> **Objectives.** Read the block.\n> Second line.",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "<details><summary>Solution</summary>\n\nFine **markdown**.\n\n</details>",
    "100 % of faces; 50% less.",  # a percent sign inside a line
    "A dict {'a': 1} and a set {x} in prose.",
    "See [chapter 8](https://ctcnet-book.github.io/ctcnet-book/book/08_ctcnet.html#lgcm).",
    "[Top](#section-1) and ![fig](https://example.org/f.png) and ![a](attachment:a.png)",
])
def test_detector_leaves_what_colab_renders(text):
    assert kinds(text) == []


def test_relative_links_and_images_are_flagged():
    found = kinds("See [ch. 8](08_ctcnet.ipynb), ![x](../figures/x.png) and "
                  '<img src="fig.png">.')
    assert found == ["relative link", "relative image", "relative link or image"]
    assert not any(f.myst for f in cv.scan_markdown("[x](08.ipynb)", 0))


def test_markdown_glued_to_an_html_line_is_flagged():
    found = cv.scan_markdown("<details><summary>S</summary>\n**bold** stays raw\n</details>", 0)
    assert [f.kind.split(" (")[0] for f in found] == ["markdown inside an HTML block shows raw"]


# --------------------------------------------------------------------------- <details>
def test_details_closed_with_summary_passes():
    text = "Q?\n\n<details><summary>Answer</summary>\n\nIt is **42**.\n\n</details>\n"
    assert cv.check_details(text, 0) == []


@pytest.mark.parametrize("text, needle", [
    ("<details><summary>A</summary>\n\nText\n", "unclosed <details>"),
    ("<details>\n\nNo summary.\n\n</details>", "without a <summary>"),
    ("<details><summary>A</summary>\nText right under\n\n</details>", "no blank line"),
    ("Text\n</details>", "without its <details>"),
])
def test_details_faults(text, needle):
    found = cv.check_details(text, 0)
    assert found and needle in found[0].kind


# ------------------------------------------------------------------- exercise solutions
GOOD_SOLUTION = dict(cellView="form", tags=["hide-cell"])


def test_folded_solutions_pass():
    cells = [md_cell("## Exercises\n\n1. Compute x."),
             code_cell("# @title Solution to exercise 1\nx = 1", **GOOD_SOLUTION),
             md_cell("<details><summary>Solution</summary>\n\nx is 1.\n\n</details>"),
             md_cell("## References"), code_cell("print('after the section')")]
    assert cv.check_exercises(cells) == []


@pytest.mark.parametrize("meta, first, needle", [
    ({"tags": ["hide-cell"]}, "# @title Solution to exercise 1", '"cellView": "form"'),
    ({"cellView": "form"}, "# @title Solution to exercise 1", "hide-cell"),
    (GOOD_SOLUTION, "x = 1", "# @title"),
])
def test_unfolded_solution_cells_fail(meta, first, needle):
    cells = [md_cell("# 3. Chapter\n\n## Exercises\n\n1. Do it."), code_cell(first, **meta)]
    found = cv.check_exercises(cells)
    assert len(found) == 1 and needle in found[0].kind


def test_solution_cell_outside_exercises_is_checked_too():
    cells = [md_cell("## Warm-up"), code_cell("# @title Solution to the warm-up\nx = 1")]
    assert len(cv.check_exercises(cells)) == 1


def test_answer_written_out_unfolded_fails():
    cells = [md_cell("## Exercises\n\n1. Why?\n\n**Solution.** Because."), ]
    found = cv.check_exercises(cells)
    assert len(found) == 1 and "unfolded" in found[0].kind


# ------------------------------------------------------------------------ numbers check
def executed(prose: str, printed: str) -> dict:
    return {"cells": [md_cell(prose),
                      code_cell("print(...)", outputs=[
                          {"output_type": "stream", "name": "stdout", "text": printed}])]}


@pytest.mark.parametrize("prose, printed", [
    ("beats bicubic by +1.38 dB<!--out: gain over bicubic-->.", "gain over bicubic: +1.381 dB"),
    ("by +1.38 dB<!--out: gain over bicubic-->", "gain over bicubic: +1.374 dB"),  # ±1 digit
    ("about 17,000 faces<!--out: training faces-->", "training faces: 17000"),
    ("takes 12 s<!--out: step time ~20%-->", "step time: 13.9 s"),
    ("a loss of −0.10<!--out: lag-1 autocorrelation-->", "lag-1 autocorrelation: -0.1012"),
    ("is 3.2e-4<!--out: lr-->", "lr = 0.00032"),
])
def test_number_that_matches_passes(prose, printed):
    n, problems = cv.check_numbers(executed(prose, printed))
    assert n == 1 and problems == []


@pytest.mark.parametrize("prose, printed, needle", [
    ("by +1.38 dB<!--out: gain over bicubic-->", "gain over bicubic: +1.41 dB", "the prose says"),
    ("takes 12 s<!--out: step time ~10%-->", "step time: 13.9 s", "within 10%"),
    ("by +1.38 dB<!--out: gain-->", "something else: 1.38", "label not printed"),
    ("by +1.38 dB<!--out: gain-->", "gain: n/a", "label not printed"),
    ("as measured<!--out: gain-->", "gain: 1.38", "no number right before"),
    ("1.38 dB, see the table below<!--out: gain-->", "gain: 1.38", "no number right before"),
])
def test_number_that_disagrees_or_is_missing_fails(prose, printed, needle):
    n, problems = cv.check_numbers(executed(prose, printed))
    assert n == 1 and len(problems) == 1 and needle in problems[0].kind


def test_numbers_come_from_text_plain_and_the_first_occurrence():
    nb = {"cells": [md_cell("PSNR 28.37<!--out: PSNR (dB)-->"),
                    code_cell("t", outputs=[
                        {"output_type": "display_data",
                         "data": {"text/plain": ["PSNR (dB)    28.371\n"], "image/png": "x"}},
                        {"output_type": "stream", "text": "PSNR (dB) 99.0"}])]}
    assert cv.check_numbers(nb) == (1, [])


def test_check_numbers_cli_reads_the_executed_copies(tmp_path, capsys):
    src = write_nb(tmp_path / "01_x.ipynb", [md_cell("gain 1.5<!--out: gain-->")])
    built = tmp_path / "exec" / "book"
    built.mkdir(parents=True)
    write_nb(built / "01_x.ipynb", executed("gain 1.5<!--out: gain-->", "gain: 1.9")["cells"])
    args = [str(src), "--pending-file", str(tmp_path / "none.txt")]
    assert cv.main([*args, "--check-numbers", str(tmp_path / "exec")]) == 1
    assert "the prose says 1.5" in capsys.readouterr().err
    write_nb(built / "01_x.ipynb", executed("gain 1.5<!--out: gain-->", "gain: 1.46")["cells"])
    assert cv.main([*args, "--check-numbers", str(tmp_path / "exec")]) == 0
    (built / "01_x.ipynb").unlink()
    assert cv.main([*args, "--check-numbers", str(tmp_path / "exec")]) == 1
    assert "no executed copy" in capsys.readouterr().err


# ----------------------------------------------------------------- pending list, the CLI
def test_pending_notebooks_are_counted_not_failed_and_the_list_only_shrinks(tmp_path, capsys):
    dirty = write_nb(tmp_path / "dirty.ipynb", [md_cell("{cite:p}`x`")])
    clean = write_nb(tmp_path / "clean.ipynb", [md_cell("Fine.")])
    pending = tmp_path / "pending.txt"
    pending.write_text(f"# not yet converted\n{cv._rel(dirty)}\n")
    assert cv.main([str(dirty), str(clean), "--pending-file", str(pending)]) == 0
    out = capsys.readouterr().out
    assert "1 not yet converted" in out and "1 MyST" in out
    assert cv.main([str(dirty), "--pending-file", str(pending), "--all"]) == 1
    pending.write_text(f"{cv._rel(clean)}\n")
    assert cv.main([str(clean), "--pending-file", str(pending)]) == 1
    assert "take it off" in capsys.readouterr().err


def test_unreadable_notebook_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    assert cv.main([str(bad), "--pending-file", str(tmp_path / "none.txt")]) == 1
    assert "cannot be read" in capsys.readouterr().err


def test_every_committed_notebook_with_myst_is_on_the_pending_list():
    """(Issue 17 measured 846 MyST constructs before the rewrite; this detector counts 846 on
    those notebooks.) A notebook with MyST left must be on the pending list."""
    reports = [cv.check_notebook(p) for p in cv.find_notebooks()]
    pending = cv.read_pending()
    for rep in reports:
        if rep.myst:
            assert cv._rel(rep.path) in pending, f"{rep.path} has MyST but is not pending"


# ------------------------------------------------------------------------------- the view
def test_view_renders_like_colab(tmp_path):
    nb = write_nb(tmp_path / "c.ipynb", [
        md_cell("# T\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nMaths $x_1*y_2$ here."),
        code_cell("# @title Solution to exercise 1\nsecret = 1", **GOOD_SOLUTION),
        code_cell("visible = 2")])
    assets = tmp_path / "assets"
    (assets / "mathjax" / "es5").mkdir(parents=True)
    (assets / "mathjax" / "es5" / "tex-mml-chtml.js").write_text("")
    (page,) = cv.write_views([nb], tmp_path / "view", assets)
    html = page.read_text()
    assert "<table>" in html and '<span class="math">\\(x_1*y_2\\)</span>' in html
    assert "Solution to exercise 1" in html and "secret" not in html and "visible = 2" in html
    assert 'src="../assets/mathjax/es5/tex-mml-chtml.js"' in html


MATHJAX = ROOT / "_build" / "web_assets" / "mathjax" / "es5" / "tex-mml-chtml.js"


def _browser_ready():
    cb = _load("check_browser")
    return cb.find_browser()[2] is None and MATHJAX.is_file()


@pytest.mark.skipif(not _browser_ready(), reason="needs chromium, chromedriver and the fetched "
                    "MathJax (tools/web_assets.py fetch)")
def test_browser_flags_untypeset_maths_and_raw_markup(tmp_path):
    good = write_nb(tmp_path / "good.ipynb", [md_cell(
        "# Good\n\n$$\n\\begin{aligned} a &= \\frac{1}{2} \\end{aligned}\n$$\n\nInline $x^2$."
        "\n\n<details><summary>S</summary>\n\n**bold**\n\n</details>")])
    bad = write_nb(tmp_path / "bad.ipynb", [md_cell(
        "# Bad\n\nBroken $\\frac{1}$ maths.\n\n<details><summary>S</summary>\n**raw** here"
        "\n</details>\n\n:::{note}\nx\n:::\n\nAs {cite:p}`gao2023ctcnet` says.")])
    out = ROOT / "_build" / "colab_view_test"
    pages = cv.write_views([good, bad], out, ROOT / "_build" / "web_assets")
    _, problems = cv.browser_check(pages, ROOT / "_build")
    good_problems = [p for p in problems if "good.html" in p]
    bad_problems = " ".join(p for p in problems if "bad.html" in p)
    assert good_problems == []
    assert "MathJax error" in bad_problems
    assert "unrendered **emphasis**" in bad_problems and "colon fence" in bad_problems
    assert "MyST role or directive name" in bad_problems

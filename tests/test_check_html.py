"""tools/check_html.py finds each kind of page fault and passes a clean page."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

_spec = importlib.util.spec_from_file_location(
    "check_html", Path(__file__).resolve().parents[1] / "tools" / "check_html.py")
check_html = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_html)

CLEAN = """<html><body><p>Text with <span class="math notranslate nohighlight">\\(x\\)</span>.</p>
<div class="math notranslate nohighlight">\\[y = x^2\\]</div>
<div class="cell_output docutils container"><div class="output stream highlight-myst-ansi notranslate">
<div class="highlight"><pre><span></span>PSNR 24.1 dB
</pre></div></div></div>
<table><tr><td>name</td><td>24.1</td></tr></table>
<div class="cell_output docutils container"><img alt="fig" src="_images/big.png" /></div>
</body></html>"""


def _site(tmp_path: Path, body: str, img_size=(800, 600)) -> Path:
    (tmp_path / "_images").mkdir()
    Image.new("RGB", img_size).save(tmp_path / "_images" / "big.png")
    (tmp_path / "page.html").write_text(body, encoding="utf-8")
    return tmp_path


def test_clean_page_passes(tmp_path):
    assert check_html.main([str(_site(tmp_path, CLEAN))]) == 0


@pytest.mark.parametrize("fault, needle", [
    ('<div class="output text_plain highlight-myst-ansi notranslate"><div class="highlight"><pre>'
     "<span></span>&#39;0.48&#39;\n</pre></div></div>", "stray repr"),
    ('<div class="output text_plain highlight-myst-ansi notranslate"><div class="highlight"><pre>'
     "<span></span>&lt;torch._C.Generator object at 0x7f&gt;\n</pre></div></div>", "stray repr"),
    ('<div class="output stderr highlight-myst-ansi notranslate"><div class="highlight"><pre>'
     "oops</pre></div></div>", "stderr"),
    ('<div class="output stream highlight-myst-ansi notranslate"><div class="highlight"><pre>'
     "x.py:3: UserWarning: careful\n</pre></div></div>", "warning in output"),
    ('<p>so $<span class="math notranslate nohighlight">\\(a\\)</span></p>', "literal $"),
    ("<p>the MAC count is $$ 2 H W $$ per layer</p>", "'$$' in running text"),
    ("<table><tr><td>a very long cell tha...</td></tr></table>", "truncated table cell"),
])
def test_each_fault_is_reported(tmp_path, capsys, fault, needle):
    site = _site(tmp_path, CLEAN.replace("</body>", fault + "</body>"))
    assert check_html.main([str(site)]) == 1
    assert needle in capsys.readouterr().out


def test_small_figure_is_reported(tmp_path, capsys):
    site = _site(tmp_path, CLEAN, img_size=(328, 296))
    assert check_html.main([str(site)]) == 1
    assert "328x296" in capsys.readouterr().out


def test_empty_build_folder_fails(tmp_path):
    assert check_html.main([str(tmp_path)]) == 1

"""tools/check_browser.py catches each fault a reader would see, and tools/web_assets.py serves
the book's JavaScript offline (or falls back to the CDN with a notice).

The browser tests open small pages in headless Chromium (one session for all of them) and are
skipped when chromium, chromedriver or selenium is missing; the rest runs everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


check_browser = _load("check_browser")
web_assets = _load("web_assets")

# A stand-in for MathJax 3: typesets every .math element into an <mjx-container> (unless the
# script tag says data-typeset="no") and exposes the startup promise the checker waits for.
MATHJAX_STUB = """
(function () {
  var me = document.currentScript;
  window.MathJax = {startup: {document: {math: []}, promise: new Promise(function (ok) {
    document.addEventListener('DOMContentLoaded', function () {
      if (me.getAttribute('data-typeset') !== 'no') {
        document.querySelectorAll('.math').forEach(function (m) {
          m.appendChild(document.createElement('mjx-container'));
        });
      }
      ok();
    });
  })}};
})();
"""

MATH = '<p>Maths <span class="math notranslate nohighlight">\\(x^2\\)</span>.</p>'
STUB = '<script defer src="mathjax-stub.js"></script>'
PAGES = {
    "clean.html": f'{STUB}<img src="ok.png" alt="ok">{MATH}'
                  '<script>console.log("fine"); console.warn("only a warning")</script>',
    "broken_image.html": '<img src="missing.png" alt="gone">',
    "console_error.html": '<script>console.error("boom")</script>',
    "exception.html": '<script>null.kaput()</script>',
    "mathjax_error.html": STUB + '<p><span class="math"><mjx-container><mjx-merror '
                          'data-mjx-error="Missing argument for \\frac"></mjx-merror>'
                          '</mjx-container></span></p>',
    "untypeset.html": '<script defer src="mathjax-stub.js" data-typeset="no"></script>' + MATH,
    "no_mathjax.html": MATH,
    "remote.html": '<script src="https://cdn.example.invalid/lib.js"></script>',
    "widget.html": '<div><script type="application/vnd.jupyter.widget-view+json">'
                   '{"model_id": "x", "version_major": 2}</script></div>',
}


def _html(body: str) -> str:
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>t</title></head>" \
           f"<body>{body}</body></html>"


MATHJAX_FETCHED = web_assets.is_complete(web_assets.DEFAULT_DEST, web_assets.MATHJAX)
# With the fetched MathJax (make book fetches it): good TeX passes; a TeX error and an
# undefined macro are reported with the TeX they came from.
REAL_MATHJAX = f'<script defer src="{web_assets.MATHJAX_PATH}"></script>'
REAL_PAGES = {
    "real_good.html": REAL_MATHJAX + MATH,
    "real_bad.html": REAL_MATHJAX + '<p><span class="math">\\(\\frac{a}\\)</span> and '
                     '<span class="math">\\(\\nosuchmacro + 1\\)</span></p>',
}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    Image.new("RGB", (40, 30), (200, 100, 50)).save(root / "ok.png")
    (root / "mathjax-stub.js").write_text(MATHJAX_STUB)
    pages = dict(PAGES)
    if MATHJAX_FETCHED:
        mathjax = web_assets.DEFAULT_DEST / web_assets.MATHJAX.folder
        (root / "mathjax").symlink_to(mathjax, target_is_directory=True)
        pages.update(REAL_PAGES)
    for name, body in pages.items():
        (root / name).write_text(_html(body), encoding="utf-8")
    (root / "_static").mkdir()
    (root / "_static" / "skipped.html").write_text(_html(""))
    return root


@pytest.fixture(scope="module")
def browser():
    chromium, driver, why = check_browser.find_browser()
    if why:
        pytest.skip(f"no headless browser: {why}")
    return chromium, driver


@pytest.fixture(scope="module")
def results(site, browser) -> dict:
    """Every fixture page, checked in one browser session."""
    chromium, driver = browser
    pages = sorted(PAGES) + (sorted(REAL_PAGES) if MATHJAX_FETCHED else [])
    res = check_browser.check_site(site, pages, chromium=chromium, chromedriver=driver,
                                   timeout_s=20)
    return {r.page: r for r in res}


# ------------------------------------------------------------------------ in the browser
def test_clean_page_passes(results):
    r = results["clean.html"]
    assert r.ok, r.problems
    assert (r.images, r.maths) == (1, 1)


@pytest.mark.parametrize("page, needle", [
    ("broken_image.html", "image did not load: missing.png"),
    ("broken_image.html", "local server answered 404 for /missing.png"),
    ("console_error.html", "console error:"),
    ("exception.html", "console error:"),
    ("mathjax_error.html", 'MathJax error "Missing argument for \\frac"'),
    ("untypeset.html", "1 of 1 maths not typeset, the first: \\(x^2\\)"),
    ("no_mathjax.html", "the page has maths but loads no MathJax"),
    ("remote.html", "request to a remote host (the book must read offline): "
                    "https://cdn.example.invalid/lib.js"),
    ("widget.html", "1 of 1 widget views not rendered"),
])
def test_each_fault_is_caught(results, page, needle):
    r = results[page]
    assert not r.ok
    assert any(needle in p for p in r.problems), r.problems
    if page == "console_error.html":
        assert any("boom" in p for p in r.problems)


@pytest.mark.skipif(not MATHJAX_FETCHED, reason="MathJax not fetched (tools/web_assets.py fetch)")
def test_real_mathjax_errors_and_undefined_macros(results):
    good, bad = results["real_good.html"], results["real_bad.html"]
    assert good.ok, good.problems
    assert any(p.startswith("MathJax error") and "\\frac{a}" in p for p in bad.problems), \
        bad.problems
    assert any("undefined TeX macro \\nosuchmacro" in p for p in bad.problems), bad.problems


# ------------------------------------------------------------------ without a browser
def test_content_pages_skip_static_and_sources(site):
    pages = check_browser.content_pages(site)
    assert "clean.html" in pages and "_static/skipped.html" not in pages


def test_remote_requests_from_the_network_log():
    def entry(url):
        msg = {"message": {"method": "Network.requestWillBeSent", "params": {"request": {"url": url}}}}
        return {"message": json.dumps(msg)}

    log = [entry("http://127.0.0.1:8000/a.js"), entry("data:image/png;base64,xx"),
           entry("https://cdn.example.org/x.js"), entry("https://cdn.example.org/x.js"),
           entry("http://localhost:1/b.css"), {"message": "not json"}]
    assert check_browser._remote_requests(log) == ["https://cdn.example.org/x.js"]


def test_timeouts_and_crashes_are_tried_once_more(monkeypatch, tmp_path):
    """A timed-out page is tried again in the same browser, a crashed tab in a fresh one."""
    from contextlib import contextmanager

    browsers = []

    @contextmanager
    def fake_driver(*args):
        browsers.append("open")
        yield SimpleNamespace(set_page_load_timeout=lambda t: None,
                              set_script_timeout=lambda t: None, n=len(browsers))
        browsers[-1] = "closed"

    calls = []

    def fake_check_page(driver, base, page, errors, timeout_s):
        calls.append((page, driver.n))
        first = [c[0] for c in calls].count(page) == 1
        slow = page == "slow.html" and first
        crash = page == "crash.html" and first
        never = page == "never.html"
        return check_browser.PageResult(
            page, ["browser error"] if slow or crash or never else [], seconds=1.0,
            timed_out=slow or never, crashed=crash)

    monkeypatch.setattr(check_browser, "chromium_driver", fake_driver)
    monkeypatch.setattr(check_browser, "check_page", fake_check_page)
    pages = ["ok.html", "slow.html", "never.html", "crash.html", "after.html"]
    res = check_browser.check_site(tmp_path, pages, chromium="c", chromedriver="d")
    assert calls == [("ok.html", 1), ("slow.html", 1), ("slow.html", 1), ("never.html", 1),
                     ("never.html", 1), ("crash.html", 1), ("crash.html", 2), ("after.html", 2)]
    assert [(r.ok, r.tries) for r in res] == [(True, 1), (True, 2), (False, 2), (True, 2),
                                              (True, 1)]
    assert "try 2" in res[1].line() and res[1].seconds == 2.0
    assert browsers == ["closed", "closed"]  # the crashed browser was closed, the new one too


def test_a_page_seen_emptier_than_its_file_fails_after_a_second_try(monkeypatch, tmp_path):
    """The browser must see every <img> and widget view the HTML file holds: a page that did not
    load (0 images where the file has 2) is tried again, then reported."""
    from contextlib import contextmanager

    @contextmanager
    def fake_driver(*args):
        yield SimpleNamespace(set_page_load_timeout=lambda t: None,
                              set_script_timeout=lambda t: None)

    body = ('<img src="a.png"><IMG src="b.png">'
            '<script type="application/vnd.jupyter.widget-view+json">{}</script>')
    for name in ("late.html", "blank.html"):
        (tmp_path / name).write_text(_html(body), encoding="utf-8")
    seen = []

    def fake_check_page(driver, base, page, errors, timeout_s):
        seen.append(page)
        loaded = page == "late.html" and seen.count(page) == 2  # loads on the second try
        return check_browser.PageResult(page, [], images=2 if loaded else 0,
                                        widgets=1 if loaded else 0)

    monkeypatch.setattr(check_browser, "chromium_driver", fake_driver)
    monkeypatch.setattr(check_browser, "check_page", fake_check_page)
    assert check_browser.static_counts(tmp_path / "late.html") == {"images": 2, "widgets": 1}
    late, blank = check_browser.check_site(tmp_path, ["late.html", "blank.html"], chromium="c",
                                           chromedriver="d")
    assert late.ok and late.tries == 2
    assert not blank.ok and blank.tries == 2
    assert blank.problems == ["page incomplete in the browser: 0 of 2 images, 0 of 1 widget views"]


def test_missing_browser_skips_only_when_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(check_browser, "find_browser",
                        lambda *a: (None, None, "chromium not found (apt-get install ...)"))
    assert check_browser.main([str(tmp_path), "--if-available"]) == 0
    assert "skipped, chromium not found" in capsys.readouterr().out
    assert check_browser.main([str(tmp_path)]) == 2


def test_find_browser_reports_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(check_browser, "CHROMIUM_CANDIDATES", ())
    monkeypatch.setattr(check_browser, "CHROMEDRIVER_CANDIDATES", ())
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.delenv("CHROMEDRIVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    browser, driver, why = check_browser.find_browser()
    assert (browser, driver) == (None, None)
    assert "chromium and chromedriver not found" in why


# ---------------------------------------------------------------------------- web assets
def _tarball(tmp_path: Path, files: dict[str, str]) -> Path:
    src = tmp_path / "src"
    for rel, text in files.items():
        (src / "package" / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / "package" / rel).write_text(text)
    tgz = tmp_path / "pkg.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(src / "package", arcname="package")
    return tgz


def test_install_package_checks_the_hash_and_keeps_only_what_is_listed(tmp_path):
    tgz = _tarball(tmp_path, {"es5/a.js": "a", "es5/a.js.map": "m", "es5/big.js": "b",
                              "LICENSE": "L", "README.md": "r"})
    dest = tmp_path / "dest"
    dest.mkdir()
    pkg = web_assets.Package("demo@1.0.0", web_assets.sri_sha512(tgz), "demo", ("es5", "LICENSE"),
                             drop=("*.map", "big.js"))
    assert not web_assets.is_complete(dest, pkg)
    web_assets.install_package(tgz, pkg, dest)
    got = sorted(p.relative_to(dest / "demo").as_posix() for p in (dest / "demo").rglob("*"))
    assert got == [".complete", "LICENSE", "es5", "es5/a.js"]
    assert web_assets.is_complete(dest, pkg)
    changed = web_assets.Package(pkg.spec, pkg.integrity, pkg.folder, pkg.keep, drop=("*.map",))
    assert not web_assets.is_complete(dest, changed)  # another file selection: fetch again

    wrong = web_assets.Package("demo@1.0.0", "sha512-AAAA", "other", ("es5",))
    with pytest.raises(RuntimeError, match="not the pinned one"):
        web_assets.install_package(tgz, wrong, dest)
    assert not (dest / "other").exists()


def test_fetch_without_npm_is_a_notice_not_a_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(web_assets.shutil, "which", lambda name: None)
    problems = web_assets.fetch(tmp_path / "assets")
    assert len(problems) == len(web_assets.PACKAGES)
    assert all("npm is not installed" in p for p in problems)
    assert web_assets.main(["fetch", str(tmp_path / "assets")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "will not read offline" in out[0], out
    assert "mathjax@3.2.2, requirejs@2.3.4, @jupyter-widgets/html-manager@1.0.6: npm is not" in out[0]
    assert web_assets.main(["fetch", str(tmp_path / "assets"), "--strict"]) == 1


def test_fetch_reports_a_failing_npm_and_stops_there(tmp_path):
    fake = tmp_path / "npm"
    fake.write_text("#!/bin/sh\n(echo 'npm error code ECONNREFUSED'; echo 'npm error FetchError: "
                    "request to http://r/requirejs failed, reason: connect ECONNREFUSED'; "
                    "echo 'npm error A complete log of this run can be found in: x.log') >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    problems = web_assets.fetch(tmp_path / "assets", packages=web_assets.PACKAGES, npm=str(fake))
    assert problems == [
        "mathjax@3.2.2: npm pack mathjax@3.2.2 failed: FetchError: request to "
        "http://r/requirejs failed, reason: connect ECONNREFUSED",
        "requirejs@2.3.4: not tried after the failure above",
        "@jupyter-widgets/html-manager@1.0.6: not tried after the failure above"]


def _sphinx_app(confdir: Path):
    config = SimpleNamespace(html_static_path=["x"], mathjax_path="https://cdn/mathjax.js",
                             nb_ipywidgets_js={"https://cdn/require.js": {}},
                             html_context={})
    return SimpleNamespace(confdir=str(confdir)), config


def test_sphinx_extension_serves_local_assets_when_fetched(tmp_path):
    pytest.importorskip("sphinx", reason="the extension logs through Sphinx (the book extra)")
    dest = tmp_path / "_build" / "web_assets"
    for pkg in web_assets.PACKAGES:
        (dest / pkg.folder).mkdir(parents=True)
        (dest / pkg.folder / web_assets.MARKER).write_text(web_assets._marker_text(pkg))
    app, config = _sphinx_app(tmp_path)
    web_assets._use_local_assets(app, config)
    assert config.html_static_path == ["x", str(dest)]
    assert config.mathjax_path == "mathjax/es5/tex-mml-chtml.js"
    assert list(config.nb_ipywidgets_js) == [
        "requirejs/require.js", "widgets-setup.js", "html-manager/dist/embed-amd.js"]
    assert (dest / "widgets-setup.js").read_text() == web_assets.WIDGETS_SETUP_JS


def test_sphinx_extension_falls_back_to_the_cdn(tmp_path):
    pytest.importorskip("sphinx", reason="the extension logs through Sphinx (the book extra)")
    app, config = _sphinx_app(tmp_path)
    web_assets._use_local_assets(app, config)
    assert config.mathjax_path == "https://cdn/mathjax.js"  # Sphinx's default stays
    urls = list(config.nb_ipywidgets_js)
    assert urls[0].startswith("https://") and urls[2].startswith("https://")
    assert config.nb_ipywidgets_js["widgets-setup.js"]["data-dist"].startswith("https://")


def test_duplicate_inline_scripts_are_dropped_and_the_colour_mode_set():
    def _JavaScript(filename, **attributes):  # what Sphinx's _JavaScript exposes (no Sphinx import)
        return SimpleNamespace(filename=filename, attributes=attributes)

    thebe = 'const THEBE_JS_URL = "x"'
    scripts = [_JavaScript("_static/a.js"), _JavaScript(None, body=thebe),
               _JavaScript("_static/b.js", **{"async": "async"}), _JavaScript("", body=thebe),
               _JavaScript("_static/a.js")]
    context = {"script_files": scripts}
    web_assets._drop_duplicate_scripts(None, "p", "page.html", context, None)
    assert [(s.filename, s.attributes) for s in context["script_files"]] == [
        ("_static/a.js", {}), (None, {"body": thebe}), ("_static/b.js", {"async": "async"})]
    config = SimpleNamespace(html_context={"other": 1})
    web_assets._default_colour_mode(None, config)
    assert config.html_context == {"other": 1, "default_mode": "auto"}


def test_packages_are_pinned():
    for pkg in web_assets.PACKAGES:
        name, _, version = pkg.spec.rpartition("@")
        assert name and version[0].isdigit(), pkg.spec
        assert pkg.integrity.startswith("sha512-") and len(pkg.integrity) == 95, pkg.spec


@pytest.mark.network
@pytest.mark.skipif(os.environ.get("CTCNET_NETWORK_TESTS") != "1", reason="set CTCNET_NETWORK_TESTS=1")
def test_fetch_from_the_registry(tmp_path):
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    try:
        subprocess.run(["npm", "ping"], capture_output=True, timeout=20, check=True)
    except (subprocess.SubprocessError, OSError):
        pytest.skip("the npm registry is unreachable")
    assert web_assets.fetch(tmp_path, packages=(web_assets.REQUIREJS,)) == []
    assert (tmp_path / "requirejs" / "require.js").is_file()

#!/usr/bin/env python3
"""Open every page of the built book in headless Chromium and fail on what a reader would see.

    python tools/check_browser.py _build/html            # every page; exit 1 on any fault
    python tools/check_browser.py _build/html --if-available   # exit 0 with a notice when
                                                         # chromium/chromedriver are missing

The folder is served on 127.0.0.1 (http.server in a thread); Debian's ``chromium`` and
``chromedriver`` (``apt-get install chromium chromium-driver``) are driven through Selenium,
with no driver download. Every request to another host is refused inside the browser (the book
must read offline) and reported. A page fails on:

* a console error (level SEVERE: JavaScript exceptions, resources that failed to load);
* an ``<img>`` that did not load (``naturalWidth`` 0 once it is complete);
* maths MathJax did not typeset (a ``.math`` element without its ``mjx-container``), a MathJax
  error (``mjx-merror``: a TeX syntax error) or an undefined macro (MathJax's ``noundefined``
  shows it as red text), or MathJax not loading at all;
* an ipywidgets view the embedder did not render;
* any request to a host other than localhost;
* an HTTP error (>= 400) from the local server for a file the page asked for;
* fewer images or widget views in the browser than the HTML file holds (a page that did not
  load, or loaded only in part, must not pass as empty); tried once more, like a timeout.

It prints one line per page and a summary.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads"}
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--window-size=1280,900",
    # The book must read offline: no name but localhost resolves, so a remote request fails
    # fast (and is still seen in the network log) whether or not the machine is online.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)


@dataclass
class PageResult:
    page: str
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    images: int = 0
    maths: int = 0
    widgets: int = 0
    timed_out: bool = False  # the browser gave up on the page (load or probe)
    crashed: bool = False  # the tab or the browser died: the session must be restarted
    tries: int = 1
    first_try: str = ""  # why the first try failed, when there were two

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        stats = f"{self.images} images, {self.maths} maths, {self.widgets} widgets, {self.seconds:.1f} s"
        if self.tries > 1:
            stats += f", try {self.tries}; the first: {self.first_try}"
        if self.ok:
            return f"ok    {self.page}  ({stats})"
        return f"FAIL  {self.page}  ({stats})\n" + "\n".join(f"      - {p}" for p in self.problems)


# ----------------------------------------------------------------------------- browser set-up
def find_browser(chromium: str | None = None, chromedriver: str | None = None):
    """``(chromium, chromedriver, None)`` or ``(None, None, reason)`` when one is missing.

    Explicit paths win, then ``$CHROMIUM`` / ``$CHROMEDRIVER``, then Debian's locations, then PATH.
    """

    def pick(explicit, env, candidates, names):
        for c in (explicit, os.environ.get(env), *candidates):
            if c and os.path.isfile(c) and os.access(c, os.X_OK):
                return c
        for n in names:
            if found := shutil.which(n):
                return found
        return None

    browser = pick(chromium, "CHROMIUM", CHROMIUM_CANDIDATES, ("chromium", "chromium-browser"))
    driver = pick(chromedriver, "CHROMEDRIVER", CHROMEDRIVER_CANDIDATES, ("chromedriver",))
    missing = [n for n, p in (("chromium", browser), ("chromedriver", driver)) if p is None]
    if missing:
        return None, None, f"{' and '.join(missing)} not found (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, None, "the selenium package is not installed (pip install -e '.[dev]')"
    return browser, driver, None


@contextmanager
def chromium_driver(chromium: str, chromedriver: str, profile_dir: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile_dir}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    opts.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
    # an explicit driver path: Selenium Manager never tries to download one
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    try:
        yield driver
    finally:
        try:
            driver.quit()
        except Exception:  # noqa: BLE001 (a crashed browser may not answer; it is gone anyway)
            pass


# ------------------------------------------------------------------------------ local server
class _QuietHandler(SimpleHTTPRequestHandler):
    errors: list  # (path, status), set per server

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass

    def log_request(self, code="-", size="-"):
        try:
            status = int(code)
        except (TypeError, ValueError):
            status = 0
        if status >= 400:
            self.errors.append((unquote(urlsplit(self.path).path), status))

    def send_error(self, code, message=None, explain=None):
        # browsers ask every site for /favicon.ico; the book has none, which is no fault of a page
        if code == 404 and urlsplit(self.path).path == "/favicon.ico":
            self.send_response(204)
            self.end_headers()
            return
        super().send_error(code, message, explain)

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # a browser that closed the connection (a crashed tab): its page reports that already
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def serve(root: Path):
    """Serve ``root`` on 127.0.0.1 (a free port) in a thread; yields (base URL, error list)."""
    errors: list[tuple[str, int]] = []
    handler = type("Handler", (_QuietHandler,), {"errors": errors})
    server = _Server(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", errors
    finally:
        server.shutdown()
        server.server_close()


# ----------------------------------------------------------------------------- the page check
# Runs in the page (execute_async_script): make every image load now, wait for the images,
# for MathJax to finish typesetting and for the widget embedder, then report what it finds.
_PAGE_PROBE = r"""
const done = arguments[arguments.length - 1];
const timeoutMs = arguments[0];
const t0 = Date.now();
const sleep = ms => new Promise(r => setTimeout(r, ms));
const short = s => {
  s = (s || '').replace(/\s+/g, ' ').trim();
  return s.length > 70 ? s.slice(0, 67) + '...' : s;
};
async function until(cond, limitMs) {  // poll cond() until true, limitMs or the page timeout
  const t = Date.now();
  while (!cond() && Date.now() - t < limitMs && Date.now() - t0 < timeoutMs) await sleep(50);
  return cond();
}
const mathjaxReady = () => !!(window.MathJax && MathJax.startup && MathJax.startup.promise);

async function checkImages(out) {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = 'eager'; });  // lazy images load now
  await until(() => imgs.every(i => i.complete), timeoutMs);
  out.images = imgs.length;
  for (const i of imgs) {
    const src = short(i.getAttribute('src'));
    if (!i.complete) out.problems.push('image still loading at the timeout: ' + src);
    else if (i.naturalWidth === 0) out.problems.push('image did not load: ' + src);
  }
}

function mathjaxErrors(out) {  // TeX errors and undefined macros, with the TeX they came from
  for (const item of (MathJax.startup.document ? MathJax.startup.document.math : [])) {
    if (!item.root) continue;
    item.root.walkTree(node => {
      if (node.isKind('merror')) {
        const msg = node.attributes.get('data-mjx-error') || 'error';
        out.problems.push('MathJax error "' + short(msg) + '" in: ' + short(item.math));
      } else if (node.isKind('mtext') && node.attributes.get('mathcolor') === 'red') {
        const text = node.getText ? node.getText() : '';  // MathJax's noundefined marks these
        if (text.startsWith('\\')) {
          out.problems.push('undefined TeX macro ' + text + ' in: ' + short(item.math));
        }
      }
    });
  }
}

async function checkMaths(out) {
  const maths = Array.from(document.querySelectorAll('.math'));
  out.maths = maths.length;
  const script = document.querySelector('script[src*="mathjax" i], script[src*="tex-mml" i]');
  if (maths.length && !script) out.problems.push('the page has maths but loads no MathJax');
  if (script) {
    // the page has loaded, so a MathJax that loaded has run (deferred scripts run before
    // DOMContentLoaded): a short grace, not the page timeout, for one that failed to load
    if (!(await until(mathjaxReady, 300))) {
      out.problems.push('MathJax did not load (' + script.getAttribute('src') + ')');
    } else {
      let settled = false;
      MathJax.startup.promise.then(
        () => { settled = true; },
        e => { settled = true; out.problems.push('MathJax failed: ' + e); });
      if (!(await until(() => settled, timeoutMs))) {
        out.problems.push('MathJax did not finish typesetting before the timeout');
      }
      try { mathjaxErrors(out); } catch (e) {
        out.problems.push('could not inspect the MathJax output: ' + e);
      }
    }
  }
  for (const e of document.querySelectorAll('mjx-merror')) {  // also without MathJax's data
    const tag = 'MathJax error "' + short(e.getAttribute('data-mjx-error') || e.textContent) + '"';
    if (!out.problems.some(p => p.startsWith(tag))) out.problems.push(tag);
  }
  const raw = maths.filter(m => !m.querySelector('mjx-container'));
  if (raw.length) {
    out.problems.push(raw.length + ' of ' + maths.length + ' maths not typeset, the first: '
                      + short(raw[0].textContent));
  }
}

async function checkWidgets(out) {
  // the embedder renders each view into a .widget-subarea just before its script tag
  const sel = 'script[type="application/vnd.jupyter.widget-view+json"]';
  const views = Array.from(document.querySelectorAll(sel));
  out.widgets = views.length;
  const rendered = v => {
    const p = v.previousElementSibling;
    return !!p && p.classList.contains('widget-subarea') && p.childElementCount > 0;
  };
  // without require.js (loaded before the page's load event) the embedder cannot run: no wait
  const limit = typeof window.require === 'function' ? timeoutMs : 300;
  await until(() => views.every(rendered), limit);
  const dead = views.filter(v => !rendered(v)).length;
  if (dead) out.problems.push(dead + ' of ' + views.length + ' widget views not rendered');
}

async function probe() {
  const out = {problems: [], images: 0, maths: 0, widgets: 0};
  // chromedriver can hand over a page whose body is still being parsed: wait for it
  if (!await until(() => document.readyState === 'complete', timeoutMs)) {
    out.problems.push('page still ' + document.readyState + ' at the timeout');
  }
  await checkImages(out);
  await checkMaths(out);
  await checkWidgets(out);
  return out;
}
probe().then(done, e => done({problems: ['page probe failed: ' + e]}));
"""


def content_pages(root: Path) -> list[str]:
    """Every HTML page of the built book (chapters, intro, api, bibliography, appendix, index,
    search...), as paths relative to ``root``; the static, source and image folders are skipped."""
    pages = []
    for p in sorted(root.rglob("*.html")):
        rel = p.relative_to(root)
        if not SKIP_DIRS.intersection(rel.parts[:-1]):
            pages.append(rel.as_posix())
    return pages


def _remote_requests(perf_entries) -> list[str]:
    urls = []
    for entry in perf_entries:
        try:
            msg = json.loads(entry["message"])["message"]
        except (KeyError, ValueError, TypeError):
            continue
        if msg.get("method") != "Network.requestWillBeSent":
            continue
        url = msg.get("params", {}).get("request", {}).get("url", "")
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOCAL_HOSTS:
            if url not in urls:
                urls.append(url)
    return urls


def _console_errors(entries) -> list[str]:
    return [e.get("message", "").strip() for e in entries if e.get("level") == "SEVERE"]


# WebDriver messages after which the session is dead (a renderer killed, e.g. for memory)
_DEAD_SESSION = ("crash", "invalid session id", "session deleted", "disconnected",
                 "no such window", "chrome not reachable")


def check_page(driver, base: str, page: str, server_errors: list, timeout_s: float) -> PageResult:
    """Open one page and collect its faults (a WebDriver error is one, and flags the result)."""
    from selenium.common.exceptions import TimeoutException, WebDriverException

    res = PageResult(page)
    t0 = time.monotonic()
    del server_errors[:]
    try:
        driver.get_log("browser"), driver.get_log("performance")  # the previous page's entries
        driver.get(base + page)
        probe = driver.execute_async_script(_PAGE_PROBE, int(timeout_s * 1000))
        res.problems.extend(probe.get("problems", []))
        res.images, res.maths, res.widgets = (probe.get(k, 0) for k in ("images", "maths", "widgets"))
        time.sleep(0.1)  # let late console messages arrive
        console, network = driver.get_log("browser"), driver.get_log("performance")
    except WebDriverException as exc:
        first_line = (exc.msg or type(exc).__name__).strip().splitlines()[0]
        res.problems.append(f"browser error: {first_line}")
        res.timed_out = isinstance(exc, TimeoutException)
        res.crashed = any(w in first_line.lower() for w in _DEAD_SESSION)
        console = network = []
        if not res.crashed:  # what the page logged before the error
            try:
                console, network = driver.get_log("browser"), driver.get_log("performance")
            except WebDriverException:
                res.crashed = True
    for msg in _console_errors(console):
        res.problems.append(f"console error: {msg}")
    for url in _remote_requests(network):
        res.problems.append(f"request to a remote host (the book must read offline): {url}")
    for path, status in list(server_errors):
        res.problems.append(f"local server answered {status} for {path}")
    res.seconds = time.monotonic() - t0
    return res


def static_counts(path: Path) -> dict[str, int]:
    """The ``<img>`` tags and ipywidgets views an HTML file holds (zeros if it does not exist)."""
    if not path.is_file():
        return {"images": 0, "widgets": 0}
    html = path.read_text(encoding="utf-8", errors="replace")
    return {"images": len(re.findall(r"<img\b", html, flags=re.IGNORECASE)),
            "widgets": html.count('type="application/vnd.jupyter.widget-view+json"')}


def _compare_with_file(res: PageResult, path: Path) -> PageResult:
    """Flag a page the browser saw less of than its file holds, and have it tried again."""
    want = static_counts(path)
    if res.images < want["images"] or res.widgets < want["widgets"]:
        res.problems.append(f"page incomplete in the browser: {res.images} of {want['images']} "
                            f"images, {res.widgets} of {want['widgets']} widget views")
        res.timed_out = True
    return res


def check_site(root: Path, pages=None, *, chromium: str, chromedriver: str,
               timeout_s: float = 60.0, on_result=None) -> list[PageResult]:
    """Open each page of ``root`` (default: :func:`content_pages`) and return their results.

    A page the browser timed out on, or whose tab crashed, is tried once more (a busy machine,
    not the page, is the usual cause), after a crash in a fresh browser; its result says so."""
    import tempfile
    from contextlib import ExitStack

    pages = list(pages) if pages is not None else content_pages(root)
    results = []
    with tempfile.TemporaryDirectory(prefix="check-browser-") as profiles, \
            serve(root) as (base, errs), ExitStack() as session:

        def start_browser():
            profile = tempfile.mkdtemp(dir=profiles)  # a fresh, empty profile each time
            drv = session.enter_context(chromium_driver(chromium, chromedriver, profile))
            drv.set_page_load_timeout(timeout_s)
            drv.set_script_timeout(timeout_s + 10)
            return drv

        driver = start_browser()
        for page in pages:
            res = _compare_with_file(check_page(driver, base, page, errs, timeout_s), root / page)
            if res.timed_out or res.crashed:
                if res.crashed:
                    session.close()
                    driver = start_browser()
                first = res
                res = _compare_with_file(check_page(driver, base, page, errs, timeout_s),
                                         root / page)
                res.tries, res.seconds = 2, res.seconds + first.seconds
                res.first_try = first.problems[0] if first.problems else "?"
                if res.crashed:  # twice: the page itself kills the browser; go on without it
                    session.close()
                    driver = start_browser()
            results.append(res)
            if on_result:
                on_result(res)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html_dir", nargs="?", default="_build/html", type=Path)
    ap.add_argument("--page", action="append", help="check only this page (repeatable)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per page (default 60)")
    ap.add_argument("--chromium", help="browser binary (default: $CHROMIUM or /usr/bin/chromium)")
    ap.add_argument("--chromedriver", help="driver (default: $CHROMEDRIVER or /usr/bin/chromedriver)")
    ap.add_argument("--if-available", action="store_true",
                    help="exit 0 with a notice when chromium, chromedriver or selenium is missing")
    args = ap.parse_args(argv)

    if not args.html_dir.is_dir():
        print(f"check_browser: {args.html_dir} is not a folder (build the book first)", file=sys.stderr)
        return 2
    chromium, chromedriver, why = find_browser(args.chromium, args.chromedriver)
    if why:
        if args.if_available:
            print(f"check_browser: skipped, {why}")
            return 0
        print(f"check_browser: ERROR: {why}", file=sys.stderr)
        return 2
    pages = args.page or content_pages(args.html_dir)
    if not pages:
        print(f"check_browser: no HTML pages under {args.html_dir}", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    results = check_site(args.html_dir, pages, chromium=chromium, chromedriver=chromedriver,
                         timeout_s=args.timeout, on_result=lambda r: print(r.line(), flush=True))
    bad = [r for r in results if not r.ok]
    faults = sum(len(r.problems) for r in bad)
    print(f"check_browser: {len(results)} pages in {time.monotonic() - t0:.0f} s, "
          f"{sum(r.images for r in results)} images, {sum(r.maths for r in results)} maths, "
          f"{sum(r.widgets for r in results)} widget views: "
          + ("all clean" if not bad else f"{faults} faults on {len(bad)} pages"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

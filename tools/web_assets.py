"""The book's JavaScript assets, served with the book so that the HTML reads offline.

By default Sphinx loads MathJax, and myst-nb loads the ipywidgets embedder (require.js and
@jupyter-widgets/html-manager), from public CDNs: a reader without a network sees raw TeX and
dead widgets. This file does two things:

* ``python tools/web_assets.py fetch [DEST]`` (run by ``make book``) fetches pinned versions of
  those packages from the npm registry (``npm pack``, checked against the sha512 pinned below)
  into ``DEST`` (default ``_build/web_assets``, git-ignored). Without npm or the registry it prints
  a one-line notice and exits 0: the book then still builds and loads them from the CDN.
  ``python tools/web_assets.py status [DEST]`` exits 1 unless all of them are there.
* As a Sphinx extension (``sphinx: local_extensions`` in ``_config.yml``) it serves every package
  found complete in ``_build/web_assets`` from the book's ``_static`` folder and leaves the CDN
  default for the others, with a one-line notice each. It also fixes two console errors of the
  theme stack (a duplicated sphinx-thebe script, pydata-sphinx-theme's empty default colour mode).

``tools/check_browser.py`` checks the result in a real browser (no request leaves localhost).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEST = ROOT / "_build" / "web_assets"
MARKER = ".complete"


@dataclass(frozen=True)
class Package:
    """One npm package: what to fetch, its pinned tarball hash, what to keep and where."""

    spec: str  # name@version for `npm pack`
    integrity: str  # the tarball's "sha512-<base64>", as the registry lists it
    folder: str  # sub-folder of DEST (and of the book's _static)
    keep: tuple[str, ...]  # paths inside the tarball's package/ folder to copy
    drop: tuple[str, ...] = ("*.map",)  # file patterns not copied (source maps by default)


MATHJAX = Package(
    spec="mathjax@3.2.2",
    integrity="sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
    folder="mathjax",
    keep=("es5", "LICENSE"),
    # the page loads es5/tex-mml-chtml.js, which loads what else it needs from es5/ (fonts,
    # extensions, the a11y tools); the other combined entry points are not needed (-14 MB)
    drop=("*.map", "latest.js", "node-main.js", "mml-chtml.js", "mml-svg.js", "tex-chtml.js",
          "tex-chtml-full.js", "tex-chtml-full-speech.js", "tex-mml-svg.js", "tex-svg.js",
          "tex-svg-full.js"),
)
# The versions myst-nb loads by default (myst_nb.core.config.ipywidgets_js_factory).
REQUIREJS = Package(
    spec="requirejs@2.3.4",
    integrity="sha512-qPD5gRrj6kGQ0ZySAJgqbArkaDqPMbQIT0zSZDkIv1mfA17w/tR2Faq5l2qqRf2CdQx6FWln9nUrgd2UDzb19A==",
    folder="requirejs",
    keep=("require.js",),  # its header carries the licence
)
HTML_MANAGER = Package(
    spec="@jupyter-widgets/html-manager@1.0.6",
    integrity="sha512-+Mn+Ra8wyIHrYaUpfmf9A3dsLkt/NuwzPQN8sthdxBD35VV5cOJbpmgMhNR27n/rmP3mKyEe0PWCJrtZrXTXDQ==",
    folder="html-manager",
    keep=("dist", "LICENSE"),
    # the page loads dist/embed-amd.js (and its fonts); embed.js, its chunks (*.embed.js) and
    # libembed-amd.js are the other bundles of the same code
    drop=("*.map", "embed.js", "*.embed.js", "libembed-amd.js"),
)
PACKAGES = (MATHJAX, REQUIREJS, HTML_MANAGER)

# Paths relative to the book's _static folder (Sphinx resolves relative script paths there).
MATHJAX_PATH = "mathjax/es5/tex-mml-chtml.js"
REQUIREJS_PATH = "requirejs/require.js"
EMBED_AMD_PATH = "html-manager/dist/embed-amd.js"
# Where the embedder looks for widget modules it does not bundle (the book uses only the
# built-in ipywidgets controls, so it never does; tools/check_browser.py would report it).
WIDGETS_CDN = "https://cdn.jsdelivr.net/npm/"
# myst-nb's defaults, used when the packages could not be fetched
CDN_REQUIREJS = "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js"
CDN_REQUIREJS_SRI = "sha256-Ae2Vz/4ePdIu6ZyI/5ZGsYnb+m0JlOmKPjt6XZ9JJkA="
CDN_HTML_MANAGER_DIST = f"{WIDGETS_CDN}{HTML_MANAGER.spec}/dist"

# Loaded between require.js and embed-amd.js on pages with widgets (written into DEST by the
# Sphinx extension, so it is served with the other assets; it is the book's own code).
WIDGETS_SETUP_PATH = "widgets-setup.js"
WIDGETS_SETUP_JS = """\
// Written by tools/web_assets.py: set-up for @jupyter-widgets/html-manager's embed-amd.js.
(function () {
  "use strict";
  var me = document.currentScript;
  // 1. The embedder loads its fonts relative to its AMD module name, which require.js resolves
  //    against the page (404s): map the name to the folder embed-amd.js is served from.
  var dist = me && (me.getAttribute("data-dist") || new URL("html-manager/dist", me.src).href);
  if (dist && window.require && window.require.config) {
    window.require.config({paths: {"@jupyter-widgets/html-manager/dist": dist}});
  }
  // 2. @jupyter-widgets/base typesets widget labels with the MathJax 2 API (MathJax.Hub.Queue),
  //    a TypeError under the book's MathJax 3: forward those calls to MathJax 3.
  document.addEventListener("DOMContentLoaded", function () {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.startup) return;
    mj.Hub = {
      Queue: function () {
        Array.prototype.forEach.call(arguments, function (job) {
          if (Array.isArray(job) && job[0] === "Typeset" && job[2]) {
            mj.startup.promise.then(function () { return mj.typesetPromise([job[2]]); });
          }
        });
      },
    };
  });
})();
"""


def is_complete(dest: Path, pkg: Package) -> bool:
    """True when ``dest`` holds ``pkg`` at its pinned version, completely copied."""
    marker = dest / pkg.folder / MARKER
    return marker.is_file() and marker.read_text().strip() == _marker_text(pkg)


def _marker_text(pkg: Package) -> str:  # a changed selection of files refetches the package
    return f"{pkg.spec} keep={','.join(pkg.keep)} drop={','.join(pkg.drop)}"


def sri_sha512(path: Path) -> str:
    """The file's ``sha512-<base64>`` integrity string, as npm writes it."""
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode("ascii")


def _npm_pack(spec: str, workdir: Path, npm: str) -> Path:
    cmd = [
        npm, "pack", spec, "--json", "--pack-destination", str(workdir),
        "--prefer-offline", "--fetch-retries=1", "--fetch-retry-mintimeout=2000",
        "--fetch-retry-maxtimeout=5000", "--fetch-timeout=60000",
        "--no-audit", "--no-fund", "--loglevel=error",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=240)
    if proc.returncode != 0:
        raise RuntimeError(f"npm pack {spec} failed: {_npm_reason(proc.stderr or proc.stdout)}")
    filename = json.loads(proc.stdout)[0]["filename"]
    # npm < 9 names scoped tarballs "@scope/name-1.0.tgz" but writes "scope-name-1.0.tgz"
    return workdir / filename.lstrip("@").replace("/", "-")


def _npm_reason(output: str) -> str:
    """The informative line of npm's error output (the reason, else the error code)."""
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    errors = [ln.removeprefix("npm error").strip() for ln in lines if ln.startswith("npm error")]
    for want in ("reason:", "404", "code "):
        for msg in errors:
            if want in msg:
                return msg
    return lines[-1] if lines else "(no message)"


def install_package(tarball: Path, pkg: Package, dest: Path) -> None:
    """Check ``tarball`` against the pinned hash, then copy the kept paths to ``dest/folder``."""
    got = sri_sha512(tarball)
    if got != pkg.integrity:
        raise RuntimeError(f"{pkg.spec}: tarball hash {got[:23]}... is not the pinned one")
    target = dest / pkg.folder
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        with tarfile.open(tarball) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:  # Python < 3.11.4 without extraction filters
                tar.extractall(tmp)  # noqa: S202 (a hash-pinned tarball)
        staged = Path(tmp) / "staged"
        staged.mkdir()
        for rel in pkg.keep:
            src = Path(tmp) / "package" / rel
            if src.is_dir():
                shutil.copytree(src, staged / rel, ignore=shutil.ignore_patterns(*pkg.drop))
            elif src.is_file():
                shutil.copy2(src, staged / rel)
            else:
                raise RuntimeError(f"{pkg.spec}: the package has no {rel}")
        (staged / MARKER).write_text(_marker_text(pkg) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staged.rename(target)


def fetch(dest: Path = DEFAULT_DEST, packages=PACKAGES, npm: str | None = None) -> list[str]:
    """Fetch every package not yet complete in ``dest``. Returns one problem line per failure."""
    dest.mkdir(parents=True, exist_ok=True)
    npm = npm or shutil.which("npm")
    problems = []
    npm_failed = False
    for pkg in packages:
        if is_complete(dest, pkg):
            continue
        if npm is None:
            problems.append(f"{pkg.spec}: npm is not installed")
            continue
        if npm_failed:  # an unreachable registry would make each package wait for its timeout
            problems.append(f"{pkg.spec}: not tried after the failure above")
            continue
        try:
            with tempfile.TemporaryDirectory() as work:
                install_package(_npm_pack(pkg.spec, Path(work), npm), pkg, dest)
            print(f"web assets: {pkg.spec} -> {dest / pkg.folder}")
        except (OSError, RuntimeError, ValueError, KeyError, subprocess.SubprocessError) as exc:
            problems.append(f"{pkg.spec}: {exc}")
            npm_failed = True
    return problems


# ------------------------------------------------------------------------- Sphinx extension
def _use_local_assets(app, config) -> None:
    from sphinx.util import logging

    log = logging.getLogger(__name__)
    dest = Path(app.confdir) / "_build" / "web_assets"
    found = {pkg.spec: is_complete(dest, pkg) for pkg in PACKAGES}
    dest.mkdir(parents=True, exist_ok=True)
    setup_js = dest / WIDGETS_SETUP_PATH
    if not setup_js.is_file() or setup_js.read_text() != WIDGETS_SETUP_JS:
        setup_js.write_text(WIDGETS_SETUP_JS)
    config.html_static_path = [*config.html_static_path, str(dest)]
    if found[MATHJAX.spec]:
        config.mathjax_path = MATHJAX_PATH
    else:
        log.info(f"web assets: no local {MATHJAX.spec} in {dest}: MathJax loads from its CDN")
    embed = {"data-jupyter-widgets-cdn": WIDGETS_CDN}
    if found[REQUIREJS.spec] and found[HTML_MANAGER.spec]:
        config.nb_ipywidgets_js = {
            REQUIREJS_PATH: {},
            WIDGETS_SETUP_PATH: {},
            EMBED_AMD_PATH: embed,
        }
    else:
        log.info(f"web assets: no local widget embedder in {dest}: widgets load from a CDN")
        config.nb_ipywidgets_js = {
            CDN_REQUIREJS: {"integrity": CDN_REQUIREJS_SRI, "crossorigin": "anonymous"},
            WIDGETS_SETUP_PATH: {"data-dist": CDN_HTML_MANAGER_DIST},
            f"{CDN_HTML_MANAGER_DIST}/embed-amd.js": {**embed, "crossorigin": "anonymous"},
        }


def _default_colour_mode(app, config) -> None:
    # pydata-sphinx-theme's default_mode (an html_context value) is "" unless set: on a reader's
    # first visit (nothing in localStorage) its script logs 'Got invalid theme mode: .' as a
    # console error, then uses "auto". Say "auto" up front: the same behaviour, no error.
    context = dict(config.html_context or {})
    context.setdefault("default_mode", "auto")
    config.html_context = context


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    # sphinx-thebe 0.3.1 adds its inline `const THEBE_JS_URL = ...` script once per read phase,
    # and Sphinx 7 keeps both copies: the second is a console SyntaxError ("Identifier
    # 'THEBE_JS_URL' has already been declared") on every page. Keep the first of equal scripts.
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        attrs = getattr(js, "attributes", None) or {}
        # an inline script's filename is None or "", depending on who added it
        key = (str(getattr(js, "filename", js) or ""), repr(sorted(attrs.items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    scripts[:] = kept


def setup(app):
    # before myst-nb reads nb_ipywidgets_js (builder-inited) and Sphinx copies static files
    app.connect("config-inited", _use_local_assets, priority=400)
    # two fixes for a clean browser console (tools/check_browser.py fails on console errors)
    app.connect("config-inited", _default_colour_mode)
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="fetch the pinned packages from the npm registry")
    f.add_argument("dest", nargs="?", type=Path, default=DEFAULT_DEST)
    f.add_argument("--strict", action="store_true", help="exit 1 when a package cannot be had")
    st = sub.add_parser("status", help="exit 1 unless every package is complete in DEST")
    st.add_argument("dest", nargs="?", type=Path, default=DEFAULT_DEST)
    args = ap.parse_args(argv)
    if args.cmd == "status":
        missing = [pkg.spec for pkg in PACKAGES if not is_complete(args.dest, pkg)]
        if missing:
            print(f"web assets: not in {args.dest}: {', '.join(missing)}")
        return 1 if missing else 0
    problems = fetch(args.dest)
    if problems:  # one line: which packages, why, and what it means for the reader
        by_reason: dict[str, list[str]] = {}
        for line in problems:
            spec, _, reason = line.partition(": ")
            by_reason.setdefault(reason.replace(f" {spec}", ""), []).append(spec)
        why = "; ".join(f"{', '.join(specs)}: {reason}" for reason, specs in by_reason.items())
        print(f"web assets: NOTICE: not fetched ({why}); the book loads them from CDNs and will "
              "not read offline")
    return 1 if problems and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())

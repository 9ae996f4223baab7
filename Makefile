# CTCNet library + course.  From a clean machine (Python >= 3.10 and make):
#
#   make test    # venv + .[dev]:  pytest (on every core: pytest-xdist), ruff, notebook,
#                #   Colab-markup and repository-URL checks
#   make book    # venv + .[book]: fetch MathJax and the widget embedder from npm (the book
#                #   reads offline; without npm they load from a CDN), execute the notebooks
#                #   that need it (below), build _build/html, check the HTML and the prose's
#                #   <!--out: …--> numbers against the executed notebooks, then check every page
#                #   in headless Chromium when chromium and chromedriver are installed
#                #   (BROWSER_CHECK=auto)
#   make check-browser  # only the Chromium check of _build/html (apt-get install chromium
#                #   chromium-driver); BROWSER_CHECK=yes|no makes it required|skipped in `make book`
#   make check-colab  # the notebooks rendered as Colab renders them, opened in Chromium
#   make smoke-full  # full mode (the GPU paths) at toy sizes on the CPU, for the chapters whose
#                #   code differs from small mode (tools/smoke_full_mode.py --plan says which)
#   make smoke-full-all  # every chapter in full mode, as a check before a release
#   make clean   # remove build outputs and caches, the book's execution cache included
#   make distclean  # also remove .venv
#
# Which notebooks `make book` executes: those whose code cells changed since they were last
# executed, or all of them when anything else their outputs depend on changed (any file of
# ctcnet/, pyproject.toml, _config.yml's execute section, the installed packages, CTCNET_*
# variables, the offline faces): jupyter-cache (_config.yml: execute_notebooks: cache) keeps the
# outputs in _build/.jupyter_cache, and tools/book_cache.py empties it when that key changes, so
# no output is stale. A fresh clone (CI) has no cache and executes everything; `make clean` or
# `rm -rf _build/.jupyter_cache` forces it here. The table printed at the end says which
# notebooks ran and which came from the cache.
#
# The virtualenv (.venv) is created once and reused.  Each extra is installed
# once per version of pyproject.toml: a stamp file named after a hash of
# pyproject.toml marks it done, so re-running is quick.
#
# torch: with no NVIDIA driver (no `nvidia-smi`) torch==$(TORCH_VERSION) is
# installed first, explicitly, as the CPU build (from $(TORCH_CPU_INDEX) when that
# index is reachable, otherwise from the configured pip indexes).  With a GPU the
# default torch from PyPI (a CUDA build) is installed.

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
BOOK_BUILD_FLAGS ?= --all -W -n --keep-going
# tools/check_browser.py after `make book`: auto = when chromium and chromedriver are installed
# and the web assets could be fetched (else a one-line notice), yes = required, no = skipped
# (.ci/run runs it as a step of its own)
BROWSER_CHECK ?= auto
# -n auto: one pytest-xdist worker per core (tests run torch on one thread each, tests/conftest.py);
# -m "not slow": the inductor compile test (minutes) runs with `make test PYTEST_ARGS=-q` or
# `pytest -m slow`; its graph-capture twin runs every time
PYTEST_ARGS ?= -q -n auto -m "not slow"
# extra flags of tools/book_timings.py after `make book` (.ci/run: --require-executed)
BOOK_TIMINGS_FLAGS ?=

VENV_ABS := $(abspath $(VENV))
VPY := $(VENV_ABS)/bin/python
PIP := $(VPY) -m pip
# torch without byte-compiling its 20,000 modules at install time (Python compiles those a run
# imports when it first imports them): 28 s -> 12 s. The extras are compiled as usual, so that a
# package's SyntaxWarnings appear at install time, not on the stderr of a notebook or a command.
PIP_INSTALL_TORCH := $(PIP) install --no-compile
PIP_INSTALL := $(PIP) install
# Tools run from the venv (so do subprocesses started by notebooks and tests).
export PATH := $(VENV_ABS)/bin:$(PATH)
export VIRTUAL_ENV := $(VENV_ABS)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

DEPS_HASH := $(shell $(PYTHON) -c "import hashlib; print(hashlib.sha256(open('pyproject.toml','rb').read()).hexdigest()[:12])")
ifeq ($(DEPS_HASH),)
$(error could not hash pyproject.toml with $(PYTHON); set PYTHON=/path/to/python3)
endif
TORCH_STAMP := $(VENV)/.stamp-torch-$(TORCH_VERSION)
STAMP = $(VENV)/.stamp-$(1)-$(DEPS_HASH)

.PHONY: help venv venv-book venv-dev test book check-browser check-colab smoke-full smoke-full-all \
  timings clean distclean
.DEFAULT_GOAL := help

help:
	@sed -n '1,35p' Makefile | sed 's/^# \{0,1\}//'

# ---------------------------------------------------------------- environment
$(VPY):
	$(PYTHON) -m venv $(VENV)

$(TORCH_STAMP): | $(VPY)
	@set -e; \
	if $(VPY) -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '$(TORCH_VERSION)')" 2>/dev/null; then \
	  echo "torch $(TORCH_VERSION) already installed in $(VENV)"; \
	elif command -v nvidia-smi >/dev/null 2>&1; then \
	  echo ">>> nvidia-smi found: installing the default (CUDA) torch build"; \
	  $(PIP_INSTALL_TORCH) torch; \
	elif [ -n "$(TORCH_CPU_INDEX)" ] && $(VPY) -c "import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/torch/', method='HEAD'), timeout=8)" "$(TORCH_CPU_INDEX)" 2>/dev/null; then \
	  echo ">>> no NVIDIA GPU: installing the CPU build torch==$(TORCH_VERSION) from $(TORCH_CPU_INDEX)"; \
	  $(PIP_INSTALL_TORCH) "torch==$(TORCH_VERSION)" --index-url "$(TORCH_CPU_INDEX)"; \
	else \
	  echo ">>> no NVIDIA GPU, $(TORCH_CPU_INDEX) unreachable: installing torch==$(TORCH_VERSION) from the configured pip indexes"; \
	  $(PIP_INSTALL_TORCH) "torch==$(TORCH_VERSION)"; \
	fi
	@touch $@

$(VENV)/.stamp-%-$(DEPS_HASH): $(TORCH_STAMP)
	$(PIP_INSTALL) -e ".[$*]"
	@rm -f $(VENV)/.stamp-$*-*
	@touch $@

# Both extras in one pip run (one resolution) when neither is installed yet.
venv: $(TORCH_STAMP)
	@if [ ! -e $(call STAMP,dev) ] && [ ! -e $(call STAMP,book) ]; then \
	  echo "$(PIP_INSTALL) -e \".[dev,book]\""; $(PIP_INSTALL) -e ".[dev,book]" && \
	  rm -f $(VENV)/.stamp-dev-* $(VENV)/.stamp-book-* && \
	  touch $(call STAMP,dev) $(call STAMP,book); fi
	@$(MAKE) --no-print-directory venv-dev venv-book
venv-book: $(call STAMP,book)
venv-dev: $(call STAMP,dev)

# ---------------------------------------------------------------------- tests
test: $(call STAMP,dev)
	@set +e; $(VPY) -m pytest $(PYTEST_ARGS); rc=$$?; set -e; \
	if [ $$rc -eq 5 ]; then \
	  echo "ERROR: pytest collected no tests (exit 5) -- that counts as a failure." >&2; exit 1; \
	elif [ $$rc -ne 0 ]; then \
	  echo "ERROR: pytest failed (exit $$rc)." >&2; exit $$rc; \
	fi
	ruff check .
	$(VPY) tools/check_notebooks.py
	$(VPY) tools/colab_view.py
	$(VPY) tools/check_repo_url.py

# ----------------------------------------------------------------------- book
# -W: any Sphinx/notebook warning is an error; -n: nitpicky cross-references;
# --keep-going: report every problem, then fail; --all: rebuild every page.
# Cell errors abort the build (execute.raise_on_error in _config.yml); then
# tools/check_html.py fails on stray outputs, broken maths, stderr, truncated cells, tiny figures,
# and tools/check_browser.py on console errors, images that do not load, maths MathJax did not
# typeset, widgets not rendered and any request that leaves localhost.
# tools/web_assets.py fetches pinned MathJax/require.js/html-manager into _build/web_assets
# (served from _static; a notice and the CDNs when npm or the registry is unavailable).
# tools/book_cache.py empties the execution cache when the library or anything else the outputs
# depend on changed (see the header); tools/book_execute.py executes what the cache lacks, two
# notebooks at a time (chapters 11 and 13 alone), and stores them in it for the build to read; _build/.book_build_start tells tools/book_timings.py which
# notebooks this build executed and which came from the cache.
book: $(call STAMP,book)
	$(VPY) tools/web_assets.py fetch
	$(VPY) tools/book_cache.py
	@mkdir -p _build && touch _build/.book_build_start
	$(VPY) tools/book_execute.py
	jupyter-book build $(BOOK_BUILD_FLAGS) .
	$(VPY) tools/book_execute.py --write-executed _build/jupyter_execute
	@$(VPY) tools/book_timings.py --since _build/.book_build_start $(BOOK_TIMINGS_FLAGS)
	$(VPY) tools/check_html.py _build/html
	$(VPY) tools/colab_view.py --check-numbers _build/jupyter_execute
	@case "$(BROWSER_CHECK)" in \
	  no) echo "browser check skipped (BROWSER_CHECK=no)" ;; \
	  yes) echo "$(VPY) tools/check_browser.py _build/html"; $(VPY) tools/check_browser.py _build/html ;; \
	  *) if $(VPY) tools/web_assets.py status; then \
	       echo "$(VPY) tools/check_browser.py --if-available _build/html"; \
	       $(VPY) tools/check_browser.py --if-available _build/html; \
	     else echo "browser check skipped: the book loads its web assets from CDNs (see above)"; fi ;; \
	esac

check-browser: $(call STAMP,book)
	$(VPY) tools/check_browser.py _build/html

# tools/colab_view.py: every notebook's markdown rendered as Colab renders it (no MyST), written
# to _build/colab_view and opened in headless Chromium with the MathJax `make book` fetched.
check-colab: $(call STAMP,book)
	$(VPY) tools/web_assets.py fetch
	$(VPY) tools/colab_view.py --out _build/colab_view --browser

# Full mode (a GPU's models, sizes and branches) at toy sizes on the CPU, so that the Colab paths
# cannot rot: the chapters whose code differs between the modes (read from their code: mode,
# size cap, subject(), reproduction_plan(), branches on a size) on the fall-back path (no authors'
# weights here), and those that call subject() also on the authors'-weights path with an
# untrained stand-in; two kernels at once. The other chapters run the same code in both modes,
# and `make book` executes them. smoke-full-all: every chapter, as before a release.
smoke-full: $(call STAMP,book)
	$(VPY) tools/smoke_full_mode.py

smoke-full-all: $(call STAMP,book)
	$(VPY) tools/smoke_full_mode.py --all

timings:
	@$(VPY) tools/book_timings.py

# ---------------------------------------------------------------------- clean
clean:
	rm -rf _build .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info

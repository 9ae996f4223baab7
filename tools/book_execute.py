#!/usr/bin/env python3
"""Execute the book's notebooks that the execution cache lacks, two at a time, and store them in
the cache, so that ``jupyter-book build`` only reads them (`make book` runs it after
tools/book_cache.py).

    python tools/book_execute.py             # what the cache lacks, on --jobs kernels
    python tools/book_execute.py --dry-run   # say what would run, and in which order

Jupyter Book 1 (myst-nb with ``execute_notebooks: cache``) executes a notebook when Sphinx reads
it, one after the other, each kernel with every thread. Most chapters run small operations that
use two threads poorly, so this tool runs the same executions before the build on ``--jobs``
kernels with one thread each (``OMP_NUM_THREADS=1``), longest first, and puts each executed
notebook into the cache exactly as myst-nb would (jupyter-cache's ``single_nb_execution`` in the
notebook's folder, the timeout of _config.yml). The notebooks in ``ALONE`` run afterwards, one at a
time, with every thread: chapter 11 times the network (a second kernel would share the CPU with
the passes it times) and chapter 13 compares a map computed with the machine's thread count and
with one thread.

A notebook that raises stops the tool (exit 1) with its error; ``jupyter-book build`` would then
execute it again and fail the same way. Nothing is executed for a notebook the cache already holds
(its code unchanged and tools/book_cache.py's key unchanged).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "_build" / ".jupyter_cache"
#: Run alone, with every thread, after the others (see the module docstring).
ALONE = ("book/11_cost.ipynb", "book/13_attributions.ipynb")
#: Seconds each notebook took in the last reference build (`make book`'s table): the order in
#: which the parallel ones start, longest first, so that no long one starts last.
TYPICAL_SECONDS = {"book/12_receptive_fields.ipynb": 68, "book/01_task.ipynb": 54,
                   "book/06_lgcm.ipynb": 47, "book/14_ablations.ipynb": 45,
                   "book/09_training.ipynb": 45, "book/04_fsau.ipynb": 28}


def book_notebooks() -> list[str]:
    """The notebooks of _toc.yml, as paths relative to the repository."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]] + [c["file"] for part in toc.get("parts", [])
                             for c in part.get("chapters", [])]
    return [f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").exists()]


def cell_timeout() -> int:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return int(config.get("execute", {}).get("timeout", 1200))


def _execute(path: str, timeout: int, threads: int | None) -> tuple[str, object, float, str]:
    """In a worker: execute the notebook as myst-nb does; return (path, notebook, seconds, error
    text or "")."""
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution

    if threads:  # the kernel inherits this process's environment
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    notebook = nbformat.read(ROOT / path, as_version=4)
    # no record_timing: the timings it writes into the cells' metadata would keep the build from
    # matching the notebook in the cache (tests/test_book_execute.py)
    result = single_nb_execution(notebook, cwd=str((ROOT / path).parent), timeout=timeout,
                                 allow_errors=False, meta_override=True)
    error = result.exc_string or (repr(result.err) if result.err else "")
    return path, result.nb, result.time, error


def write_executed(cache, folder: Path) -> int:
    """Write each book notebook, merged with its cached outputs, to ``folder``/<its path>.

    myst-nb 1.x writes the notebook it read, not the one it merged from the cache, into
    ``_build/jupyter_execute``: a notebook taken from the cache lands there without outputs, and
    the download buttons and tools/colab_view.py --check-numbers would read empty cells."""
    import nbformat

    missing = []
    for path in book_notebooks():
        try:
            _, merged = cache.merge_match_into_notebook(nbformat.read(ROOT / path, as_version=4))
        except KeyError:
            missing.append(path)
            continue
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(merged, target)
    if missing:
        print(f"book_execute: not in the execution cache: {missing}", file=sys.stderr)
        return 1
    print(f"book_execute: {len(book_notebooks())} executed notebooks written under {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="kernels at once (default: 2, or 1 on one CPU)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="jupyter-cache folder")
    parser.add_argument("--dry-run", action="store_true", help="say what would run; run nothing")
    parser.add_argument("--write-executed", type=Path, metavar="DIR",
                        help="after the build: write every book notebook with its cached outputs "
                             "under DIR (what myst-nb leaves without outputs when it reads them "
                             "from the cache)")
    args = parser.parse_args(argv)

    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(str(args.cache))
    if args.write_executed:
        return write_executed(cache, args.write_executed)
    missing = []
    for path in book_notebooks():
        try:
            cache.match_cache_notebook(nbformat.read(ROOT / path, as_version=4))
        except KeyError:
            missing.append(path)
    together = sorted((p for p in missing if p not in ALONE),
                      key=lambda p: -TYPICAL_SECONDS.get(p, 20))
    alone = [p for p in ALONE if p in missing]
    jobs = max(1, args.jobs)
    print(f"book_execute: {len(missing)} notebook(s) not in the cache: {len(together)} on {jobs} "
          f"kernel(s) with one thread each, then {len(alone)} alone with every thread")
    if args.dry_run or not missing:
        for p in together + alone:
            print(f"  {p}")
        return 0

    from ctcnet.data.offline_faces import build_offline_faces

    build_offline_faces(progress=False)  # before two kernels would both build it
    timeout, done, begin = cell_timeout(), 0, time.perf_counter()

    def store(path: str, notebook, seconds: float, error: str) -> None:
        nonlocal done
        if error:
            raise SystemExit(f"book_execute: {path} raised while executing:\n{error}")
        stage = cache.add_nb_to_project(str(ROOT / path))
        cache.cache_notebook_bundle(CacheBundleIn(notebook, stage.uri,
                                                  data={"execution_seconds": seconds}),
                                    check_validity=False, overwrite=True)
        done += 1
        print(f"  executed {path} in {seconds:.1f} s ({done} of {len(missing)}, "
              f"{time.perf_counter() - begin:.0f} s so far)", flush=True)

    threads = 1 if jobs > 1 else None
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_execute, p, timeout, threads) for p in together]
        try:
            for future in as_completed(futures):
                store(*future.result())
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # what has not started never will
            raise
    for path in alone:
        store(*_execute(path, timeout, None))
    print(f"book_execute: {done} notebook(s) executed in {time.perf_counter() - begin:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

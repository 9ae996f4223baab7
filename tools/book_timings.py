#!/usr/bin/env python3
"""Print a markdown table of per-notebook execution times of the last book build.

Run after ``jupyter-book build`` (``make book`` does it).  Jupyter Book 1 (myst-nb)
records how each notebook was executed:

* ``execute_notebooks: force`` / ``auto`` (this book: force) -- in the Sphinx
  environment pickle ``_build/.doctrees/environment.pickle`` as
  ``env.nb_metadata[docname]["exec_data"]`` = {mtime, runtime, method, succeeded, ...};
* ``execute_notebooks: cache`` -- additionally in the jupyter-cache database
  ``_build/.jupyter_cache`` (records' ``data["execution_seconds"]``), which is
  what ``jcache notebook list`` shows.

Both sources are read; the environment wins when both know a notebook.  With
``--since FILE`` (``make book`` touches ``_build/.book_build_start`` before the build),
a notebook whose outputs were taken from the cache, not executed in this build, is
marked "cached" with the date it was executed; ``--require-executed`` then fails
(exit 1) if any was (`.ci/run`: a fresh clone must execute every notebook).  With
``--summary FILE`` (default: ``$GITHUB_STEP_SUMMARY`` if set) the table is also
appended to that file.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pickle
import sys
from pathlib import Path


def from_environment(build_dir: Path) -> dict[str, dict]:
    pickle_path = build_dir / ".doctrees" / "environment.pickle"
    if not pickle_path.exists():
        return {}
    with pickle_path.open("rb") as fh:
        env = pickle.load(fh)  # needs sphinx/myst-nb importable: run in the book's venv
    rows = {}
    for docname, meta in sorted(getattr(env, "nb_metadata", {}).items()):
        data = meta.get("exec_data")
        if not data:
            continue
        path = env.doc2path(docname, base=False)
        rows[str(Path(path).with_suffix(""))] = {
            "path": str(path),
            "runtime": data.get("runtime"),
            "method": data.get("method", "?"),
            "succeeded": data.get("succeeded"),
        }
    return rows


def from_jupyter_cache(build_dir: Path, src_dir: Path) -> dict[str, dict]:
    cache_dir = build_dir / ".jupyter_cache"
    if not cache_dir.exists():
        return {}
    from jupyter_cache import get_cache

    rows = {}
    for record in get_cache(str(cache_dir)).list_cache_records():
        path = Path(record.uri)
        try:
            path = path.resolve().relative_to(src_dir.resolve())
        except ValueError:
            pass
        rows[str(path.with_suffix(""))] = {
            "path": str(path),
            "runtime": (record.data or {}).get("execution_seconds"),
            "method": "cache",
            "succeeded": True,
        }
    return rows


def mark_cached(rows: dict[str, dict], build_dir: Path, src_dir: Path, since: float) -> None:
    """Mark the rows whose outputs came from the execution cache: the cache record that matches
    the notebook's current code was made before ``since`` (a Unix time). jupyter-cache stamps its
    records in UTC, so the comparison is made in UTC."""
    cache_dir = build_dir / ".jupyter_cache"
    if not cache_dir.exists():
        return
    import nbformat
    from jupyter_cache import get_cache

    cache = get_cache(str(cache_dir))
    since_utc = datetime.datetime.fromtimestamp(since, datetime.timezone.utc)
    for row in rows.values():
        try:
            record = cache.match_cache_notebook(nbformat.read(src_dir / row["path"], as_version=4))
        except (KeyError, OSError):
            continue  # not in the cache: executed without it, or failed
        created = record.created
        if created.tzinfo is None:
            created = created.replace(tzinfo=datetime.timezone.utc)
        if created < since_utc:
            row["method"] = f"cached (executed {created:%Y-%m-%d %H:%M} UTC)"
            row["cached"] = True
        elif row["method"] == "cache":
            row["method"] = "executed (cache mode)"


def render(rows: dict[str, dict]) -> str:
    lines = [
        "| notebook | execution time (s) | method | succeeded |",
        "|---|---:|---|---|",
    ]
    total = executed = 0.0
    for _, row in sorted(rows.items()):
        runtime = row["runtime"]
        total += runtime or 0.0
        executed += 0.0 if row.get("cached") else runtime or 0.0
        shown = f"{runtime:.1f}" if isinstance(runtime, (int, float)) else "–"
        ok = {True: "yes", False: "**NO**"}.get(row["succeeded"], "?")
        lines.append(f"| {row['path']} | {shown} | {row['method']} | {ok} |")
    lines.append(f"| **total ({len(rows)} notebooks)** | **{total:.1f}** | | |")
    n_cached = sum(bool(row.get("cached")) for row in rows.values())
    if n_cached:
        lines.append(f"| executed in this build: {len(rows) - n_cached} of {len(rows)} | "
                     f"{executed:.1f} | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, default=Path("_build"))
    parser.add_argument("--src-dir", type=Path, default=Path("."))
    parser.add_argument("--summary", default=os.environ.get("GITHUB_STEP_SUMMARY"),
                        help="also append the table to this file")
    parser.add_argument("--since", type=Path,
                        help="a file touched before the build: notebooks executed earlier are "
                             "marked as taken from the cache")
    parser.add_argument("--require-executed", action="store_true",
                        help="with --since: exit 1 if any notebook came from the cache")
    args = parser.parse_args(argv)

    if not args.build_dir.exists():
        print(f"book_timings: no build directory {args.build_dir}; build the book first",
              file=sys.stderr)
        return 1
    rows = from_jupyter_cache(args.build_dir, args.src_dir)
    rows.update(from_environment(args.build_dir))
    if args.since is not None:
        mark_cached(rows, args.build_dir, args.src_dir, args.since.stat().st_mtime)
    table = render(rows) if rows else "_No notebook was executed in this build._\n"
    print("### Notebook execution times\n")
    print(table, end="")
    if args.summary:
        with open(args.summary, "a", encoding="utf-8") as fh:
            fh.write("### Notebook execution times\n\n" + table)
    if args.require_executed:
        if args.since is None:
            parser.error("--require-executed needs --since")
        cached = sorted(row["path"] for row in rows.values() if row.get("cached"))
        if cached or not rows:
            print("ERROR: not executed in this build (taken from the execution cache): "
                  + (", ".join(cached) or "no notebook at all"), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

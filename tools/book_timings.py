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
``--summary FILE`` (default: ``$GITHUB_STEP_SUMMARY`` if set) the table is also
appended to that file.
"""

from __future__ import annotations

import argparse
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


def render(rows: dict[str, dict]) -> str:
    lines = [
        "| notebook | execution time (s) | method | succeeded |",
        "|---|---:|---|---|",
    ]
    total = 0.0
    for _, row in sorted(rows.items()):
        runtime = row["runtime"]
        total += runtime or 0.0
        shown = f"{runtime:.1f}" if isinstance(runtime, (int, float)) else "–"
        ok = {True: "yes", False: "**NO**"}.get(row["succeeded"], "?")
        lines.append(f"| {row['path']} | {shown} | {row['method']} | {ok} |")
    lines.append(f"| **total ({len(rows)} notebooks)** | **{total:.1f}** | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, default=Path("_build"))
    parser.add_argument("--src-dir", type=Path, default=Path("."))
    parser.add_argument("--summary", default=os.environ.get("GITHUB_STEP_SUMMARY"),
                        help="also append the table to this file")
    args = parser.parse_args(argv)

    if not args.build_dir.exists():
        print(f"book_timings: no build directory {args.build_dir}; build the book first",
              file=sys.stderr)
        return 1
    rows = from_jupyter_cache(args.build_dir, args.src_dir)
    rows.update(from_environment(args.build_dir))
    table = render(rows) if rows else "_No notebook was executed in this build._\n"
    print("### Notebook execution times\n")
    print(table, end="")
    if args.summary:
        with open(args.summary, "a", encoding="utf-8") as fh:
            fh.write("### Notebook execution times\n\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Execute chapters the way the book build does, without touching the stored (output-free) files.

    python tools/run_notebook.py book/04_fsau.ipynb [more.ipynb ...] [--keep DIR]

Prints the wall time of each notebook and the first failing cell; ``--keep DIR`` writes the
executed copies there (to look at figures). The exit code is 1 if any notebook failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--keep", type=Path, help="write executed copies to this folder")
    parser.add_argument("--timeout", type=int, default=1200, help="per-cell timeout (s)")
    args = parser.parse_args()
    failed = 0
    for path in args.notebooks:
        notebook = nbformat.read(path, as_version=4)
        client = NotebookClient(notebook, timeout=args.timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        start = time.perf_counter()
        try:
            client.execute()
            status = "ok"
        except CellExecutionError as exc:
            failed += 1
            status = "FAILED\n" + str(exc)[-3000:]
        print(f"{path}: {time.perf_counter() - start:.1f} s {status}", flush=True)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, args.keep / path.name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Execute chapters in full mode at toy sizes, so that the GPU code paths cannot rot on a CPU.

    python tools/smoke_full_mode.py                      # every chapter and the GPU appendix
    python tools/smoke_full_mode.py book/10_evaluation.ipynb book/appendix_gpu.ipynb [--keep DIR]
    python tools/smoke_full_mode.py --stand-in-official book/12_receptive_fields.ipynb


Each notebook runs in a fresh kernel with ``CTCNET_BOOK_MODE=full`` (the sizes, models and branches
a GPU run takes) and ``CTCNET_BOOK_CAP=smoke`` (every size capped at a toy value by
``ctcnet.course.book.settings``), without touching the stored, output-free files. Nothing is
downloaded for the chapters: without the authors' weights and CelebA they take the fall-back path
of ``ctcnet.course.book.subject`` and print its notice. ``--stand-in-official`` takes the other
path instead: an untrained ``official`` network written in the authors' checkpoint format and the
offline test faces standing in for CelebA (``$CTCNET_OFFICIAL_CHECKPOINT``, ``$CTCNET_CELEBA``).
Prints pass/fail and the wall time of each notebook and a summary; the exit code is 1 if any
notebook failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

BOOK = Path(__file__).resolve().parent.parent / "book"
SMOKE_ENV = {"CTCNET_BOOK_MODE": "full", "CTCNET_BOOK_CAP": "smoke"}


def default_notebooks() -> list[Path]:
    """Every numbered chapter of the book, then the GPU appendix."""
    chapters = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
    return chapters + sorted(BOOK.glob("appendix_*.ipynb"))


def stand_in_official(folder: Path) -> dict[str, str]:
    """Environment that makes ``subject()`` find "the authors' weights and CelebA": an untrained
    ``official`` CTCNet in the authors' format and the offline test faces (128x128 PNGs)."""
    import torch

    import ctcnet
    from ctcnet.course.book import faces
    from ctcnet.data.offline_faces import default_root
    from ctcnet.model import reference_init_
    from ctcnet.weights import export_official_state_dict

    torch.manual_seed(0)
    model = reference_init_(ctcnet.build_model("official"))
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / "stand_in_best.pth"
    torch.save(export_official_state_dict(model), checkpoint)
    faces("test", 1)  # builds the offline face set on first use
    return {"CTCNET_OFFICIAL_CHECKPOINT": str(checkpoint), "CTCNET_CELEBA": str(default_root() / "test")}


def run_one(path: Path, timeout: int, keep: Path | None) -> tuple[bool, float, str]:
    """Execute ``path`` in a new kernel; return (passed, seconds, first error line)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
        ok, why = True, ""
    except (CellExecutionError, DeadKernelError, TimeoutError, RuntimeError) as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        ok, why = False, (lines[-1] if lines else type(exc).__name__)[:300]
    seconds = time.perf_counter() - start
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, keep / path.name)
    return ok, seconds, why


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="default: every chapter and the GPU appendix")
    parser.add_argument("--keep", type=Path, help="write the executed copies to this folder")
    parser.add_argument("--timeout", type=int, default=600, help="per-cell timeout (s)")
    parser.add_argument("--stand-in-official", action="store_true",
                        help="take the authors'-weights path with an untrained stand-in")
    args = parser.parse_args(argv)
    os.environ.update(SMOKE_ENV)  # inherited by every kernel started below
    if args.stand_in_official:
        import tempfile

        os.environ.update(stand_in_official(Path(tempfile.mkdtemp(prefix="ctcnet-stand-in-"))))
    notebooks = args.notebooks or default_notebooks()
    results = []
    for path in notebooks:
        ok, seconds, why = run_one(path, args.timeout, args.keep)
        results.append((path, ok, seconds))
        print(f"{'PASS' if ok else 'FAIL'} {seconds:7.1f} s  {path}" + (f"\n    {why}" if why else ""),
              flush=True)
    failed = sum(not ok for _, ok, _ in results)
    total = sum(s for _, _, s in results)
    which = "an untrained stand-in for the authors' weights" if args.stand_in_official else "fall-back"
    print(f"full mode ({which}), sizes capped (smoke): {len(results) - failed} passed, {failed} failed, "
          f"{total:.0f} s in all")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

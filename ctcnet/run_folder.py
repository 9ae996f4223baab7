"""The folder of a training run, and the faults it survives.

A run folder holds ``last.pt`` (everything a resume needs), ``best.pt`` and ``ema.pt`` (the
validated weights), ``step_N.pt`` (kept copies), ``log.csv`` (one row per step), ``config.json``,
``tb/`` (TensorBoard) and, while a training writes into it, ``train.lock``.

* **One training at a time.** :meth:`RunFolder.claim` takes an exclusive ``flock`` on
  ``train.lock`` and writes its pid there; a second training into the same folder is refused,
  naming that pid. The kernel drops the lock when its process dies, however it dies, so the file a
  killed run leaves behind is stale and simply taken over; a run that ends removes it. (Where
  ``fcntl`` does not exist, e.g. Windows, no lock is taken.)
* **No leftovers.** Files are written atomically (``.NAME.XXXX.tmp``, then a rename); a run killed
  half-way through a save leaves such a temporary file, which the next claim removes.
* **A full disk is named.** :func:`disk_errors` turns "no space left" from any layer (torch's zip
  writer reports it as ``[enforce fail at inline_container.cc] unexpected pos``) into one line
  naming the file; the atomic write has left the previous file intact.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._atomic import atomic_write
from .errors import DiskFullError, TrainingError

try:
    import fcntl
except ImportError:  # Windows: no flock, no lock
    fcntl = None

__all__ = ["LOG_FIELDS", "RunFolder", "disk_errors"]

LOG_FIELDS = ("step", "loss", "lr", "time", "val_psnr", "val_ssim", "bicubic_psnr")
#: The temporary files that an interrupted atomic write of one of the run's files leaves.
_LEFTOVER = re.compile(r"^\.(last|best|ema|step_\d+)\.pt\.\w+\.tmp$|^\.(config\.json|log\.csv)\.\w+\.tmp$")


def _disk_full(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Raise ``DiskFullError("no space left on device: PATH")`` for a write that ran out of disk
    space or quota, whichever exception reported it (the ``OSError`` may sit deep in the chain)."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        if not _disk_full(exc):
            raise
        raise DiskFullError(f"no space left on device: {path}") from exc


class RunFolder:
    """A run folder: its files' paths, its lock, its logs.

    Only the process that writes (rank 0 under DDP) calls :meth:`claim`; the others only read the
    paths. :meth:`release` is safe to call whether or not the folder was claimed.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.last, self.best, self.ema = (self.path / n for n in ("last.pt", "best.pt", "ema.pt"))
        self.log_path = self.path / "log.csv"
        self._lock: int | None = None
        self._tensorboard: Any = None

    # ------------------------------------------------------------------------ lock and leftovers
    def claim(self, config: dict[str, Any], keep_log_until: int, tensorboard: bool) -> None:
        """Lock the folder for this process, remove what a killed run left, write
        ``config.json`` and start ``log.csv`` (on resume: keep its rows up to ``keep_log_until``,
        else ``-1``)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        for leftover in self.path.iterdir():
            if _LEFTOVER.match(leftover.name):
                leftover.unlink(missing_ok=True)
        with disk_errors(self.path / "config.json"), atomic_write(self.path / "config.json", "w") as f:
            f.write(json.dumps(config, indent=2, default=str) + "\n")
        self._start_log(keep_log_until)
        if tensorboard:
            try:
                # an optional dependency: imported only when asked for
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                return
            self._tensorboard = SummaryWriter(str(self.path / "tb"))

    def _take_lock(self) -> None:
        if fcntl is None:
            return
        lock_path = self.path / "train.lock"
        while True:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise TrainingError(
                    f"{self.path} is in use by another training (pid {holder}, "
                    f"{lock_path.name}): wait for it to end or choose another --out"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                    break
            os.close(fd)  # the holder removed this file as we opened it: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock = fd

    def release(self) -> None:
        """Close the TensorBoard writer; remove ``train.lock`` and unlock."""
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        if self._lock is not None:
            (self.path / "train.lock").unlink(missing_ok=True)  # while still holding the lock
            os.close(self._lock)  # closing the last descriptor drops the flock
            self._lock = None

    # ------------------------------------------------------------------------ files
    def keep(self, step: int) -> None:
        """Copy ``last.pt`` to ``step_N.pt`` (atomically, like every checkpoint)."""
        kept = self.path / f"step_{step}.pt"
        with disk_errors(kept), atomic_write(kept) as dst, self.last.open("rb") as src:
            shutil.copyfileobj(src, dst)

    def _start_log(self, keep_until: int) -> None:
        rows = []
        if keep_until >= 0 and self.log_path.is_file():
            with self.log_path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) <= keep_until]
        with disk_errors(self.log_path), atomic_write(self.log_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in LOG_FIELDS} for r in rows)

    def log(self, row: dict[str, Any]) -> None:
        """Append one step's row to ``log.csv`` (and TensorBoard)."""
        with disk_errors(self.log_path), self.log_path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=LOG_FIELDS).writerow({k: row.get(k, "") for k in LOG_FIELDS})
        if self._tensorboard is not None:
            for key, value in row.items():
                if key != "step":
                    self._tensorboard.add_scalar(f"train/{key}", value, row["step"])

"""Writing files so that a crash never leaves a half-written one behind."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _current_umask() -> int:
    # The umask can only be read by setting it; set it straight back. Reading /proc would avoid
    # the round trip but is Linux-only.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _final_mode(path: Path) -> int:
    """The permissions ``path`` gets: those of the file it replaces, else ``0o666 & ~umask``.

    ``mkstemp`` creates its file as 0600 whatever the umask (it must not leak a temporary file to
    other users); the renamed result should look like any file ``open(path, "w")`` would create.
    """
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", **open_kwargs) -> Iterator[IO]:
    """Open a temporary file next to ``path`` (``.NAME.XXXX.tmp``); when the block ends without an
    exception, flush it to disk and rename it over ``path``, else delete it. Readers therefore see
    the old file or the complete new one, never a torn write.

    The file gets the permissions an ordinary ``open`` would give it (the umask is honoured), or
    keeps those of the file it replaces.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _final_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

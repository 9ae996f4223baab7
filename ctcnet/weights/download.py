"""The authors' released CTCNet weights: fetch them into the cache, then load and fingerprint them.

The authors publish their trained checkpoint only in a Google Drive folder linked from their
README (:data:`OFFICIAL_WEIGHTS_FOLDER`). :func:`official_weights` fetches the folder's
checkpoints with ``gdown`` (the ``colab`` extra: ``pip install "ctcnet[colab]"``) into the cache
(:func:`default_weights_dir`), or copies a local ``.pth`` (or the ones in a folder) there, then
loads every checkpoint with :func:`ctcnet.load_official_checkpoint` and reports its sha256 and
parameter count, so a reader can check that they hold the same file as everyone else. The cache
is where ``--checkpoint official`` looks (:func:`ctcnet.weights.resolve_weights`).

On Colab::

    !pip install "ctcnet[colab]"
    !ctcnet weights official --dest /content/official_weights

Google Drive rate-limits popular files; when it refuses, download the folder in a browser and
pass the ``.pth`` with ``--source``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._atomic import atomic_write
from ..data.fetch import ensure_writable_folder, file_digest
from ..errors import CheckpointError, WeightsUnavailableError, one_line
from .official import load_official_checkpoint

__all__ = [
    "OFFICIAL_WEIGHTS_FOLDER",
    "OfficialWeights",
    "default_weights_dir",
    "find_checkpoints",
    "find_official_checkpoint",
    "official_weights",
]

#: The Google Drive folder of the authors' README ("pretrained models and test results").
OFFICIAL_WEIGHTS_FOLDER = "https://drive.google.com/drive/folders/1sJs2JYqddSk1o4hksOrO2Fk2ciRelXUQ"

#: File endings of PyTorch checkpoints.
CHECKPOINT_SUFFIXES = (".pth", ".pt")

_BY_HAND = (
    f"download {OFFICIAL_WEIGHTS_FOLDER} in a browser and pass the .pth with "
    "`ctcnet weights official --source PATH`"
)


@dataclass(frozen=True)
class OfficialWeights:
    """One checkpoint of the authors, loaded: where it is, its sha256, its size in parameters,
    and the file it was copied from (``None`` when it was fetched or already in the cache)."""

    path: Path
    sha256: str
    parameters: int
    model: Any  # the loaded CTCNet (official preset, eval mode)
    copied_from: Path | None = None

    def describe(self) -> str:
        """One line for the command line."""
        origin = f" (copied from {self.copied_from})" if self.copied_from else ""
        return f"{self.path}: sha256 {self.sha256}, {self.parameters:,} parameters{origin}"


def default_weights_dir() -> Path:
    """Where fetched weights go: ``$CTCNET_WEIGHTS`` or ``~/.cache/ctcnet/official_weights``."""
    env = os.environ.get("CTCNET_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ctcnet" / "official_weights"


def find_official_checkpoint(folder: str | os.PathLike[str] | None = None) -> Path | None:
    """The authors' checkpoint in ``folder`` (default: the cache, :func:`default_weights_dir`)
    without downloading anything, or ``None``. A file whose name contains ``best`` is preferred,
    else the first in sorted order."""
    try:
        found = find_checkpoints(folder if folder is not None else default_weights_dir())
    except FileNotFoundError:
        return None
    best = [p for p in found if "best" in p.name.lower()]
    return (best or found)[0]


def find_checkpoints(source: str | os.PathLike[str]) -> list[Path]:
    """The checkpoint files at ``source``: the file itself, or every ``.pth`` / ``.pt`` below a
    folder (sorted). Raises ``FileNotFoundError`` naming ``source`` when there is none."""
    source = Path(source).expanduser()
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"weights source not found: {source}")
    found = sorted(
        p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES
    )
    if not found:
        raise FileNotFoundError(f"no .pth or .pt checkpoint in {source}; {_BY_HAND}")
    return found


def _download_with_gdown(dest: Path, quiet: bool) -> Path:
    """Fetch the checkpoints of :data:`OFFICIAL_WEIGHTS_FOLDER` into ``dest`` with gdown.

    The folder also holds the authors' test outputs (images); only checkpoint files are fetched
    when gdown can list the folder first (``skip_download``, gdown >= 5.2), else the whole folder.
    """
    try:
        import gdown  # deferred: optional (the colab extra), needed only to fetch from Drive
    except ImportError:
        raise WeightsUnavailableError(
            'fetching the authors\' weights needs gdown: pip install "ctcnet[colab]" (or gdown) '
            f"and run again, or {_BY_HAND}"
        ) from None
    ensure_writable_folder(dest, "weights folder")
    try:
        try:
            listed = gdown.download_folder(
                url=OFFICIAL_WEIGHTS_FOLDER, output=str(dest), quiet=quiet, remaining_ok=True,
                skip_download=True,
            )
        except TypeError:  # gdown < 5.2 cannot list without downloading
            listed = gdown.download_folder(
                url=OFFICIAL_WEIGHTS_FOLDER, output=str(dest), quiet=quiet, remaining_ok=True
            )
            if not listed:
                raise RuntimeError("gdown returned no files") from None
            return dest
        wanted = [f for f in listed or [] if str(f.path).lower().endswith(CHECKPOINT_SUFFIXES)]
        if not wanted:
            raise RuntimeError("the folder lists no .pth/.pt file")
        for item in wanted:
            Path(item.local_path).parent.mkdir(parents=True, exist_ok=True)
            if gdown.download(id=item.id, output=str(item.local_path), quiet=quiet) is None:
                raise RuntimeError(f"gdown could not download {item.path}")
    except Exception as exc:  # gdown raises its own, requests' and OS errors: all mean "not here"
        if isinstance(exc, WeightsUnavailableError):
            raise
        raise WeightsUnavailableError(
            f"cannot fetch the authors' weights from Google Drive ({one_line(exc)}); {_BY_HAND}"
        ) from None
    return dest


def _load_official(path: Path) -> Any:
    try:
        return load_official_checkpoint(path)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _kept_in(path: Path, folder: Path) -> Path:
    """``path`` itself if it lies in ``folder``, else its copy there (written atomically)."""
    if folder.resolve() in path.resolve().parents:
        return path
    target = folder / path.name
    ensure_writable_folder(folder, "weights folder")
    with open(path, "rb") as src, atomic_write(target) as dst:
        shutil.copyfileobj(src, dst)
    return target


def official_weights(
    source: str | os.PathLike[str] | None = None,
    dest: str | os.PathLike[str] | None = None,
    *,
    quiet: bool = False,
) -> list[OfficialWeights]:
    """Find or fetch the authors' checkpoint(s), load each, and return what was loaded.

    Parameters
    ----------
    source : path, optional
        A ``.pth`` file or a folder holding the authors' checkpoint(s) (e.g. the Drive folder
        downloaded by hand): each one that loads is copied into ``dest``. Without it the
        checkpoints are fetched with gdown.
    dest : path, optional
        The cache (default :func:`default_weights_dir`). Checkpoints already there are used
        without downloading again.
    quiet : bool, default False
        Hide gdown's progress output.

    Returns
    -------
    list of OfficialWeights
        One per checkpoint file: path, sha256, parameter count and the loaded model.

    Raises
    ------
    WeightsUnavailableError
        Without ``source``: gdown is missing, the machine is offline or Drive refuses (one line
        that says what to do instead).
    FileNotFoundError
        ``source`` does not exist or holds no checkpoint.
    ctcnet.CheckpointError
        A file is not a checkpoint of the official architecture (one line naming it).
    """
    folder = Path(dest).expanduser() if dest is not None else default_weights_dir()
    if source is None:
        fetched = find_official_checkpoint(folder) is not None
        source = folder if fetched else _download_with_gdown(folder, quiet)
    loaded = []
    for path in find_checkpoints(source):
        model = _load_official(path)
        count = sum(p.numel() for p in model.parameters())
        kept = _kept_in(path, folder)
        copied = path if kept != path else None
        loaded.append(OfficialWeights(kept, file_digest(kept), count, model, copied))
    return loaded

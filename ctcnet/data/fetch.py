"""Getting files onto this machine and proving they are the right ones.

* :func:`file_digest` / :func:`verify_file`: a chunked sha256 or md5 of a file, and the check
  against an expected digest (a :class:`~ctcnet.errors.ChecksumError` naming the file).
* :func:`download_url`: an HTTP(S) download with a progress bar, resumed from ``DEST.part`` with a
  ``Range`` request after an interruption, verified, then renamed onto ``DEST`` atomically.
* :class:`ArchiveReader`: the members of a zip (wheels too) or tar(.gz) archive, by name.
* :func:`ensure_writable_folder`: fail with one line naming the folder before any work is done.

Dataset preparation (:mod:`ctcnet.data.prepare`), the offline face set
(:mod:`ctcnet.data.offline_faces`) and the authors' weights (:mod:`ctcnet.weights.download`)
all fetch and verify through these functions.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from ..errors import ArchiveError, ChecksumError, DataFolderError, UnavailableError

__all__ = [
    "ArchiveReader",
    "download_url",
    "ensure_writable_folder",
    "file_digest",
    "verify_bytes",
    "verify_file",
]

_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest (``"sha256"`` or ``"md5"``) of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_digest(got: str, expected: str, algorithm: str, what: str, tail: str = "") -> None:
    if got != expected.lower():
        raise ChecksumError(
            f"{algorithm} mismatch for {what}: expected {expected.lower()}, got {got}{tail}"
        )


def verify_file(
    path: str | os.PathLike[str],
    expected: str,
    algorithm: str = "sha256",
    *,
    remove_bad: bool = False,
    what: str | None = None,
) -> Path:
    """Check that ``path`` has the ``expected`` digest; return the path.

    Raises :class:`ChecksumError` naming ``what`` (default: the file) and both digests; with
    ``remove_bad`` the bad file is deleted first, so that the next attempt downloads it again.
    """
    path = Path(path)
    got = file_digest(path, algorithm)
    if remove_bad and got != expected.lower():
        path.unlink(missing_ok=True)
    tail = "; the file was removed, download it again" if remove_bad else ""
    _check_digest(got, expected, algorithm, what or str(path), tail)
    return path


def verify_bytes(data: bytes, expected: str, algorithm: str = "sha256", *, what: str) -> bytes:
    """Check that ``data`` (e.g. an archive member) has the ``expected`` digest; return it."""
    _check_digest(hashlib.new(algorithm, data).hexdigest(), expected, algorithm, what)
    return data


def ensure_writable_folder(folder: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Create ``folder`` if needed and check that files can be written into it.

    Raises :class:`DataFolderError` with one line naming the folder (instead of a bare
    ``[Errno 13] Permission denied`` from deep inside a build).
    """
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DataFolderError(f"{what} {folder} exists and is not a folder") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DataFolderError(f"cannot create {what} {folder}: {reason.lower()}") from None
    if not folder.is_dir():
        raise DataFolderError(f"{what} {folder} exists and is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataFolderError(
            f"cannot write to {what} {folder}: permission denied (choose another folder)"
        )
    return folder


def download_url(
    url: str,
    dest: str | os.PathLike[str],
    digest: str | None = None,
    algorithm: str = "sha256",
    *,
    progress: bool = True,
    timeout: float = 30.0,
    expect_binary: bool = False,
    hint: str = "",
) -> Path:
    """Download ``url`` to ``dest`` resumably, with a progress bar and an optional digest check.

    Bytes go to ``dest + ".part"``; if that file exists the download resumes with an HTTP
    ``Range`` request (and restarts if the server ignores it). When complete and verified the part
    file is renamed atomically to ``dest``. An existing ``dest`` is only re-verified.

    Parameters
    ----------
    url : str
        Source URL.
    dest : str or os.PathLike
        Destination file.
    digest : str, optional
        Expected hex digest of the whole file.
    algorithm : {"sha256", "md5"}, default "sha256"
        Hash of ``digest``.
    progress : bool, default True
        Show a tqdm bar.
    timeout : float, default 30
        Socket timeout in seconds.
    expect_binary : bool, default False
        Treat an HTML answer as a failure (quota and sign-in pages of file hosts).
    hint : str, optional
        What the user can do instead; appended to "cannot download" messages.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    UnavailableError
        If the server is unreachable (offline) or answers with an error or a web page.
    ChecksumError
        If the digest does not match (the bad file is removed).
    """
    dest = Path(dest)
    tail = f"; {hint}" if hint else ""
    if dest.exists():
        if digest:
            verify_file(dest, digest, algorithm, what=f"{dest} (already present; delete it)")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "ctcnet-data/1.0"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        )
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # a range past the end: the part file is already complete
            response = None
        else:
            raise UnavailableError(f"download of {url} failed with HTTP {exc.code}{tail}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        host = urllib.parse.urlsplit(url).netloc or url
        raise UnavailableError(
            f"cannot reach {host} ({reason}): this machine seems to be offline{tail}"
        ) from None
    if response is not None:
        with response:
            if expect_binary and response.headers.get("Content-Type", "").startswith("text/html"):
                raise UnavailableError(
                    f"{url} answered with a web page instead of the file (quota or sign-in){tail}"
                )
            if start and getattr(response, "status", 200) != 206:
                start = 0  # the server ignored the Range header: start again from scratch
            length = response.headers.get("Content-Length")
            total = int(length) + start if length is not None else None
            with (
                open(part, "ab" if start else "wb") as handle,
                tqdm(
                    total=total,
                    initial=start,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=dest.name,
                    disable=not progress,
                ) as bar,
            ):
                for block in iter(lambda: response.read(1 << 16), b""):
                    handle.write(block)
                    bar.update(len(block))
    if digest:
        verify_file(part, digest, algorithm, remove_bad=True, what=f"the download of {url}")
    os.replace(part, dest)
    return dest


class ArchiveReader:
    """Read the members of a zip (also wheels) or tar / tar.gz / tgz archive by name.

    Use as a context manager; :meth:`names` lists the regular files, :meth:`read` returns one
    member's bytes. Errors are :class:`ArchiveError` naming the archive and member.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        try:
            if zipfile.is_zipfile(self.path):
                self._zip = zipfile.ZipFile(self.path)
            else:
                self._tar = tarfile.open(self.path, "r:*")
        except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
            raise ArchiveError(
                f"{self.path} is neither a readable zip nor a tar archive ({exc})"
            ) from None

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def names(self) -> list[str]:
        """Names of the regular-file members, in archive order."""
        if self._zip is not None:
            return [i.filename for i in self._zip.infolist() if not i.is_dir()]
        assert self._tar is not None
        return [m.name for m in self._tar.getmembers() if m.isfile()]

    def read(self, member: str) -> bytes:
        """The bytes of ``member``; :class:`ArchiveError` when it is absent or unreadable."""
        try:
            if self._zip is not None:
                return self._zip.read(member)
            assert self._tar is not None
            handle = self._tar.extractfile(member)
            if handle is None:
                raise KeyError(member)
            return handle.read()
        except KeyError:
            raise ArchiveError(f"member {member} not found in {self.path.name}") from None
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
            raise ArchiveError(f"cannot read member {member} of {self.path.name}: {exc}") from None

    def label(self, member: str) -> str:
        """How messages name a member: ``archive.zip::path/in/archive``."""
        return f"{self.path.name}::{PurePosixPath(member)}"

    def close(self) -> None:
        """Close the underlying archive."""
        for handle in (self._zip, self._tar):
            if handle is not None:
                handle.close()

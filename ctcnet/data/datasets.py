"""Face SR datasets (HR / LR pairs with the reference degradation) and dataset preparation.

:class:`FaceSRDataset` turns a folder (or list) of face images into training/test samples exactly
like the reference pipeline (``CTCNET_SPEC.md`` §8). :func:`prepare_dataset` turns a downloaded
(or manually placed) CelebA, FFHQ-thumbnail or Helen archive into 128×128 PNG crops split into
``train/`` and ``test/``; it is resumable and writes files atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ctcnet.data.degradation import (
    ImageReadError,
    ReferenceAugment,
    degrade,
    load_rgb,
    open_rgb,
    to_tensor,
)

from .._atomic import atomic_write

__all__ = [
    "CELEBA_FACE_BOX",
    "DatasetUnavailableError",
    "FaceSRDataset",
    "IMAGE_EXTENSIONS",
    "celeba_face_crop",
    "dataset_info",
    "download_file",
    "list_images",
    "prepare_dataset",
    "square_resize",
]

#: File extensions treated as images (case-insensitive).
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif"}
)

#: Face box ``(left, top, right, bottom)`` used on CelebA's 178×218 ``img_align_celeba`` images.
#: A 148×148 square, horizontally centred (15 px margins) and spanning rows 40–188. In the aligned
#: images the eyes sit near row 110 and the face is centred near column 89, so the box holds the
#: whole face from above the forehead to below the chin, at a scale comparable to the enlarged
#: face-detector boxes of the reference training crops. The same box is the widely used CelebA
#: face crop of the generative-modelling literature. It is then resized to 128×128 (PIL bicubic).
CELEBA_FACE_BOX = (15, 40, 163, 188)
CELEBA_SIZE = (178, 218)


class DatasetUnavailableError(RuntimeError):
    """A dataset cannot be downloaded (offline, blocked or needs a manual step)."""


class ChecksumError(ValueError):
    """A downloaded file does not have the expected MD5 checksum."""


# --------------------------------------------------------------------------------------------
# Image helpers
# --------------------------------------------------------------------------------------------
def _is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def list_images(root: str | os.PathLike[str]) -> list[Path]:
    """List image files under a folder, recursively, sorted by relative path.

    Parameters
    ----------
    root : str or os.PathLike
        Folder to search.

    Returns
    -------
    list of pathlib.Path
        Files with an extension in :data:`IMAGE_EXTENSIONS` (hidden files skipped).

    Raises
    ------
    FileNotFoundError
        If ``root`` is not an existing folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {str(root)!r}")
    found = [
        p
        for p in root.rglob("*")
        if p.is_file() and _is_image_name(p.name) and not p.name.startswith(".")
    ]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def square_resize(img: Image.Image, size: int) -> Image.Image:
    """Centre-crop the largest square and resize it to ``size`` × ``size`` with PIL bicubic.

    Images that already are ``size`` × ``size`` are returned unchanged (no resampling).

    Parameters
    ----------
    img : PIL.Image.Image
        Input image.
    size : int
        Output side length.

    Returns
    -------
    PIL.Image.Image
        Square image.
    """
    w, h = img.size
    if (w, h) == (size, size):
        return img
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    if side != w or side != h:
        img = img.crop((left, top, left + side, top + side))
    return img.resize((size, size), Image.BICUBIC)


def celeba_face_crop(img: Image.Image, size: int = 128) -> Image.Image:
    """Crop the face of a 178×218 ``img_align_celeba`` image and resize it.

    Crops :data:`CELEBA_FACE_BOX` = (15, 40, 163, 188), a 148×148 square, then resizes it to
    ``size`` × ``size`` with PIL bicubic.

    Parameters
    ----------
    img : PIL.Image.Image
        A 178×218 (W×H) aligned CelebA image.
    size : int, default 128
        Output side length.

    Returns
    -------
    PIL.Image.Image
        Face crop of size ``size`` × ``size``.

    Raises
    ------
    ValueError
        If the image is not 178×218.
    """
    if img.size != CELEBA_SIZE:
        raise ValueError(
            f"celeba_face_crop expects a 178x218 img_align_celeba image, "
            f"got {img.size[0]}x{img.size[1]}"
        )
    return img.crop(CELEBA_FACE_BOX).resize((size, size), Image.BICUBIC)


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------
class FaceSRDataset(Dataset):
    """HR face images paired with their reference ×``scale`` degradation.

    Each item is ``dict(lr=(3, s, s), lr_up=(3, P, P), hr=(3, P, P), name=str)``: float32
    tensors in [-1, 1], ``lr_up`` (bicubic down then up) the network input and ``hr`` the target.
    ``P = hr_size`` for whole faces or the patch side; ``s = P // scale``.

    One item is made in this order: decode (:meth:`load_hr`), augment the HR face, degrade it,
    then crop a patch at offsets that are multiples of ``scale``. Cropping after the degradation
    makes a patch of the input exactly what the model sees at that place of a whole face.

    Images that are not ``hr_size`` × ``hr_size`` are centre-cropped to a square and resized
    with PIL bicubic (:func:`square_resize`); for raw CelebA prepare the crops first.

    Parameters
    ----------
    root_or_files : str, os.PathLike or sequence of them
        A folder (searched recursively for :data:`IMAGE_EXTENSIONS`) or a list of image files.
    hr_size : int, default 128
        HR side length (must be divisible by ``scale``).
    scale : int, default 8
        Super-resolution factor.
    augment : bool or callable, default False
        ``True`` uses :class:`ReferenceAugment` (the authors' flip + random resized crop); a
        callable ``f(img, rng)`` (if it has a true ``seeded`` attribute, like
        :class:`ctcnet.data.augment.FaceAugment`) or ``f(img)`` is applied to the HR PIL image.
    seed : int, optional
        Makes augmentation and cropping reproducible (see *Random streams*).
    patch_size : int, optional
        Crop side (a multiple of ``scale``, at most ``hr_size``); ``None`` = whole faces.
    cache_size : int, default 0
        Keep up to this many decoded HR faces in memory (least recently used first out);
        0 decodes on every access. Each DataLoader worker holds its own cache.

    Notes
    -----
    *Random streams.* The index may be an int ``i`` or a training draw ``(i, step, slot)`` or
    ``(i, step, slot, patch)``. An int uses ``random.Random(f"{seed}-{epoch}-{i}")`` (epoch from
    :meth:`set_epoch`); a draw uses ``random.Random(f"{seed}-{step}-{slot}")`` and, if given,
    crops ``patch`` instead of ``patch_size``. Either way an item is a pure function of the
    seed and its key, whatever the worker or the order, which is what makes a resumed training
    run see the same samples as an uninterrupted one. Without a seed, one shared stream is used.

    ``name`` is the path relative to the folder (POSIX separators) or, for a file list, the file
    name. A corrupt file raises :class:`ImageReadError` naming it when accessed; call
    :meth:`validate` to find all bad files upfront.
    """

    def __init__(
        self,
        root_or_files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        hr_size: int = 128,
        scale: int = 8,
        augment: bool | Callable[..., Image.Image] = False,
        seed: int | None = None,
        patch_size: int | None = None,
        cache_size: int = 0,
    ) -> None:
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        if not isinstance(hr_size, int) or hr_size < scale or hr_size % scale:
            raise ValueError(f"hr_size {hr_size!r} must be a positive multiple of scale {scale}")
        if patch_size is not None:
            self._check_patch(patch_size, hr_size, scale)
        self.hr_size = hr_size
        self.scale = scale
        self.seed = seed
        self.patch_size = patch_size
        self.cache_size = int(cache_size)
        self.epoch = 0
        self._rng = random.Random(seed)
        self._cache: dict[int, Image.Image] = {}  # insertion order = least recently used first
        if isinstance(root_or_files, (str, os.PathLike)):
            root = Path(root_or_files)
            if not root.exists():
                raise FileNotFoundError(f"dataset folder not found: {str(root)!r}")
            if not root.is_dir():
                raise ValueError(
                    f"expected a folder or a list of files, got the file {str(root)!r}"
                )
            self.root: Path | None = root
            self.files = list_images(root)
            if not self.files:
                exts = ", ".join(sorted(IMAGE_EXTENSIONS))
                raise ValueError(f"no images ({exts}) found in folder {str(root)!r}")
            self.names = [p.relative_to(root).as_posix() for p in self.files]
        else:
            self.root = None
            self.files = [Path(f) for f in root_or_files]
            if not self.files:
                raise ValueError("FaceSRDataset got an empty list of files")
            self.names = [p.name for p in self.files]
        if augment is True:
            self.augment: Callable[..., Image.Image] | None = ReferenceAugment(hr_size)
        elif augment is False or augment is None:
            self.augment = None
        elif callable(augment):
            self.augment = augment
        else:
            raise ValueError(f"augment must be True, False or a callable, got {augment!r}")

    @staticmethod
    def _check_patch(patch: int, hr_size: int, scale: int) -> None:
        if isinstance(patch, bool) or not isinstance(patch, int) or patch < scale:
            raise ValueError(f"patch size must be a positive multiple of {scale}, got {patch!r}")
        if patch % scale or patch > hr_size:
            raise ValueError(
                f"patch size {patch} must be a multiple of {scale} and at most hr_size {hr_size}"
            )

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch used to derive per-item random streams (when ``seed`` is set)."""
        self.epoch = int(epoch)

    def load_hr(self, index: int) -> Image.Image:
        """Item ``index`` as an ``hr_size`` × ``hr_size`` RGB image (no augmentation)."""
        if self.cache_size <= 0:
            return square_resize(load_rgb(self.files[index]), self.hr_size)
        img = self._cache.pop(index, None)
        if img is None:
            img = square_resize(load_rgb(self.files[index]), self.hr_size)
            if len(self._cache) >= self.cache_size:
                del self._cache[next(iter(self._cache))]
        self._cache[index] = img
        return img

    def _resolve(self, key: int | Sequence[int]) -> tuple[int, random.Random, int]:
        """(index, random stream, patch side) of an int index or a training draw."""
        if isinstance(key, (tuple, list)):
            if len(key) not in (3, 4):
                raise IndexError(f"a training draw is (index, step, slot[, patch]), got {key!r}")
            index, step, slot = (int(v) for v in key[:3])
            rng = self._rng if self.seed is None else random.Random(f"{self.seed}-{step}-{slot}")
            patch = int(key[3]) if len(key) == 4 else (self.patch_size or self.hr_size)
            self._check_patch(patch, self.hr_size, self.scale)
        else:
            index = int(key)
            epoch = self.epoch
            rng = self._rng if self.seed is None else random.Random(f"{self.seed}-{epoch}-{index}")
            patch = self.patch_size or self.hr_size
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        return index % len(self), rng, patch

    def __getitem__(self, key: int | Sequence[int]) -> dict[str, Any]:
        index, rng, patch = self._resolve(key)
        hr = self.load_hr(index)
        if self.augment is not None:
            seeded = isinstance(self.augment, ReferenceAugment) or getattr(
                self.augment, "seeded", False
            )
            hr = self.augment(hr, rng) if seeded else self.augment(hr)
            if hr.size != (self.hr_size, self.hr_size):
                raise ValueError(
                    f"augmentation returned a {hr.size[0]}x{hr.size[1]} image, "
                    f"expected {self.hr_size}x{self.hr_size}"
                )
        lr, lr_up = degrade(hr, self.scale)
        item = {"lr": to_tensor(lr), "lr_up": to_tensor(lr_up), "hr": to_tensor(hr)}
        if patch < self.hr_size:
            # top first, then left: the order of the draws is part of the exact-resume contract
            s, room = self.scale, (self.hr_size - patch) // self.scale + 1
            top, left = rng.randrange(0, room) * s, rng.randrange(0, room) * s
            for k in ("lr_up", "hr"):
                item[k] = item[k][:, top : top + patch, left : left + patch]
            rows, cols = slice(top // s, (top + patch) // s), slice(left // s, (left + patch) // s)
            item["lr"] = item["lr"][:, rows, cols]
        item["name"] = self.names[index]
        return item

    def validate(self, progress: bool = False) -> list[tuple[str, str]]:
        """Try to decode every file and list the bad ones.

        Parameters
        ----------
        progress : bool, default False
            Show a tqdm progress bar.

        Returns
        -------
        list of (str, str)
            ``(path, reason)`` for each unreadable file; empty when all are fine.
        """
        bad = []
        for path in tqdm(self.files, desc="validate", disable=not progress):
            try:
                load_rgb(path)
            except ImageReadError as exc:
                bad.append((str(path), str(exc)))
        return bad


# --------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------
_OFFLINE_HINT = (
    "download it manually to {dest} (or pass --source DIR/ZIP), or use "
    "`ctcnet data offline-faces` for the small offline face set"
)


def _md5(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    md5: str | None = None,
    *,
    progress: bool = True,
    timeout: float = 30.0,
    expect_binary: bool = False,
) -> Path:
    """Download ``url`` to ``dest`` resumably, with a progress bar and an optional MD5 check.

    Bytes go to ``dest + ".part"``; if that file exists the download resumes with an HTTP
    ``Range`` request (and restarts if the server ignores it). When complete (and verified) the
    part file is renamed atomically to ``dest``. An existing ``dest`` is only re-verified.

    Parameters
    ----------
    url : str
        Source URL.
    dest : str or os.PathLike
        Destination file.
    md5 : str, optional
        Expected MD5 hex digest.
    progress : bool, default True
        Show a tqdm bar.
    timeout : float, default 30
        Socket timeout in seconds.
    expect_binary : bool, default False
        Treat an HTML answer as a failure (Google Drive confirmation pages).

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    DatasetUnavailableError
        If the server is unreachable (offline) or answers with an error or an HTML page.
    ChecksumError
        If the MD5 does not match (the bad file is removed).
    """
    dest = Path(dest)
    if dest.exists():
        if md5 and _md5(dest) != md5:
            raise ChecksumError(f"{dest} exists but its MD5 is not {md5}; delete it and retry")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "ctcnet-data/1.0"}
    if start:
        headers["Range"] = f"bytes={start}-"
    hint = _OFFLINE_HINT.format(dest=dest)
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # range beyond the end: the part file is complete
            resp = None
        else:
            raise DatasetUnavailableError(
                f"download of {url} failed with HTTP {exc.code}; {hint}"
            ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        host = urllib.parse.urlsplit(url).netloc or url
        raise DatasetUnavailableError(
            f"cannot reach {host} ({reason}): this machine seems to be offline; {hint}"
        ) from None
    if resp is not None:
        with resp:
            ctype = resp.headers.get("Content-Type", "")
            if expect_binary and ctype.startswith("text/html"):
                raise DatasetUnavailableError(
                    f"{url} answered with a web page instead of the file (Google Drive quota or "
                    f"confirmation); {hint}"
                )
            if start and getattr(resp, "status", 200) != 206:
                start = 0  # server ignored the Range header: restart from scratch
            length = resp.headers.get("Content-Length")
            total = int(length) + start if length is not None else None
            mode = "ab" if start else "wb"
            with (
                open(part, mode) as f,
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
                while True:
                    block = resp.read(1 << 16)
                    if not block:
                        break
                    f.write(block)
                    bar.update(len(block))
    if md5 and _md5(part) != md5:
        part.unlink()
        raise ChecksumError(f"MD5 mismatch for {url}: the download was corrupt, retry")
    os.replace(part, dest)
    return dest


def _gdrive_url(file_id: str) -> str:
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


# --------------------------------------------------------------------------------------------
# Dataset descriptions
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Remote:
    filename: str
    url: str
    md5: str | None = None


@dataclass(frozen=True)
class _DatasetInfo:
    remotes: tuple[_Remote, ...]
    manual: str
    split_rule: str
    crop_rule: str
    default_n_train: int | None
    default_n_test: int | None
    extra: dict[str, Any] = field(default_factory=dict)


_DATASETS: dict[str, _DatasetInfo] = {
    "celeba": _DatasetInfo(
        remotes=(
            # Google Drive IDs and MD5s of the official CelebA files (as used by torchvision).
            _Remote(
                "img_align_celeba.zip",
                _gdrive_url("0B7EVK8r0v71pZjFTYXZWM3FlRnM"),
                "00d2c5bc6d35e252742224ab0c1e8fcb",
            ),
            _Remote(
                "list_eval_partition.txt",
                _gdrive_url("0B7EVK8r0v71pY0NSMzRuSXJEVkk"),
                "d32c9cbf5e040fd4025c592c306e6668",
            ),
        ),
        manual=(
            "CelebA is hosted on Google Drive (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html):"
            " download img_align_celeba.zip (and Eval/list_eval_partition.txt) by hand"
        ),
        split_rule=(
            "official list_eval_partition.txt if present (0 = train, 2 = test), else sorted file "
            "names: the first n_train for train and the next n_test for test; both capped at "
            "n_train / n_test (default 18,000 / 1,000, the reference's counts)"
        ),
        crop_rule="celeba_face_crop: box (15, 40, 163, 188) of the 178x218 image, bicubic to 128",
        default_n_train=18000,
        default_n_test=1000,
    ),
    "ffhq-thumbnails": _DatasetInfo(
        remotes=(),
        manual=(
            "FFHQ thumbnails128x128 are in a Google Drive folder linked from "
            "https://github.com/NVlabs/ffhq-dataset: download thumbnails128x128.zip (or the "
            "folder) by hand"
        ),
        split_rule=(
            "sorted file names: the last n_test (default 1,000: 69000-69999) for test, the "
            "first n_train of the rest (default all 69,000) for train"
        ),
        crop_rule="none (already 128x128); other sizes: centre square crop, bicubic to 128",
        default_n_train=None,
        default_n_test=1000,
    ),
    "helen": _DatasetInfo(
        remotes=tuple(
            _Remote(
                f"helen_{i}.zip", f"http://www.ifp.illinois.edu/~vuongle2/helen/data/helen_{i}.zip"
            )
            for i in range(1, 6)
        ),
        manual=(
            "Helen is published at http://www.ifp.illinois.edu/~vuongle2/helen/ as helen_1.zip "
            "... helen_5.zip"
        ),
        split_rule=(
            "images whose path contains a 'helen_5' folder or come from helen_5.zip (the official "
            "test part) are test, all others train"
        ),
        crop_rule=(
            "centre square crop, bicubic to 128 (approximate: not the landmark-based crop of DIC's "
            "Helen test set)"
        ),
        default_n_train=None,
        default_n_test=None,
    ),
}


# --------------------------------------------------------------------------------------------
# Preparation
# --------------------------------------------------------------------------------------------
@dataclass
class _Entry:
    key: str  # relative path or "archive.zip::member"
    stem: str
    opener: Callable[[], Image.Image]


def _zip_entries(zpath: Path) -> tuple[list[_Entry], dict[str, bytes]]:
    """Image members of a zip (sorted) and its small text members (e.g. partition files)."""
    entries: list[_Entry] = []
    texts: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(zpath) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            for info in infos:
                base = PurePosixPath(info.filename).name
                if base.endswith(".txt") and info.file_size < 50_000_000:
                    texts[base] = zf.read(info)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"cannot read zip archive {str(zpath)!r}: {exc}") from None

    def make_opener(member: str) -> Callable[[], Image.Image]:
        def opener() -> Image.Image:
            with zipfile.ZipFile(zpath) as zf:
                data = zf.read(member)
            return open_rgb(io.BytesIO(data), label=f"{zpath.name}::{member}")

        return opener

    for info in infos:
        name = info.filename
        if _is_image_name(name) and not PurePosixPath(name).name.startswith("."):
            entries.append(
                _Entry(f"{zpath.name}::{name}", PurePosixPath(name).stem, make_opener(name))
            )
    entries.sort(key=lambda e: e.key)
    return entries, texts


def _source_entries(source: Path) -> tuple[list[_Entry], dict[str, bytes]]:
    if source.is_dir():
        entries = [
            _Entry(p.relative_to(source).as_posix(), p.stem, lambda p=p: load_rgb(p))
            for p in list_images(source)
        ]
        texts = {}
        for p in source.rglob("*.txt"):
            if p.stat().st_size < 50_000_000:
                texts.setdefault(p.name, p.read_bytes())
        # zips inside the folder (e.g. the downloaded helen_*.zip)
        for z in sorted(source.glob("*.zip")):
            z_entries, z_texts = _zip_entries(z)
            entries.extend(z_entries)
            for k, v in z_texts.items():
                texts.setdefault(k, v)
        return entries, texts
    if source.is_file() and source.suffix.lower() == ".zip":
        return _zip_entries(source)
    if not source.exists():
        raise FileNotFoundError(f"dataset source not found: {str(source)!r}")
    raise ValueError(f"dataset source must be a folder or a .zip file, got {str(source)!r}")


def _parse_partition(data: bytes) -> dict[str, int]:
    part: dict[str, int] = {}
    for line_no, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit():
            raise ValueError(f"list_eval_partition.txt line {line_no} is malformed: {line!r}")
        part[PurePosixPath(fields[0]).stem] = int(fields[1])
    return part


def _cap(items: list[_Entry], n: int | None) -> list[_Entry]:
    return items if n is None else items[:n]


def _split(
    name: str,
    entries: list[_Entry],
    texts: dict[str, bytes],
    n_train: int | None,
    n_test: int | None,
) -> tuple[list[_Entry], list[_Entry], str]:
    if name == "celeba":
        if "list_eval_partition.txt" in texts:
            part = _parse_partition(texts["list_eval_partition.txt"])
            train = [e for e in entries if part.get(e.stem) == 0]
            test = [e for e in entries if part.get(e.stem) == 2]
            return _cap(train, n_train), _cap(test, n_test), "official partition"
        train = _cap(entries, n_train)
        rest = entries[len(train) :]
        return train, _cap(rest, n_test), "sorted names"
    if name == "ffhq-thumbnails":
        k = len(entries) if n_test is None else min(n_test, len(entries))
        test = entries[len(entries) - k :]
        train = _cap(entries[: len(entries) - k], n_train)
        return train, test, "sorted names, last n_test for test"

    # helen
    def is_test(e: _Entry) -> bool:
        return "helen_5" in e.key.replace("::", "/").replace(".zip", "").split("/")

    train = _cap([e for e in entries if not is_test(e)], n_train)
    test = _cap([e for e in entries if is_test(e)], n_test)
    return train, test, "helen_5 is test"


def _crop_fn(name: str, size: int) -> Callable[[Image.Image], Image.Image]:
    if name == "celeba":

        def crop(img: Image.Image) -> Image.Image:
            return celeba_face_crop(img, size)

        return crop
    return lambda img: square_resize(img, size)


def _atomic_save_png(img: Image.Image, dest: Path) -> None:
    with atomic_write(dest) as f:
        img.save(f, format="PNG")


def _iter_unique(entries: list[_Entry], split: str) -> Iterator[_Entry]:
    seen: dict[str, str] = {}
    for e in entries:
        if e.stem in seen:
            raise ValueError(
                f"two {split} images map to the same output name {e.stem}.png: "
                f"{seen[e.stem]!r} and {e.key!r}"
            )
        seen[e.stem] = e.key
        yield e


def prepare_dataset(
    name: str,
    root: str | os.PathLike[str],
    source: str | os.PathLike[str] | None = None,
    *,
    n_train: int | None | str = "default",
    n_test: int | None | str = "default",
    size: int = 128,
    download: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Create ``root/<name>/{train,test}/*.png`` face crops from a dataset archive or folder.

    Parameters
    ----------
    name : {"celeba", "ffhq-thumbnails", "helen"}
        Dataset. Crop and split rules (also written to ``manifest.json``):

        * ``celeba``: :func:`celeba_face_crop`; split by the official ``list_eval_partition.txt``
          when it is found in the source (0 = train, 2 = test), else by sorted file name
          (first ``n_train`` → train, next ``n_test`` → test); defaults 18,000 / 1,000.
        * ``ffhq-thumbnails``: 128×128 thumbnails kept as they are; the last ``n_test``
          (default 1,000) sorted names are the test set, the rest train.
        * ``helen``: centre square crop + bicubic resize (approximate); images from
          ``helen_5`` are test, the rest train.
    root : str or os.PathLike
        Output root; downloads go to ``root/<name>/downloads``.
    source : str or os.PathLike, optional
        A manually downloaded folder or ``.zip``. Without it the files in ``downloads`` are used,
        and downloaded first when ``download`` is True.
    n_train, n_test : int or None, optional
        Maximum numbers of train / test images (``None`` = all; default: per dataset, above).
    size : int, default 128
        Output side length.
    download : bool, default True
        Try to download missing archives (Helen: official URLs; CelebA: best-effort Google
        Drive). FFHQ always needs a manual download.
    progress : bool, default True
        Show tqdm progress bars.

    Returns
    -------
    dict
        Summary: counts written / skipped (already present) / failed per split, the rules used
        and the list of unreadable inputs.

    Raises
    ------
    ValueError
        Unknown dataset, or a source without images.
    DatasetUnavailableError
        If nothing can be downloaded (offline, Google Drive) and no source is given.

    Notes
    -----
    Resumable: existing output PNGs are skipped, every PNG is written to a hidden temporary
    file and renamed atomically, and downloads resume from their ``.part`` files.
    Unreadable inputs are skipped with a warning and listed in the summary.
    """
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(_DATASETS)}")
    info = _DATASETS[name]
    n_train = info.default_n_train if n_train == "default" else n_train
    n_test = info.default_n_test if n_test == "default" else n_test
    for label, n in (("n_train", n_train), ("n_test", n_test)):
        if n is not None and (not isinstance(n, int) or n < 0):
            raise ValueError(f"{label} must be a non-negative integer or None, got {n!r}")
    out = Path(root) / name
    downloads = out / "downloads"

    if source is not None:
        src = Path(source)
    else:
        src = downloads
        missing = [r for r in info.remotes if not (downloads / r.filename).exists()]
        have_any = downloads.is_dir() and any(downloads.iterdir())
        if not info.remotes and not have_any:
            raise DatasetUnavailableError(
                f"{name} cannot be downloaded automatically. {info.manual} and run "
                f"prepare with --source FILE_OR_DIR (or put it in {downloads}); or use "
                "`ctcnet data offline-faces`"
            )
        if missing and download:
            for remote in missing:
                try:
                    download_file(
                        remote.url,
                        downloads / remote.filename,
                        remote.md5,
                        progress=progress,
                        expect_binary=True,
                    )
                except DatasetUnavailableError as exc:
                    raise DatasetUnavailableError(f"{exc}. {info.manual}") from None
        elif missing and not have_any:
            raise DatasetUnavailableError(
                f"{name} is not downloaded and download=False. {info.manual} into {downloads}"
            )

    entries, texts = _source_entries(src)
    if not entries:
        raise ValueError(f"no images found in dataset source {str(src)!r}")
    train, test, split_used = _split(name, entries, texts, n_train, n_test)
    crop = _crop_fn(name, size)

    summary: dict[str, Any] = {
        "dataset": name,
        "source": str(src),
        "split_rule": info.split_rule,
        "split_used": split_used,
        "crop_rule": info.crop_rule,
        "size": size,
        "failed_inputs": [],
    }
    for split, items in (("train", train), ("test", test)):
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        written = skipped = failed = 0
        for e in tqdm(
            list(_iter_unique(items, split)), desc=f"{name} {split}", disable=not progress
        ):
            dest = folder / f"{e.stem}.png"
            if dest.exists():
                skipped += 1
                continue
            try:
                img = crop(e.opener())
            except (ImageReadError, ValueError) as exc:
                failed += 1
                summary["failed_inputs"].append(f"{e.key}: {exc}")
                warnings.warn(f"skipping {e.key}: {exc}", stacklevel=2)
                continue
            _atomic_save_png(img, dest)
            written += 1
        summary[split] = {
            "written": written,
            "skipped": skipped,
            "failed": failed,
            "total": len(items),
        }
    manifest = {k: v for k, v in summary.items() if k != "failed_inputs"}
    manifest["n_failed_inputs"] = len(summary["failed_inputs"])
    with atomic_write(out / "manifest.json", "w") as f:
        f.write(json.dumps(manifest, indent=2))
    return summary


def dataset_info(name: str) -> dict[str, Any]:
    """Describe a preparable dataset (download URLs, manual steps, crop and split rules).

    Parameters
    ----------
    name : str
        One of ``"celeba"``, ``"ffhq-thumbnails"``, ``"helen"``.

    Returns
    -------
    dict
        Plain description.
    """
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(_DATASETS)}")
    info = _DATASETS[name]
    return {
        "urls": {r.filename: r.url for r in info.remotes},
        "md5": {r.filename: r.md5 for r in info.remotes if r.md5},
        "manual": info.manual,
        "split_rule": info.split_rule,
        "crop_rule": info.crop_rule,
    }

"""Turn a downloaded face dataset into the 128×128 PNG crops the model trains and tests on.

:func:`prepare_dataset` reads CelebA, FFHQ thumbnails or Helen from a folder or an archive and
writes ``ROOT/<name>/{train,test}/<stem>.png`` plus a ``manifest.json`` with the rules it used. It
resumes (finished PNGs are kept), writes every file atomically and skips unreadable inputs with a
warning, listing them in its summary.

CelebA is read from any of the layouts people actually have:

* the official ``img_align_celeba.zip`` or its unpacked ``img_align_celeba/`` folder, with
  ``list_eval_partition.txt`` (``000001.jpg 0``) next to it or inside the archive;
* the Kaggle copy ``jessicali9530/celeba-dataset`` (``img_align_celeba/img_align_celeba/*.jpg``
  and ``list_eval_partition.csv`` with an ``image_id,partition`` header), as a folder or as the
  zip Kaggle serves.

Without ``source``, CelebA comes from Kaggle through ``kagglehub`` (pre-installed on Colab; public
datasets need no Kaggle account), not from the Google-Drive copies whose daily quota made
``torchvision.datasets.CelebA(download=True)`` fail for years. On Colab::

    !pip install "ctcnet[colab]"   # or: pip install kagglehub
    !ctcnet data prepare celeba --root /content/data

Each aligned 178×218 CelebA image is cut to its face with :func:`celeba_face_crop`.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from .._atomic import atomic_write
from ..errors import (
    DataError,
    DatasetUnavailableError,
    DataSourceError,
    UnavailableError,
    UsageError,
    one_line,
)
from .fetch import ArchiveReader, download_url, ensure_writable_folder
from .imageio import (
    crop_square,
    decode_image,
    is_image_name,
    list_images,
    load_rgb,
    save_png,
    square_resize,
)

__all__ = [
    "CELEBA_FACE_BOX",
    "CELEBA_KAGGLE_HANDLE",
    "celeba_face_crop",
    "dataset_info",
    "prepare_dataset",
]

#: Face box ``(left, top, right, bottom)`` used on CelebA's 178×218 ``img_align_celeba`` images.
#: A 148×148 square, horizontally centred (15 px margins) and spanning rows 40–188. In the aligned
#: images the eyes sit near row 110 and the face is centred near column 89, so the box holds the
#: whole face from above the forehead to below the chin. The reference's training crops were cut
#: without pre-alignment and are not distributed, so this box can only approximate them. The same
#: box is the widely used CelebA face crop of the generative-modelling literature. It is then resized to 128×128 (PIL bicubic).
CELEBA_FACE_BOX = (15, 40, 163, 188)
CELEBA_SIZE = (178, 218)

#: The Kaggle copy of CelebA that :func:`prepare_dataset` downloads with ``kagglehub``.
CELEBA_KAGGLE_HANDLE = "jessicali9530/celeba-dataset"

_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
_PARTITION_NAMES = ("list_eval_partition.txt", "list_eval_partition.csv")


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
    left, top, right, _ = CELEBA_FACE_BOX
    return crop_square(img, (left, top, right - left), size)


# --------------------------------------------------------------------------------------------
# What each dataset is and where it comes from
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _DatasetInfo:
    urls: tuple[tuple[str, str], ...]  # (file name, URL) fetched with download_url
    manual: str
    split_rule: str
    crop_rule: str
    default_n_train: int | None
    default_n_test: int | None


_DATASETS: dict[str, _DatasetInfo] = {
    "celeba": _DatasetInfo(
        urls=(),
        manual=(
            f"download CelebA from Kaggle (https://www.kaggle.com/datasets/{CELEBA_KAGGLE_HANDLE};"
            " `pip install kagglehub` lets this command do it) or img_align_celeba.zip and "
            "list_eval_partition.txt from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, "
            "and pass the folder or zip with --source"
        ),
        split_rule=(
            "official list_eval_partition (.txt or Kaggle's .csv) if present (0 = train, "
            "2 = test), else sorted file names: the first n_train for train and the next n_test "
            "for test; both capped at n_train / n_test (default 18,000 / 1,000, the reference's "
            "counts)"
        ),
        crop_rule="celeba_face_crop: box (15, 40, 163, 188) of the 178x218 image, bicubic to 128",
        default_n_train=18000,
        default_n_test=1000,
    ),
    "ffhq-thumbnails": _DatasetInfo(
        urls=(),
        manual=(
            "FFHQ thumbnails128x128 are in a Google Drive folder linked from "
            "https://github.com/NVlabs/ffhq-dataset: download thumbnails128x128.zip (or the "
            "folder) by hand and pass it with --source"
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
        urls=tuple(
            (f"helen_{i}.zip", f"http://www.ifp.illinois.edu/~vuongle2/helen/data/helen_{i}.zip")
            for i in range(1, 6)
        ),
        manual=(
            "Helen is published at http://www.ifp.illinois.edu/~vuongle2/helen/ as helen_1.zip "
            "... helen_5.zip; download them by hand and pass their folder with --source"
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


def dataset_info(name: str) -> dict[str, Any]:
    """Describe a preparable dataset (download URLs, manual steps, crop and split rules).

    Parameters
    ----------
    name : str
        One of ``"celeba"``, ``"ffhq-thumbnails"``, ``"helen"``.

    Returns
    -------
    dict
        Plain description: ``urls``, ``kaggle`` (CelebA's handle), ``manual``, ``split_rule``,
        ``crop_rule``.
    """
    info = _info(name)
    return {
        "urls": dict(info.urls),
        "kaggle": CELEBA_KAGGLE_HANDLE if name == "celeba" else None,
        "manual": info.manual,
        "split_rule": info.split_rule,
        "crop_rule": info.crop_rule,
    }


def _info(name: str) -> _DatasetInfo:
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(_DATASETS)}")
    return _DATASETS[name]


# --------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------
def _download_from_kaggle(handle: str) -> Path:
    """Download (or find in kagglehub's cache) a public Kaggle dataset; return its folder."""
    try:
        import kagglehub  # deferred: optional (Colab has it), needed only to download CelebA
    except ImportError:
        raise DatasetUnavailableError(
            "CelebA downloads need kagglehub: `pip install kagglehub` (Colab has it) and run "
            f"again, or download https://www.kaggle.com/datasets/{handle} yourself and pass it "
            "with --source"
        ) from None
    try:
        return Path(kagglehub.dataset_download(handle))
    except Exception as exc:  # kagglehub raises requests/HTTP/its own errors: all mean "not here"
        raise DatasetUnavailableError(
            f"cannot download {handle} from Kaggle ({one_line(exc)}); download it by hand and pass it "
            "with --source, or use `ctcnet data offline-faces` for the small offline face set"
        ) from None


def _fetch(name: str, downloads: Path, progress: bool) -> Path:
    """Download ``name`` and return the folder or archive to read it from."""
    info = _DATASETS[name]
    if name == "celeba":
        return _download_from_kaggle(CELEBA_KAGGLE_HANDLE)
    if not info.urls:
        raise DatasetUnavailableError(
            f"{name} cannot be downloaded automatically: {info.manual} (or put it in "
            f"{downloads}); or use `ctcnet data offline-faces`"
        )
    hint = f"{info.manual}; or use `ctcnet data offline-faces` for the small offline face set"
    ensure_writable_folder(downloads, f"{name} download folder")
    for filename, url in info.urls:
        try:
            download_url(url, downloads / filename, progress=progress, expect_binary=True, hint=hint)
        except UnavailableError as exc:
            raise DatasetUnavailableError(str(exc)) from None
    return downloads


# --------------------------------------------------------------------------------------------
# Reading a source: images and the partition file, from folders and archives
# --------------------------------------------------------------------------------------------
@dataclass
class _Entry:
    key: str  # relative path, or "archive.zip::member"
    stem: str
    load: Callable[[], Image.Image]


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(_ARCHIVE_SUFFIXES)


def _archive_entries(
    path: Path, stack: contextlib.ExitStack
) -> tuple[list[_Entry], bytes | None]:
    reader = stack.enter_context(ArchiveReader(path))
    entries, partition = [], None
    for member in reader.names():
        base = PurePosixPath(member).name
        if is_image_name(member):
            entries.append(
                _Entry(
                    reader.label(member),
                    PurePosixPath(member).stem,
                    lambda m=member: decode_image(reader.read(m), reader.label(m)),
                )
            )
        elif base in _PARTITION_NAMES and partition is None:
            partition = reader.read(member)
    return entries, partition


def _source_entries(
    source: Path, stack: contextlib.ExitStack
) -> tuple[list[_Entry], bytes | None]:
    """Every image in ``source`` (a folder, possibly holding archives, or an archive) and the
    bytes of the first ``list_eval_partition`` file found, if any."""
    if source.is_file() and _is_archive(source):
        entries, partition = _archive_entries(source, stack)
    elif source.is_dir():
        entries = [
            _Entry(p.relative_to(source).as_posix(), p.stem, lambda p=p: load_rgb(p))
            for p in list_images(source)
        ]
        partition = None
        for part_name in _PARTITION_NAMES:
            found = sorted(source.rglob(part_name))
            if found:
                partition = found[0].read_bytes()
                break
        for archive in sorted(p for p in source.iterdir() if p.is_file() and _is_archive(p)):
            more, archive_partition = _archive_entries(archive, stack)
            entries.extend(more)
            partition = partition if partition is not None else archive_partition
    elif not source.exists():
        raise FileNotFoundError(f"dataset source not found: {str(source)!r}")
    else:
        raise DataSourceError(
            f"dataset source must be a folder or a .zip/.tar(.gz) archive, got {str(source)!r}"
        )
    entries.sort(key=lambda e: e.key)
    return entries, partition


def _parse_partition(data: bytes) -> dict[str, int]:
    """``{stem: partition}`` from ``list_eval_partition.txt`` (``000001.jpg 0``) or Kaggle's
    ``list_eval_partition.csv`` (``image_id,partition`` header, then ``000001.jpg,0``)."""
    partition: dict[str, int] = {}
    for line_no, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        if line_no == 1 and len(fields) == 2 and not fields[1].isdigit():
            continue  # the csv header
        if len(fields) != 2 or not fields[1].isdigit():
            raise DataSourceError(f"list_eval_partition line {line_no} is malformed: {line!r}")
        partition[PurePosixPath(fields[0]).stem] = int(fields[1])
    return partition


def _cap(items: list[_Entry], n: int | None) -> list[_Entry]:
    return items if n is None else items[:n]


def _split(
    name: str,
    entries: list[_Entry],
    partition: bytes | None,
    n_train: int | None,
    n_test: int | None,
) -> tuple[list[_Entry], list[_Entry], str]:
    if name == "celeba":
        if partition is not None:
            part = _parse_partition(partition)
            train = [e for e in entries if part.get(e.stem) == 0]
            test = [e for e in entries if part.get(e.stem) == 2]
            return _cap(train, n_train), _cap(test, n_test), "official partition"
        train = _cap(entries, n_train)
        return train, _cap(entries[len(train) :], n_test), "sorted names"
    if name == "ffhq-thumbnails":
        k = len(entries) if n_test is None else min(n_test, len(entries))
        test = entries[len(entries) - k :]
        return _cap(entries[: len(entries) - k], n_train), test, "sorted names, last n_test for test"

    def is_test(e: _Entry) -> bool:  # helen
        return "helen_5" in e.key.replace("::", "/").replace(".zip", "").split("/")

    train = _cap([e for e in entries if not is_test(e)], n_train)
    return train, _cap([e for e in entries if is_test(e)], n_test), "helen_5 is test"


def _unique(entries: list[_Entry], split: str) -> Iterator[_Entry]:
    seen: dict[str, str] = {}
    for e in entries:
        if e.stem in seen:
            raise DataSourceError(
                f"two {split} images map to the same output name {e.stem}.png: "
                f"{seen[e.stem]!r} and {e.key!r}"
            )
        seen[e.stem] = e.key
        yield e


# --------------------------------------------------------------------------------------------
# Preparation
# --------------------------------------------------------------------------------------------
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

        * ``celeba``: :func:`celeba_face_crop`; split by the official ``list_eval_partition``
          (``.txt``, or Kaggle's ``.csv``) when it is found in the source (0 = train,
          2 = test), else by sorted file name (first ``n_train`` → train, next ``n_test`` →
          test); defaults 18,000 / 1,000.
        * ``ffhq-thumbnails``: 128×128 thumbnails kept as they are; the last ``n_test``
          (default 1,000) sorted names are the test set, the rest train.
        * ``helen``: centre square crop + bicubic resize (approximate); images from
          ``helen_5`` are test, the rest train.
    root : str or os.PathLike
        Output root; downloads go to ``root/<name>/downloads`` (CelebA: kagglehub's cache).
    source : str or os.PathLike, optional
        A downloaded folder or ``.zip`` / ``.tar(.gz)``. Without it, the files in
        ``root/<name>/downloads`` are used if there are any, else the dataset is downloaded
        (when ``download`` is True).
    n_train, n_test : int or None, optional
        Maximum numbers of train / test images (``None`` = all; default: per dataset, above).
    size : int, default 128
        Output side length.
    download : bool, default True
        Download when no source is given: CelebA from Kaggle with ``kagglehub``, Helen from its
        official URLs. FFHQ always needs a manual download.
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
        Unknown dataset or a negative count (:class:`~ctcnet.errors.UsageError`); a source
        without images, or not the dataset named (:class:`~ctcnet.errors.DataSourceError`).
    DatasetUnavailableError
        If the dataset cannot be downloaded here and no source is given (one line saying what to
        do instead).
    DataFolderError
        If ``root`` cannot be written.

    Notes
    -----
    Resumable: existing output PNGs are skipped, every PNG is written to a hidden temporary
    file and renamed atomically, and Helen's downloads resume from their ``.part`` files.
    Unreadable inputs are skipped with a warning and listed in the summary.
    """
    info = _info(name)
    n_train = info.default_n_train if n_train == "default" else n_train
    n_test = info.default_n_test if n_test == "default" else n_test
    for label, n in (("n_train", n_train), ("n_test", n_test)):
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise UsageError(f"{label} must be a non-negative integer or None, got {n!r}")
    out = Path(root) / name
    downloads = out / "downloads"
    if source is not None:
        src = Path(source)
        if not src.exists():
            raise FileNotFoundError(f"dataset source not found: {str(src)!r}")
    elif downloads.is_dir() and any(downloads.iterdir()):
        src = downloads
    elif download:
        src = _fetch(name, downloads, progress)
    else:
        raise DatasetUnavailableError(
            f"{name} is not in {downloads} and downloading is off: {info.manual}"
        )
    ensure_writable_folder(out, f"{name} output folder")

    summary: dict[str, Any] = {
        "dataset": name,
        "source": str(src),
        "split_rule": info.split_rule,
        "crop_rule": info.crop_rule,
        "size": size,
        "failed_inputs": [],
    }
    if name == "celeba":
        crop: Callable[[Image.Image], Image.Image] = lambda img: celeba_face_crop(img, size)  # noqa: E731
    else:
        crop = lambda img: square_resize(img, size)  # noqa: E731
    with contextlib.ExitStack() as stack:
        entries, partition = _source_entries(src, stack)
        if not entries:
            raise DataSourceError(f"no images found in dataset source {str(src)!r}")
        if name == "celeba":
            _check_is_celeba(entries, src)
        train, test, summary["split_used"] = _split(name, entries, partition, n_train, n_test)
        for split, items in (("train", train), ("test", test)):
            summary[split] = _write_split(
                items, out / split, split, crop, summary["failed_inputs"], f"{name} {split}",
                progress,
            )
    tried = sum(summary[split]["total"] for split in ("train", "test"))
    usable = sum(summary[split][k] for split in ("train", "test") for k in ("written", "skipped"))
    if tried and not usable:
        raise DataSourceError(
            f"none of the {tried} images of {str(src)!r} could be used: "
            f"{summary['failed_inputs'][0]}"
        )
    manifest = {k: v for k, v in summary.items() if k != "failed_inputs"}
    manifest["n_failed_inputs"] = len(summary["failed_inputs"])
    with atomic_write(out / "manifest.json", "w") as handle:
        handle.write(json.dumps(manifest, indent=2))
    return summary


def _check_is_celeba(entries: list[_Entry], source: Path, probes: int = 5) -> None:
    """Refuse a source whose images are not CelebA's aligned 178x218 faces, before any work.

    The first image that decodes decides (up to ``probes`` are tried, so that one broken file
    does not): every image of ``img_align_celeba`` has that size, and the face crop needs it.
    """
    for entry in entries[:probes]:
        try:
            size = entry.load().size
        except DataError:
            continue
        if size != CELEBA_SIZE:
            raise DataSourceError(
                f"{str(source)!r} is not CelebA: its images are {size[0]}x{size[1]}, CelebA's "
                "aligned faces are 178x218 (pass img_align_celeba.zip, its folder, or Kaggle's "
                "celeba-dataset)"
            )
        return


def _write_split(
    items: list[_Entry],
    folder: Path,
    split: str,
    crop: Callable[[Image.Image], Image.Image],
    failed_inputs: list[str],
    desc: str,
    progress: bool,
) -> dict[str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    written = skipped = failed = 0
    for entry in tqdm(list(_unique(items, split)), desc=desc, disable=not progress):
        dest = folder / f"{entry.stem}.png"
        if dest.exists():  # written atomically, so an existing file is a finished one
            skipped += 1
            continue
        try:
            img = crop(entry.load())
        except (DataError, ValueError) as exc:
            failed += 1
            failed_inputs.append(f"{entry.key}: {exc}")
            warnings.warn(f"skipping {entry.key}: {exc}", stacklevel=3)
            continue
        save_png(img, dest)
        written += 1
    return {"written": written, "skipped": skipped, "failed": failed, "total": len(items)}

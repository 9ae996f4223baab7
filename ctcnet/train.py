"""Training CTCNet: one short, linear loop (in the spirit of nanoGPT's ``train.py``).

Reference protocol (``CTCNET_SPEC.md`` §9): L1 loss in [-1, 1] space, Adam(lr 2e-4, betas
(0.9, 0.99)), constant learning rate, batch 10, N(0, 0.02) initialisation. Everything is a field
of :class:`TrainConfig`; :func:`fit` runs it.

What we add on top of the reference, and why:

* **Patches.** ``patch_size < 128`` trains on random ``P x P`` crops (offsets multiples of the
  scale 8) of the full 128x128 bicubic input and of the HR target. The network is fully
  convolutional, so it learns the same mapping faster per step (a 64x64 patch costs about a
  quarter of a 128x128 image); it is still evaluated on full 128x128 faces. The crop is taken
  *after* the degradation, so a patch of the input is exactly what the model sees at that place
  at inference time.
* **Exact resume.** The images of step ``t`` are a function of ``(seed, t)`` only (epoch-wise
  permutations seeded by ``(seed, epoch)``), and so is the augmentation of each batch slot
  (``random.Random(f"{seed}-{t}-{slot}")``). With the model, optimizer and RNG states restored
  from ``last.pt``, an interrupted and resumed run computes the same losses as an uninterrupted
  one (bit for bit on the CPU).
* **Safety.** ``last.pt`` is written atomically; a NaN/inf loss (or non-finite weights) stops
  the run with a message naming the step and never overwrites ``last.pt``; Ctrl-C saves
  ``last.pt`` at the last completed step, then re-raises ``KeyboardInterrupt``.
* **DDP.** Under ``torchrun`` (``WORLD_SIZE > 1``) each rank trains on its share of the global
  batch of ``batch_size`` images; rank 0 alone evaluates, logs and saves.
* Unlike the reference, evaluation puts the model back into train mode afterwards (the
  reference leaves BatchNorm in eval mode from its first evaluation on, spec §9 "quirk").
"""

from __future__ import annotations

import csv
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from ._atomic import atomic_write
from .checkpoint import (
    CheckpointError,
    model_from_checkpoint,
    read_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from .data.datasets import FaceSRDataset
from .data.degradation import ReferenceAugment, degrade, to_tensor
from .metrics import psnr, ssim
from .model import CTCNet, build_model
from .runtime import autocast, pick_device

__all__ = ["TrainConfig", "TrainingError", "batch_indices", "fit", "reference_init_"]

LOG_FIELDS = ("step", "loss", "lr", "time", "val_psnr", "val_ssim", "bicubic_psnr")


class TrainingError(RuntimeError):
    """A training run that cannot start or has to stop (bad data, NaN loss, ...)."""


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    Attributes
    ----------
    preset : model preset (``official``, ``reduced``, ``tiny``).
    overrides : :class:`~ctcnet.model.CTCNetConfig` fields to change, e.g. ``{"use_fsau": False}``.
    data : training image folder, or ``"offline-faces"`` for the ``train/`` split built by
        ``ctcnet data offline-faces`` (root: ``$CTCNET_DATA`` or the default cache).
    val : validation folder; default: the offline ``test/`` split when ``data`` is
        ``"offline-faces"``, else no validation (then no ``best.pt``).
    val_limit : evaluate on at most this many validation images (``0`` = all).
    out : run folder (``last.pt``, ``best.pt``, ``log.csv``, ``config.json``).
    steps : total number of optimizer steps.
    batch_size : global batch size (split across DDP ranks).
    patch_size : training crop side (multiple of 8, at most ``hr_size``); ``None`` (default) or
        ``hr_size`` = whole images, no crop.
    hr_size : side of the HR training images.
    lr, betas, weight_decay : Adam hyper-parameters.
    schedule : ``"constant"`` (reference) or ``"cosine"`` (decay to 0 at ``steps``).
    warmup_steps : linear warm-up steps before the schedule.
    precision : ``fp32``, ``bf16`` (CUDA or CPU autocast) or ``fp16`` (CUDA, with GradScaler).
    seed : seeds initialisation, data order and augmentation.
    augment : the reference flip + random-resized-crop augmentation (spec §8).
    reference_init : N(0, 0.02) weights, zero biases, BN weights N(1, 0.02) (spec §9).
    eval_every, save_every : in steps (``0`` = only at the end).
    device : ``None`` picks CUDA, then MPS, then CPU.
    resume : continue from ``out/last.pt``.
    progress : tqdm bar; ``None`` = only when stderr is a terminal.
    tensorboard : also log to TensorBoard when it is installed.
    callback : ``callback(step, info)`` after every step (tests, notebooks); not saved.
    """

    preset: str = "reduced"
    overrides: dict[str, Any] = field(default_factory=dict)
    data: str = "offline-faces"
    val: str | None = None
    val_limit: int = 0
    out: str = "runs/ctcnet"
    steps: int = 1000
    batch_size: int = 8
    patch_size: int | None = None
    hr_size: int = 128
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    precision: str = "fp32"
    seed: int = 123
    augment: bool = True
    reference_init: bool = True
    eval_every: int = 0
    save_every: int = 500
    device: str | None = None
    resume: bool = False
    progress: bool | None = None
    tensorboard: bool = True
    callback: Callable[[int, dict[str, Any]], None] | None = field(
        default=None, repr=False, compare=False
    )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy (without the callback), as saved in checkpoints and ``config.json``."""
        d = asdict(self)
        d.pop("callback")
        d["betas"] = list(self.betas)
        return d


# ---------------------------------------------------------------------------------------------
# Pieces of the loop
# ---------------------------------------------------------------------------------------------
def reference_init_(model: nn.Module) -> nn.Module:
    """The reference initialisation (spec §9), in place: conv / transposed conv / linear weights
    N(0, 0.02) and zero biases; BatchNorm weights N(1, 0.02) and zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return model


def batch_indices(seed: int, step: int, batch_size: int, n: int) -> list[int]:
    """Dataset indices of the global batch of ``step``: a function of ``(seed, step)`` only.

    Batches walk through epoch-wise random permutations of ``range(n)`` (seeded by
    ``(seed, epoch)``), so every image is seen once per epoch.
    """
    out, perms = [], {}
    for pos in range(step * batch_size, (step + 1) * batch_size):
        epoch, i = divmod(pos, n)
        if epoch not in perms:
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            perms[epoch] = torch.randperm(n, generator=g).tolist()
        out.append(perms[epoch][i])
    return out


def _sample(
    hr: Image.Image, augment: ReferenceAugment | None, rng: random.Random, patch: int, scale: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, target) tensors of one training sample: augment, degrade, then crop a patch."""
    if augment is not None:
        hr = augment(hr, rng)
    _, lr_up = degrade(hr, scale)
    x, y = to_tensor(lr_up), to_tensor(hr)
    size = x.shape[-1]
    if patch < size:
        top = rng.randrange(0, (size - patch) // scale + 1) * scale
        left = rng.randrange(0, (size - patch) // scale + 1) * scale
        x = x[:, top : top + patch, left : left + patch]
        y = y[:, top : top + patch, left : left + patch]
    return x, y


def _lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return cfg.lr


@torch.no_grad()
def validate(
    model: CTCNet, data: FaceSRDataset, device: torch.device, precision: str, limit: int = 0
) -> dict[str, float]:
    """Mean PSNR / SSIM (``ctcnet`` protocol) of the model and of bicubic on ``data``."""
    was_training = model.training
    model.eval()
    n = len(data) if limit <= 0 else min(limit, len(data))
    scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "bicubic_psnr": []}
    for start in range(0, n, 8):
        items = [data[i] for i in range(start, min(n, start + 8))]
        x = torch.stack([it["lr_up"] for it in items]).to(device)
        hr = torch.stack([it["hr"] for it in items])
        with autocast(device, precision):
            sr = model(x)
        sr = sr.float().cpu()
        scores["psnr"] += psnr(sr, hr, reduction="none")
        scores["ssim"] += ssim(sr, hr, reduction="none")
        scores["bicubic_psnr"] += psnr(x.cpu(), hr, reduction="none")
    model.train(was_training)
    return {k: float(np.mean(v)) for k, v in scores.items()}


def _resolve_data(cfg: TrainConfig) -> tuple[FaceSRDataset, FaceSRDataset | None]:
    train_dir, val_dir = cfg.data, cfg.val
    if cfg.data == "offline-faces":
        from .data.offline_faces import default_root

        root = default_root()
        train_dir = str(root / "train")
        if not Path(train_dir).is_dir():
            raise TrainingError(
                f"offline faces not found in {root}: run `ctcnet data offline-faces` "
                "(or set CTCNET_DATA to a built copy)"
            )
        if val_dir is None and (root / "test").is_dir():
            val_dir = str(root / "test")
    try:
        train = FaceSRDataset(train_dir, hr_size=cfg.hr_size)
        val = FaceSRDataset(val_dir, hr_size=cfg.hr_size) if val_dir else None
    except (FileNotFoundError, ValueError) as exc:
        raise TrainingError(str(exc)) from None
    return train, val


def check_config(cfg: TrainConfig) -> None:
    """Raise a one-line :class:`TrainingError` for an invalid configuration."""
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise TrainingError("steps and batch_size must be positive")
    if cfg.schedule not in ("constant", "cosine"):
        raise TrainingError(f"unknown schedule {cfg.schedule!r}; choose constant or cosine")
    if cfg.precision not in ("fp32", "bf16", "fp16"):
        raise TrainingError(f"unknown precision {cfg.precision!r}; choose fp32, bf16 or fp16")
    if not (cfg.lr > 0):
        raise TrainingError(f"lr must be positive, got {cfg.lr}")
    try:
        with torch.device("meta"):  # the config only: no memory, no initialisation
            probe = build_model(cfg.preset, **cfg.overrides).config
    except (ValueError, TypeError) as exc:
        raise TrainingError(str(exc)) from None
    p = cfg.patch_size or cfg.hr_size
    if p % probe.size_multiple or p > cfg.hr_size or p < probe.min_input_size:
        raise TrainingError(
            f"patch size {p} must be a multiple of {probe.size_multiple} between "
            f"{probe.min_input_size} (smallest input of this model) and {cfg.hr_size}"
        )


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
def fit(cfg: TrainConfig) -> dict[str, Any]:
    """Train a model as described by ``cfg``.

    Returns
    -------
    dict
        ``steps`` (completed), ``losses`` (``[(step, loss)]`` of this call), ``best_psnr``,
        ``last_val`` (dict or None), ``out`` (run folder), ``seconds``.

    Raises
    ------
    TrainingError
        Invalid settings or data, a non-finite loss (naming the step), a broken ``last.pt``.
    KeyboardInterrupt
        After saving ``last.pt`` at the last completed step.
    """
    check_config(cfg)
    # ---- distributed setup (torchrun sets WORLD_SIZE, RANK, LOCAL_RANK) ----
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    ddp = world > 1
    device = pick_device(cfg.device)
    if ddp:
        if cfg.batch_size % world:
            raise TrainingError(f"batch size {cfg.batch_size} is not divisible by {world} ranks")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    master = rank == 0
    if cfg.precision == "fp16" and device.type != "cuda":
        raise TrainingError("fp16 training needs CUDA; use bf16 (or fp32) on this device")
    out = Path(cfg.out)
    last_path, best_path, log_path = out / "last.pt", out / "best.pt", out / "log.csv"

    # ---- data ----
    train_set, val_set = _resolve_data(cfg)
    hr_cache: dict[int, Image.Image] = {}
    augment = ReferenceAugment(cfg.hr_size) if cfg.augment else None

    # ---- model and optimizer ----
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.preset, **cfg.overrides)
    if cfg.reference_init:
        reference_init_(model)
    opt = torch.optim.Adam(
        model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
    )
    start, best_psnr, elapsed0, scaler_state = 0, -math.inf, 0.0, None
    if cfg.resume:
        if not last_path.is_file():
            raise TrainingError(f"cannot resume: {last_path} does not exist")
        try:
            ckpt = read_checkpoint(last_path)
            restored = model_from_checkpoint(ckpt, source=f"checkpoint {last_path}")
        except CheckpointError as exc:
            raise TrainingError(str(exc)) from None
        if restored.config != model.config:
            raise TrainingError(f"cannot resume: {last_path} holds a different model config")
        if ckpt.get("optimizer") is None:
            raise TrainingError(f"cannot resume: {last_path} has no optimizer state")
        model.load_state_dict(restored.state_dict())
        opt.load_state_dict(ckpt["optimizer"])
        start = int(ckpt["step"])
        best_psnr = float(ckpt["extra"].get("best_psnr", -math.inf))
        elapsed0 = float(ckpt["extra"].get("seconds", 0.0))
        scaler_state = ckpt["extra"].get("scaler")
        if ckpt.get("rng"):
            set_rng_state(ckpt["rng"])
    model.to(device).train()
    if ddp:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    net: CTCNet = model.module if ddp else model
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    if scaler_state:
        scaler.load_state_dict(scaler_state)

    # ---- logging (rank 0 only) ----
    writer = None
    if master:
        out.mkdir(parents=True, exist_ok=True)
        _write_text(out / "config.json", _json(cfg.to_dict()))
        _prepare_log(log_path, keep_until=start if cfg.resume else -1)
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(out / "tb"))
            except ImportError:
                writer = None
    show = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
    bar = tqdm(total=cfg.steps, initial=start, disable=not (show and master), desc="train")

    def checkpoint(path: Path, step: int, val: dict[str, float] | None = None) -> None:
        bad = [n for n, p in net.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise TrainingError(f"non-finite weights ({bad[0]}) after step {step}: not saving")
        extra = {
            "best_psnr": best_psnr,
            "seconds": elapsed0 + time.time() - t0,
            "train_config": cfg.to_dict(),
            "val": val or {},
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        }
        save_checkpoint(path, net, opt, step=step, extra=extra)

    # ---- the loop ----
    t0 = time.time()
    losses: list[tuple[int, float]] = []
    last_val: dict[str, float] | None = None
    completed, updating = start, False  # steps whose update is fully applied
    per_rank = cfg.batch_size // world
    patch = cfg.patch_size or cfg.hr_size
    try:
        for step in range(start, cfg.steps):
            lr = _lr_at(cfg, step)
            for group in opt.param_groups:
                group["lr"] = lr
            # the samples of this rank: a function of (seed, step, slot) only
            idx = batch_indices(cfg.seed, step, cfg.batch_size, len(train_set))
            slots = range(rank * per_rank, (rank + 1) * per_rank)
            pairs = []
            for slot in slots:
                i = idx[slot]
                if i not in hr_cache:
                    hr_cache[i] = train_set.load_hr(i)
                rng = random.Random(f"{cfg.seed}-{step}-{slot}")
                pairs.append(_sample(hr_cache[i], augment, rng, patch, 8))
            x = torch.stack([p[0] for p in pairs]).to(device)
            y = torch.stack([p[1] for p in pairs]).to(device)

            with autocast(device, cfg.precision):
                sr = model(x)
            loss = F.l1_loss(sr.float(), y)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss is {loss.item()} at step {step + 1}: stopping "
                    f"({last_path.name} keeps the last good checkpoint)"
                )
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            updating = True
            scaler.step(opt)
            scaler.update()
            updating = False
            done = completed = step + 1

            # ---- bookkeeping ----
            loss_value = loss.item()
            if ddp:  # report the mean loss over ranks
                t = torch.tensor([loss_value], device=device)
                dist.all_reduce(t)
                loss_value = t.item() / world
            losses.append((step, loss_value))
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
            row: dict[str, Any] = {"step": done, "loss": loss_value, "lr": lr}
            row["time"] = round(elapsed0 + time.time() - t0, 3)
            evaluate_now = val_set is not None and (
                done == cfg.steps or (cfg.eval_every and done % cfg.eval_every == 0)
            )
            if master and evaluate_now:
                last_val = validate(net, val_set, device, cfg.precision, cfg.val_limit)
                row.update(
                    val_psnr=last_val["psnr"],
                    val_ssim=last_val["ssim"],
                    bicubic_psnr=last_val["bicubic_psnr"],
                )
                msg = (
                    f"step {done}: loss {loss_value:.4f}, val PSNR {last_val['psnr']:.2f} dB "
                    f"SSIM {last_val['ssim']:.4f} (bicubic {last_val['bicubic_psnr']:.2f} dB)"
                )
                if show:
                    tqdm.write(msg, file=sys.stderr)
                else:
                    print(msg, file=sys.stderr)
                if last_val["psnr"] > best_psnr:
                    best_psnr = last_val["psnr"]
                    checkpoint(best_path, done, last_val)
            if master:
                _append_log(log_path, row)
                if writer is not None:
                    for key, value in row.items():
                        if key != "step":
                            writer.add_scalar(f"train/{key}", value, done)
                if done == cfg.steps or (cfg.save_every and done % cfg.save_every == 0):
                    checkpoint(last_path, done, last_val)
            if cfg.callback is not None:
                cfg.callback(done, {"loss": loss_value, "lr": lr, "val": last_val})
    except KeyboardInterrupt:
        if master and not updating:
            checkpoint(last_path, completed, last_val)
            print(f"interrupted: saved {last_path} at step {completed}", file=sys.stderr)
        raise
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if ddp and dist.is_initialized():
            dist.destroy_process_group()
    return {
        "steps": cfg.steps,
        "losses": losses,
        "best_psnr": best_psnr,
        "last_val": last_val,
        "out": str(out),
        "seconds": time.time() - t0,
    }


# ---------------------------------------------------------------------------------------------
# Small file helpers
# ---------------------------------------------------------------------------------------------
def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2, default=str) + "\n"


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def _prepare_log(path: Path, keep_until: int) -> None:
    """Start ``log.csv`` (header only), or on resume drop rows after step ``keep_until``."""
    rows = []
    if keep_until >= 0 and path.is_file():
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) <= keep_until]
    with atomic_write(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        w.writeheader()
        w.writerows({k: r.get(k, "") for k in LOG_FIELDS} for r in rows)


def _append_log(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=LOG_FIELDS).writerow({k: row.get(k, "") for k in LOG_FIELDS})

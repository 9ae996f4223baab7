"""Training CTCNet: one short, linear loop (in the spirit of nanoGPT's ``train.py``).

The authors' recipe (their ``train.py``): L1 loss in [-1, 1] space, Adam(lr 2e-4, betas
(0.9, 0.99)), a constant learning rate, batch 10, N(0, 0.02) initialisation. Everything is a
field of :class:`TrainConfig`; :func:`fit` runs it.

What we add on top, and why:

* **The data come through the dataset.** :class:`~ctcnet.data.datasets.FaceSRDataset` decodes,
  augments, degrades and crops; a :class:`StepSampler` says which image goes into which batch
  slot of which step; a ``DataLoader`` (worker processes, pinned memory on CUDA) runs them. Every
  image is decoded once before step 1, so a corrupt file stops the run at once, naming it.
* **Patches.** ``patch_size < hr_size`` trains on random ``P x P`` crops (offsets multiples of
  the scale 8) taken *after* the degradation, so a patch of the input is exactly what the model
  sees at that place at inference time. The network is fully convolutional: it learns the same
  mapping for about a quarter of the cost per step at P = 64. ``full_size_from_step`` switches to
  whole faces for a final phase, where the global modules see the whole face.
* **Exact resume.** The sample in slot ``k`` of step ``t`` is a pure function of
  ``(seed, t, k)``: the image comes from epoch-wise permutations seeded by ``(seed, epoch)``
  (:func:`batch_indices`), its augmentation and crop from ``random.Random(f"{seed}-{t}-{k}")``.
  With the model, optimizer, EMA and RNG states restored from ``last.pt``, a resumed run computes
  the same losses and weights as an uninterrupted one (bit for bit on the CPU). ``--resume``
  refuses a changed setting that would break this, naming it.
* **Nothing is lost.** ``last.pt`` is written atomically, and on *any* exception it is saved at
  the last completed step: BatchNorm statistics that a failed forward pass already updated are
  put back first. The first Ctrl-C lets the current step finish, saves and stops; a second one
  stops at once. A NaN/inf loss stops the run naming the step; non-finite weights are never
  saved.
* **Recipe options** (off by default, except the carved validation of the offline faces):
  ``augment="strong"`` (flip, small rotation and zoom,
  colour jitter: :class:`~ctcnet.data.augment.FaceAugment`), a cosine schedule with warm-up,
  ``ema_decay`` (an exponential moving average of the weights, validated and written to
  ``best.pt`` / ``ema.pt``), and ``val="carve:N"``: N validation faces carved from the training
  identities, so the released step is never chosen on the test faces (``carve:8`` is the default
  for ``data="offline-faces"``).
* **Precision.** :func:`ctcnet.runtime.optimize_for_training` runs the forward pass in the
  chosen precision (``"auto"``: bf16 where the hardware has it) with float32 master weights.
* **DDP.** Under ``torchrun`` (``WORLD_SIZE > 1``) each rank trains on its share of the global
  batch of ``batch_size`` images; rank 0 alone evaluates, logs and saves.
* Unlike the authors' loop, evaluation puts the model back into train mode afterwards (theirs
  leaves BatchNorm in eval mode from the first evaluation on).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from ._atomic import atomic_write
from .data.augment import FaceAugment
from .data.datasets import FaceSRDataset
from .errors import CheckpointError, TrainingError
from .evaluate import evaluate
from .model import CTCNet, build_model
from .runtime import grad_scaler_for, optimize_for_training, pick_device
from .weights import model_from_checkpoint, read_checkpoint, save_checkpoint, set_rng_state

__all__ = [
    "StepSampler",
    "TrainConfig",
    "TrainingError",
    "batch_indices",
    "check_config",
    "fit",
    "load_data",
    "reference_init_",
    "split_by_identity",
]

LOG_FIELDS = ("step", "loss", "lr", "time", "val_psnr", "val_ssim", "bicubic_psnr")
AUGMENTATIONS = ("none", "reference", "strong")
#: Validation faces carved from the offline training identities when ``val`` is not given.
DEFAULT_CARVE = 8
#: Settings that decide which samples and updates a run makes: a resume must keep them.
RESUME_FIXED = (
    "preset", "overrides", "data", "val", "seed", "batch_size", "patch_size", "hr_size", "lr",
    "betas", "weight_decay", "schedule", "warmup_steps", "augment", "reference_init",
    "full_size_from_step", "ema_decay",
)  # fmt: skip


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    Attributes
    ----------
    preset : model preset (``official``, ``reduced``, ``tiny``).
    overrides : :class:`~ctcnet.model.CTCNetConfig` fields to change, e.g. ``{"use_fsau": False}``.
    data : training image folder, or ``"offline-faces"`` for the ``train/`` split built by
        ``ctcnet data offline-faces`` (root: ``$CTCNET_DATA`` or the default cache).
    val : a validation folder, ``"carve:N"`` (N faces of whole training identities, taken out of
        training: identity-disjoint from train and test) or ``"none"``. Default: ``"carve:8"``
        for ``"offline-faces"``, else none. Without validation there is no ``best.pt``.
    val_limit : evaluate on at most this many validation images (``0`` = all).
    out : run folder (``last.pt``, ``best.pt``, ``log.csv``, ``config.json``).
    steps : total number of optimizer steps.
    batch_size : global batch size (split across DDP ranks).
    patch_size : training crop side (multiple of 8, at most ``hr_size``); ``None`` (default) or
        ``hr_size`` = whole images, no crop.
    full_size_from_step : from this step on, train on whole ``hr_size`` faces (``None``: never).
    hr_size : side of the HR training images.
    lr, betas, weight_decay : Adam hyper-parameters.
    schedule : ``"constant"`` (the authors') or ``"cosine"`` (decay to 0 at ``steps``).
    warmup_steps : linear warm-up steps before the schedule.
    ema_decay : keep an exponential moving average of the weights with this decay (e.g. 0.999);
        it is what validation scores and what ``best.pt`` / ``ema.pt`` hold. ``0`` = off.
    precision : ``auto`` (bf16 where the hardware has it, see
        :func:`ctcnet.runtime.choose_precision`), ``fp32``, ``bf16`` or ``fp16`` (CUDA).
    seed : seeds initialisation, data order, augmentation and crops.
    augment : ``"reference"`` (the authors' flip + random resized crop; ``True``), ``"strong"``
        (:class:`~ctcnet.data.augment.FaceAugment`) or ``"none"`` (``False``).
    reference_init : N(0, 0.02) weights, zero biases, BN weights N(1, 0.02) (the authors' init).
    eval_every, save_every : in steps (``0`` = only at the end).
    keep_every : also keep a copy of ``last.pt`` as ``step_N.pt`` every this many steps (``0`` =
        none), e.g. to compare the end of one training phase with the end of the run.
    workers : DataLoader worker processes; ``None`` = one per four CPU cores, at most 4 (none on
        a 2-core machine, where decoding a face costs far less than a training step).
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
    full_size_from_step: int | None = None
    hr_size: int = 128
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    ema_decay: float = 0.0
    precision: str = "auto"
    seed: int = 123
    augment: bool | str = "reference"
    reference_init: bool = True
    eval_every: int = 0
    save_every: int = 500
    keep_every: int = 0
    workers: int | None = None
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
        d["augment"] = _augment_name(self.augment)
        return d


# ---------------------------------------------------------------------------------------------
# Pieces of the loop
# ---------------------------------------------------------------------------------------------
def reference_init_(model: nn.Module) -> nn.Module:
    """The authors' initialisation, in place: conv / transposed conv / linear weights N(0, 0.02)
    and zero biases; BatchNorm weights N(1, 0.02) and zero biases."""
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


class StepSampler(Sampler[list[tuple[int, ...]]]):
    """Batches of training draws ``(index, step, slot[, patch])`` for steps ``start .. steps-1``.

    A draw is what :class:`~ctcnet.data.datasets.FaceSRDataset` needs to make a sample that
    depends on nothing else: the image (:func:`batch_indices`), the step and batch slot that key
    its random stream, and the crop side of that step (``patch_at(step)``; without ``patch_at``
    the dataset's own ``patch_size``). A sampler started at a later step yields exactly the
    tail of the one started at 0, which is what makes resuming exact. Under DDP, rank ``r`` of
    ``world`` takes the slots ``r * B / world ... (r + 1) * B / world - 1``.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        steps: int,
        start: int = 0,
        patch_at: Callable[[int], int] | None = None,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if n < 1 or batch_size < 1 or batch_size % world:
            raise ValueError(f"need n >= 1 and a batch size divisible by {world}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.steps = start, steps
        self.patch_at = patch_at
        per_rank = batch_size // world
        self.slots = range(rank * per_rank, (rank + 1) * per_rank)

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, ...]]]:
        for step in range(self.start, self.steps):
            idx = batch_indices(self.seed, step, self.batch_size, self.n)
            patch = () if self.patch_at is None else (self.patch_at(step),)
            yield [(idx[slot], step, slot, *patch) for slot in self.slots]


def _lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return cfg.lr


def _augment_name(augment: bool | str) -> str:
    if augment is True:
        return "reference"
    if augment is False or augment is None:
        return "none"
    return str(augment)


def _patch_at(cfg: TrainConfig) -> Callable[[int], int]:
    patch, full_from = cfg.patch_size or cfg.hr_size, cfg.full_size_from_step
    return lambda step: cfg.hr_size if full_from is not None and step >= full_from else patch


def default_workers() -> int:
    """DataLoader workers when ``TrainConfig.workers`` is None: one per four cores, at most 4."""
    # the cores this process may use, not the machine's (containers, taskset)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(4, (cores or 1) // 4)


def _ignore_sigint(_worker_id: int) -> None:
    # Ctrl-C goes to the whole process group; the main process decides when to stop, and
    # workers that died on it would turn a clean stop into a DataLoader error.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def split_by_identity(identities: Sequence[str], n: int) -> tuple[list[int], list[int]]:
    """Carve about ``n`` validation items out of a training set without splitting an identity.

    Whole identities are taken in a fixed order (by the SHA-256 of their name, so the choice
    does not depend on the seed or the file order), skipping any that would exceed ``n`` items.
    Returns ``(train_indices, val_indices)``.
    """
    groups: dict[str, list[int]] = {}
    for i, who in enumerate(identities):
        groups.setdefault(who, []).append(i)
    val: list[int] = []
    for who in sorted(groups, key=lambda w: hashlib.sha256(w.encode()).hexdigest()):
        if len(val) + len(groups[who]) <= n:
            val += groups[who]
    if not val or len(val) == len(identities):
        raise TrainingError(
            f"cannot carve {n} validation faces from {len(identities)} training faces "
            f"of {len(groups)} identities"
        )
    chosen = set(val)
    return [i for i in range(len(identities)) if i not in chosen], sorted(val)


def _identities(names: Sequence[str], offline: bool) -> list[str]:
    """Who is in each training image: the offline manifest's identity for the offline faces,
    else the first folder of the relative path, else the file itself."""
    if offline:
        from .data.offline_faces import load_manifest

        who = {face["id"]: face["identity"] for face in load_manifest()["faces"]}
        return [who.get(Path(name).stem, name) for name in names]
    return [name.split("/")[0] if "/" in name else name for name in names]


def _val_spec(data: str, val: str | None) -> str | None:
    """What ``val`` means for ``data``: the offline faces carve a validation set by default."""
    return f"carve:{DEFAULT_CARVE}" if val is None and data == "offline-faces" else val


def load_data(cfg: TrainConfig) -> tuple[FaceSRDataset, FaceSRDataset | None]:
    """The training set (augmenting and cropping) and the validation set (whole faces).

    Every image of both is decoded here: a corrupt file raises a one-line
    :class:`TrainingError` naming it, before any training step.
    """
    train_dir, val = cfg.data, cfg.val
    if cfg.data == "offline-faces":
        from .data.offline_faces import default_root

        root = default_root()
        train_dir = str(root / "train")
        if not Path(train_dir).is_dir():
            raise TrainingError(
                f"offline faces not found in {root}: run `ctcnet data offline-faces` "
                "(or set CTCNET_DATA to a built copy)"
            )
        val = _val_spec(cfg.data, val)
    try:
        everything = FaceSRDataset(train_dir, hr_size=cfg.hr_size)
        files, val_set = everything.files, None
        if val and val.startswith("carve:"):
            who = _identities(everything.names, offline=cfg.data == "offline-faces")
            keep, held_out = split_by_identity(who, int(val.split(":", 1)[1]))
            files = [everything.files[i] for i in keep]
            val_set = FaceSRDataset([everything.files[i] for i in held_out], hr_size=cfg.hr_size)
        elif val and val != "none":
            val_set = FaceSRDataset(val, hr_size=cfg.hr_size)
        augment = {"reference": True, "strong": FaceAugment(cfg.hr_size), "none": False}
        train_set = FaceSRDataset(
            files,
            hr_size=cfg.hr_size,
            augment=augment[_augment_name(cfg.augment)],
            seed=cfg.seed,
            patch_size=cfg.patch_size,
            cache_size=4096,  # ~200 MB of 128x128 faces per process at most
        )
    except (FileNotFoundError, ValueError) as exc:
        raise TrainingError(str(exc)) from None
    for kind, data in (("training", train_set), ("validation", val_set)):
        bad = data.validate() if data is not None else []
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise TrainingError(f"{kind} data: {bad[0][1]}{more}")  # the reason names the file
    return train_set, val_set


def _validate(model: nn.Module, data: FaceSRDataset, cfg: TrainConfig) -> dict[str, float]:
    """Mean PSNR / SSIM of the model and of bicubic (``ctcnet`` protocol), via :func:`evaluate`."""
    scores = evaluate(model, data, limit=cfg.val_limit).means()
    return {k: scores[k] for k in ("psnr", "ssim", "bicubic_psnr")}


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
def check_config(cfg: TrainConfig) -> None:
    """Raise a one-line :class:`TrainingError` for an invalid configuration."""
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise TrainingError("steps and batch_size must be positive")
    if cfg.schedule not in ("constant", "cosine"):
        raise TrainingError(f"unknown schedule {cfg.schedule!r}; choose constant or cosine")
    if cfg.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise TrainingError(f"unknown precision {cfg.precision!r}; choose auto, fp32, bf16, fp16")
    if _augment_name(cfg.augment) not in AUGMENTATIONS:
        raise TrainingError(f"unknown augment {cfg.augment!r}; choose {', '.join(AUGMENTATIONS)}")
    if not (cfg.lr > 0):
        raise TrainingError(f"lr must be positive, got {cfg.lr}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise TrainingError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}")
    if cfg.eval_every < 0 or cfg.save_every < 0 or cfg.keep_every < 0:
        raise TrainingError("eval_every, save_every and keep_every must be >= 0 (0 = off)")
    if cfg.workers is not None and cfg.workers < 0:
        raise TrainingError(f"workers must be >= 0, got {cfg.workers}")
    if cfg.full_size_from_step is not None and cfg.full_size_from_step < 0:
        raise TrainingError(f"full_size_from_step must be >= 0, got {cfg.full_size_from_step}")
    if cfg.val and cfg.val.startswith("carve:"):
        count = cfg.val.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise TrainingError(f"val {cfg.val!r}: write carve:N with N a positive number")
    try:
        with torch.device("meta"):  # the config only: no memory, no initialisation
            probe = build_model(cfg.preset, **cfg.overrides).config
    except (ValueError, TypeError) as exc:
        raise TrainingError(str(exc)) from None
    m, lo = probe.size_multiple, probe.min_input_size
    if cfg.hr_size % m or cfg.hr_size < lo:
        raise TrainingError(
            f"hr size {cfg.hr_size} must be a multiple of {m} and at least {lo} for this model"
        )
    p = cfg.patch_size or cfg.hr_size
    if p % m or p > cfg.hr_size or p < lo:
        raise TrainingError(
            f"patch size {p} must be a multiple of {m} between {lo} (smallest input of this "
            f"model) and the hr size {cfg.hr_size}"
        )


#: The command-line flag of a setting whose name is not its flag's.
_RESUME_FLAGS = {"overrides": "--set", "reference_init": "--no-reference-init"}


def _check_resume(cfg: TrainConfig, saved: dict[str, Any], step: int, path: Path) -> None:
    """Refuse a resume whose settings would not continue the saved run, naming the setting."""
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    now = cfg.to_dict()
    for name in RESUME_FIXED:
        before = saved.get(name, defaults[name] if name != "overrides" else {})
        if name == "augment":
            before = _augment_name(before)
        if name == "betas":
            before, now[name] = list(before), list(now[name])
        if name == "val":  # only a carved validation set changes what is trained on
            before = _val_spec(saved.get("data", cfg.data), before)
            now[name] = _val_spec(cfg.data, cfg.val)
            if not ("carve:" in str(before) or "carve:" in str(now[name])):
                continue
        if before != now[name]:
            flag = _RESUME_FLAGS.get(name, "--" + name.replace("_", "-"))
            raise TrainingError(
                f"cannot resume: {name} ({flag}) is {now[name]!r} but {path} was trained with "
                f"{before!r}; use the same value or a new --out"
            )
    if cfg.steps < step:
        raise TrainingError(
            f"cannot resume: {path} is already at step {step}, beyond --steps {cfg.steps}"
        )
    if cfg.schedule == "cosine" and saved.get("steps", cfg.steps) != cfg.steps:
        print(
            f"warning: steps changed from {saved['steps']} to {cfg.steps}: the cosine schedule "
            "is stretched from here on, so this is not the run an uninterrupted one would be",
            file=sys.stderr,
        )


def _resume(
    cfg: TrainConfig, path: Path, model: CTCNet, opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, ema: AveragedModel | None,
) -> tuple[int, float, float]:  # fmt: skip
    """Load ``last.pt`` into the model, optimizer, scaler and EMA; ``(step, best, seconds)``."""
    if not path.is_file():
        raise TrainingError(f"cannot resume: {path} does not exist")
    try:
        ckpt = read_checkpoint(path)
        restored = model_from_checkpoint(ckpt, source=f"checkpoint {path}")
    except CheckpointError as exc:
        raise TrainingError(str(exc)) from None
    extra = ckpt.get("extra") or {}
    _check_resume(cfg, extra.get("train_config", {}), int(ckpt["step"]), path)
    if restored.config != model.config:
        raise TrainingError(f"cannot resume: {path} holds a different model config")
    if ckpt.get("optimizer") is None:
        raise TrainingError(f"cannot resume: {path} has no optimizer state")
    model.load_state_dict(restored.state_dict())
    opt.load_state_dict(ckpt["optimizer"])
    if extra.get("scaler"):
        scaler.load_state_dict(extra["scaler"])
    if ema is not None:
        ema.load_state_dict(extra["ema"])
    if ckpt.get("rng"):
        set_rng_state(ckpt["rng"])
    return int(ckpt["step"]), float(extra.get("best_psnr", -math.inf)), extra.get("seconds", 0.0)


# ---------------------------------------------------------------------------------------------
# Stopping and saving
# ---------------------------------------------------------------------------------------------
class _StopRequest:
    """Ctrl-C handling for the loop: the first SIGINT asks to stop after the current step, a
    second one stops at once (a ``KeyboardInterrupt`` wherever the loop is); while
    :attr:`saving`, further SIGINTs are ignored so that ``last.pt`` is always written."""

    def __init__(self) -> None:
        self.requested = False
        self.saving = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.saving:
            return
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def on_sigint(self) -> Iterator[None]:
        """Install the handler (only over Python's default one, in the main thread)."""
        mine = (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        )
        previous = signal.signal(signal.SIGINT, self._handle) if mine else None
        try:
            yield
        finally:
            if mine:
                signal.signal(signal.SIGINT, previous)


def _norm_buffers(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(buffer, copy) of the BatchNorm statistics: a training forward pass updates them before
    the step completes, so a step that fails half-way must put them back."""
    return [
        (buf, buf.detach().clone())
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for buf in m.buffers()
    ]


def _save(
    path: Path, net: nn.Module, opt: torch.optim.Optimizer | None, step: int, extra: dict[str, Any]
) -> None:
    bad = [n for n, p in net.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise TrainingError(f"non-finite weights ({bad[0]}) after step {step}: not saving")
    save_checkpoint(path, net, opt, step=step, extra=extra)


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
def fit(cfg: TrainConfig) -> dict[str, Any]:
    """Train a model as described by ``cfg``.

    Returns
    -------
    dict
        ``steps`` (completed), ``losses`` (``[(step, loss)]`` of this call), ``best_psnr``,
        ``last_val`` (dict or None), ``out`` (run folder), ``seconds`` (of the whole run, resumed
        parts included), ``precision`` (what the forward pass ran in).

    Raises
    ------
    TrainingError
        Invalid settings or data (before step 1), a non-finite loss (naming the step), a
        ``last.pt`` that cannot be resumed (naming the reason).
    KeyboardInterrupt
        After saving ``last.pt`` at the last completed step; any other exception is re-raised
        after the same save.
    """
    check_config(cfg)
    world, rank, device = _distributed_setup(cfg)
    master, ddp = rank == 0, world > 1
    out = Path(cfg.out)
    last_path, best_path, log_path = out / "last.pt", out / "best.pt", out / "log.csv"
    train_set, val_set = load_data(cfg)
    net, opt, scaler, ema = _build(cfg, device)
    start, best_psnr, seconds_before = 0, -math.inf, 0.0
    if cfg.resume:
        start, best_psnr, seconds_before = _resume(cfg, last_path, net, opt, scaler, ema)
    model = net.train()  # `net` stays the CTCNet itself: checkpoints, EMA and validation use it
    if ddp:
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    loader = _loader(cfg, train_set, start, rank, world, device)
    writer = _start_logs(cfg, out, log_path, start) if master else None
    show = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
    bar = tqdm(total=cfg.steps, initial=start, disable=not (show and master), desc="train")

    clock = time.time() - seconds_before  # the run's clock, across resumes
    losses: list[tuple[int, float]] = []
    last_val: dict[str, float] | None = None
    completed, norm_before, updating = start, None, False
    stop = _StopRequest()
    with stop.on_sigint():
        try:
            for step, batch in zip(range(start, cfg.steps), loader):
                lr = _lr_at(cfg, step)
                for group in opt.param_groups:
                    group["lr"] = lr
                x = batch["lr_up"].to(device, non_blocking=True)
                y = batch["hr"].to(device, non_blocking=True)
                norm_before = _norm_buffers(net)
                loss = F.l1_loss(model(x).float(), y)
                if not torch.isfinite(loss):
                    raise TrainingError(f"loss is {loss.item()} at step {step + 1}: stopping")
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                updating = True
                scaler.step(opt)
                scaler.update()
                if ema is not None:
                    ema.update_parameters(net)
                completed, norm_before, updating = step + 1, None, False

                # ---- bookkeeping: log, validate, save ----
                loss_value, stop.requested = _across_ranks(loss.item(), stop.requested, device)
                losses.append((step, loss_value))
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
                row = {"step": completed, "loss": loss_value, "lr": lr,
                       "time": round(time.time() - clock, 3)}  # fmt: skip
                if master and val_set is not None and _due(completed, cfg.eval_every, cfg.steps):
                    scored = ema.module if ema is not None else net
                    last_val = _validate(scored, val_set, cfg)
                    net.train()
                    row.update(val_psnr=last_val["psnr"], val_ssim=last_val["ssim"],
                               bicubic_psnr=last_val["bicubic_psnr"])  # fmt: skip
                    _say(f"step {completed}: loss {loss_value:.4f}, val PSNR {last_val['psnr']:.2f}"
                         f" dB SSIM {last_val['ssim']:.4f} (bicubic "
                         f"{last_val['bicubic_psnr']:.2f} dB)", show)  # fmt: skip
                    if last_val["psnr"] > best_psnr:
                        best_psnr = last_val["psnr"]
                        extra = _extras(cfg, scaler, None, best_psnr, last_val, clock)
                        _save(best_path, scored, None if ema else opt, completed, extra)
                if master:
                    _log_row(log_path, writer, row)
                    if _due(completed, cfg.save_every, cfg.steps):
                        extra = _extras(cfg, scaler, ema, best_psnr, last_val, clock)
                        _save(last_path, net, opt, completed, extra)
                    if cfg.keep_every and completed % cfg.keep_every == 0:
                        if not _due(completed, cfg.save_every, cfg.steps):
                            extra = _extras(cfg, scaler, ema, best_psnr, last_val, clock)
                            _save(last_path, net, opt, completed, extra)
                        shutil.copyfile(last_path, out / f"step_{completed}.pt")
                if cfg.callback is not None:
                    cfg.callback(completed, {"loss": loss_value, "lr": lr, "val": last_val})
                if stop.requested:
                    raise KeyboardInterrupt
        except BaseException as exc:
            stop.saving = True  # a further Ctrl-C must not cut the save short
            if master and completed > start:
                extra = _extras(cfg, scaler, ema, best_psnr, last_val, clock)
                _save_after_failure(exc, last_path, net, opt, completed, extra, norm_before,
                                    updating)  # fmt: skip
            raise
        finally:
            bar.close()
            if writer is not None:
                writer.close()
            if ddp and dist.is_initialized():
                dist.destroy_process_group()
    if master and ema is not None:  # the averaged weights alone, ready to release
        extra = _extras(cfg, scaler, None, best_psnr, last_val, clock)
        _save(out / "ema.pt", ema.module, None, completed, extra)
    return {"steps": cfg.steps, "losses": losses, "best_psnr": best_psnr, "last_val": last_val,
            "out": str(out), "seconds": time.time() - clock,
            "precision": getattr(net, "precision", cfg.precision)}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Helpers of the loop
# ---------------------------------------------------------------------------------------------
def _build(
    cfg: TrainConfig, device: torch.device
) -> tuple[CTCNet, torch.optim.Optimizer, torch.amp.GradScaler, AveragedModel | None]:
    """The model (initialised from ``cfg.seed``, on ``device``, in the training precision),
    its Adam optimizer, the loss scaler that precision needs and the EMA copy (or None)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.preset, **cfg.overrides)
    if cfg.reference_init:
        reference_init_(model)
    try:
        optimize_for_training(model.to(device), cfg.precision)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    opt = torch.optim.Adam(
        model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
    )
    ema = None
    if cfg.ema_decay:
        # BatchNorm statistics are averaged too (use_buffers): the EMA model is evaluated as is
        avg = get_ema_multi_avg_fn(cfg.ema_decay)
        ema = AveragedModel(model, multi_avg_fn=avg, use_buffers=True)
    return model, opt, grad_scaler_for(model), ema


def _loader(
    cfg: TrainConfig, data: FaceSRDataset, start: int, rank: int, world: int, device: torch.device
) -> DataLoader:
    """Batches of the steps ``start ..`` for this rank, made by worker processes."""
    workers = default_workers() if cfg.workers is None else cfg.workers
    sampler = StepSampler(
        len(data), cfg.batch_size, cfg.seed, cfg.steps, start, _patch_at(cfg), rank, world
    )
    return DataLoader(
        data,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=_ignore_sigint if workers else None,
    )


def _distributed_setup(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """``(world size, rank, device)``; joins the process group under ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    try:
        device = pick_device(cfg.device)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    if world > 1:
        if cfg.batch_size % world:
            raise TrainingError(f"batch size {cfg.batch_size} is not divisible by {world} ranks")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, rank, device


def _across_ranks(loss: float, stop: bool, device: torch.device) -> tuple[float, bool]:
    """The mean loss over ranks, and whether any rank was asked to stop (so all stop together)."""
    if not (dist.is_available() and dist.is_initialized()):
        return loss, stop
    t = torch.tensor([loss, float(stop)], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return t[0].item() / dist.get_world_size(), bool(t[1].item())


def _extras(
    cfg: TrainConfig, scaler: torch.amp.GradScaler, ema: AveragedModel | None, best_psnr: float,
    last_val: dict[str, float] | None, clock: float,
) -> dict[str, Any]:  # fmt: skip
    """What every checkpoint of a run carries besides the weights and the optimizer. ``ema``
    (the averaged model, needed to resume) only goes into ``last.pt``: ``best.pt`` and ``ema.pt``
    hold the averaged weights as their model already."""
    return {
        "best_psnr": best_psnr,
        "seconds": time.time() - clock,
        "train_config": cfg.to_dict(),
        "val": last_val or {},
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "ema": ema.state_dict() if ema is not None else None,
    }


def _due(step: int, every: int, last: int) -> bool:
    return step == last or bool(every and step % every == 0)


def _save_after_failure(
    exc: BaseException, path: Path, net: nn.Module, opt: torch.optim.Optimizer, step: int,
    extra: dict[str, Any], norm_before: list[tuple[torch.Tensor, torch.Tensor]] | None,
    updating: bool,
) -> None:  # fmt: skip
    """Write ``last.pt`` at the last completed step after ``exc``, or say why it cannot."""
    what = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}"
    if updating:  # the optimizer was half-way through changing the weights
        print(f"{what} during the weight update of step {step + 1}: {path} not rewritten",
              file=sys.stderr)  # fmt: skip
        return
    with torch.no_grad():
        for buf, value in norm_before or []:
            buf.copy_(value)
    try:
        _save(path, net, opt, step, extra)
    except TrainingError as err:
        print(f"{what}: {err}", file=sys.stderr)
        return
    print(f"{what}: saved {path} at step {step}", file=sys.stderr)


def _say(msg: str, show: bool) -> None:
    """A progress line: through tqdm (stderr, beside its bar) when the bar is shown, else on
    stdout, where notebooks show it as ordinary output rather than as an error block."""
    if show:
        tqdm.write(msg, file=sys.stderr)
    else:
        print(msg, flush=True)


def _start_logs(cfg: TrainConfig, out: Path, log_path: Path, start: int) -> Any:
    """Write ``config.json``, start (or trim, on resume) ``log.csv``; the TensorBoard writer."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "config.json", "w") as f:
        f.write(json.dumps(cfg.to_dict(), indent=2, default=str) + "\n")
    _prepare_log(log_path, keep_until=start if cfg.resume else -1)
    if not cfg.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tb"))


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


def _log_row(path: Path, writer: Any, row: dict[str, Any]) -> None:
    with path.open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=LOG_FIELDS).writerow({k: row.get(k, "") for k in LOG_FIELDS})
    if writer is not None:
        for key, value in row.items():
            if key != "step":
                writer.add_scalar(f"train/{key}", value, row["step"])

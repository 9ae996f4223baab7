"""Training CTCNet: one short, linear loop (in the spirit of nanoGPT's ``train.py``).

The authors' recipe (their ``train.py``): L1 loss in [-1, 1] space, Adam(lr 2e-4, betas
(0.9, 0.99)), a constant learning rate, batch 10, N(0, 0.02) initialisation. Every setting is a
field of :class:`TrainConfig`, declared once with its default and help text (``ctcnet train``
makes its flags from them); :func:`fit` builds the data and the :class:`Run` once and loops.

What we add on top, and why:

* **Patches.** ``patch_size < hr_size`` trains on random ``P x P`` crops (offsets multiples of 8)
  taken *after* the degradation, so a patch of the input is exactly what the model sees there at
  inference time, for about a quarter of the cost per step at P = 64; ``full_size_from_step``
  ends on whole faces, where the global modules see the whole face (:mod:`ctcnet.training_data`).
* **Exact resume.** The sample in slot ``k`` of step ``t`` is a pure function of ``(seed, t, k)``
  (:mod:`ctcnet.data.sampling`); with the model, optimizer, EMA and RNG states from ``last.pt``, a
  resumed run computes the same losses and weights as an uninterrupted one (bit for bit on the
  CPU). ``--resume`` refuses, naming it, a changed setting that would break this: ``steps`` too
  under the cosine schedule, whose rate at every step depends on it (a constant rate continues).
* **Nothing is lost** (:mod:`ctcnet.run_folder`): one training per folder; atomic writes; on *any*
  exception ``last.pt`` is saved at the last completed step, with the BatchNorm statistics of a
  failed forward pass put back. The first Ctrl-C finishes the step, saves and stops; a second
  stops at once. A NaN loss stops the run naming the step; non-finite weights are never saved.
* **Recipe options**, off by default: ``augment="strong"``, a cosine schedule with warm-up,
  ``ema_decay`` (validated and released: ``best.pt``, ``ema.pt``); ``val="carve:N"`` validates on
  N faces of whole training identities (the default for the offline faces), never on test faces.
* **Precision, memory, speed.** :func:`ctcnet.runtime.optimize_for_training`: the forward pass in
  ``precision`` (``"auto"``: bf16 where the hardware has it) with float32 master weights, and with
  ``checkpointing`` the Transformer blocks and FSAUs recomputed in the backward pass instead of
  keeping their activations; ``compile`` compiles the forward pass (``torch.compile``).
* **DDP.** Under ``torchrun`` each rank trains on its share of the global batch with BatchNorm
  statistics of the global batch (:mod:`ctcnet.distributed`), so N ranks take the steps one
  process would; rank 0 alone validates, logs and saves.
* Unlike the authors' loop, validation puts the model back into train mode afterwards (theirs
  leaves BatchNorm in eval mode from the first evaluation on).
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from .data.datasets import FaceSRDataset
from .distributed import Ranks, agree, data_parallel, join, leave
from .errors import CheckpointError, DiskFullError, TrainingError
from .evaluate import evaluate
from .model import PRESETS, build_model, reference_init_
from .run_folder import RunFolder, disk_errors
from .runtime import grad_scaler_for, inductor_cache_dir, optimize_for_training
from .training_data import load_data, make_loader
from .weights import model_from_checkpoint, read_checkpoint, save_checkpoint, set_rng_state

__all__ = ["DEFAULT_CARVE", "Run", "TrainConfig", "TrainingError", "check_config", "fit", "load_data"]

AUGMENTATIONS = ("none", "reference", "strong")
SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: Validation faces carved from the offline training identities when ``val`` is not given.
DEFAULT_CARVE = 8
#: Settings that decide which samples and updates a run makes: a resume must keep them.
RESUME_FIXED = (
    "preset", "overrides", "data", "val", "seed", "batch_size", "patch_size", "hr_size", "lr",
    "betas", "weight_decay", "schedule", "warmup_steps", "augment", "reference_init",
    "full_size_from_step", "ema_decay",
)  # fmt: skip


def _setting(default: Any = MISSING, help: str = "", factory: Any = MISSING, **cli: Any) -> Any:
    """A :class:`TrainConfig` field: its one default, its help text, and in ``cli`` how
    ``ctcnet train`` spells its flag when not ``--name-with-dashes`` (``flag``, ``choices``,
    ``metavar``, ``required``, ``positive``: an integer above 0, ``also``: extra flags that set a
    value)."""
    return field(default=default, default_factory=factory, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    """Everything that defines a training run; every field is also a ``ctcnet train`` flag.

    Normalised and checked once, when built: ``augment`` becomes one of ``AUGMENTATIONS``
    (``True`` is ``"reference"``, ``False`` ``"none"``), ``val`` a folder, ``"carve:N"`` or
    ``"none"`` (``None``: ``carve:8`` for the offline faces, else ``"none"``), ``betas`` a tuple.
    An invalid setting raises a one-line :class:`TrainingError`.
    """

    preset: str = _setting("reduced", "model preset", choices=tuple(sorted(PRESETS)))
    overrides: dict[str, Any] = _setting(factory=dict, help="change a CTCNetConfig field, e.g. "
                                         "--set use_fsau=false (repeatable)", flag="--set",
                                         metavar="KEY=VALUE")  # fmt: skip
    data: str = _setting("offline-faces", "folder of HR training faces, or offline-faces (built "
                         "by `ctcnet data offline-faces`, in $CTCNET_DATA or the cache)")  # fmt: skip
    val: str | None = _setting(None, "validation folder, carve:N (N faces of whole training "
                               "identities, held out of training) or none; default: carve:8 for "
                               "offline-faces, else none")  # fmt: skip
    val_limit: int = _setting(0, "validate on at most N images (0: all)", metavar="N")
    out: str = _setting("runs/ctcnet", "run folder, e.g. runs/NAME", required=True)
    steps: int = _setting(1000, "total number of optimizer steps", positive=True)
    batch_size: int = _setting(8, "global batch size (split across torchrun ranks)", positive=True)
    patch_size: int | None = _setting(None, "train on random PxP crops (a multiple of 8; default: "
                                      "whole faces)", metavar="P")  # fmt: skip
    full_size_from_step: int | None = _setting(None, "from this step on, train on whole faces",
                                               metavar="STEP")  # fmt: skip
    hr_size: int = _setting(128, "side of the HR training faces")
    lr: float = _setting(2e-4, "Adam learning rate (the peak of a schedule)")
    betas: tuple[float, float] = _setting((0.9, 0.99), "Adam betas", metavar=("B1", "B2"))
    weight_decay: float = _setting(0.0, "Adam weight decay")
    schedule: str = _setting("constant", "constant (the authors') or cosine (to 0 at the last "
                             "step; a resume must keep --steps)", choices=SCHEDULES)  # fmt: skip
    warmup_steps: int = _setting(0, "linear warm-up steps before the schedule")
    ema_decay: float = _setting(0.0, "validate and release an exponential moving average of the "
                                "weights with this decay, e.g. 0.999 (0: off)")  # fmt: skip
    precision: str = _setting("auto", "precision of the forward pass; auto: bf16 where the "
                              "hardware is fast at it, else fp32", choices=PRECISIONS)  # fmt: skip
    checkpointing: bool = _setting(False, "recompute the Transformer blocks and FSAUs in the "
                                   "backward pass instead of keeping their activations (less "
                                   "memory, more time)")  # fmt: skip
    compile: bool = _setting(False, "compile the forward pass with torch.compile (minutes "
                             "before the first step: for long runs)")  # fmt: skip
    seed: int = _setting(123, "seeds initialisation, data order, augmentation and crops")
    augment: str = _setting("reference", "reference: the authors' flip + random resized crop; "
                            "strong: flip, small rotation and zoom, colour jitter",
                            choices=AUGMENTATIONS, also={"--no-augment": "none"})  # fmt: skip
    reference_init: bool = _setting(True, "the authors' N(0, 0.02) initialisation (off: torch's)")
    eval_every: int = _setting(0, "validate every N steps (0: at the end)", metavar="N")
    save_every: int = _setting(500, "write last.pt every N steps (0: at the end)", metavar="N")
    keep_every: int = _setting(0, "keep last.pt as step_N.pt every N steps (0: never)",
                               metavar="N")  # fmt: skip
    workers: int | None = _setting(None, "data-loading processes (default: one per 4 cores, <= 4)")
    device: str | None = _setting(None, "cpu, cuda, cuda:1, mps (default: CUDA, MPS, else CPU)")
    sync_batchnorm: bool = _setting(True, "under torchrun: BatchNorm statistics of the global "
                                    "batch, so that N ranks train as one process")  # fmt: skip
    resume: bool = _setting(False, "continue from OUT/last.pt (refuses changed settings)")
    progress: bool | None = _setting(None, "progress bar (default: when stderr is a terminal)")
    tensorboard: bool = _setting(True, "also log to TensorBoard when it is installed")
    callback: Callable[[int, dict[str, Any]], None] | None = field(
        default=None, repr=False, compare=False,
        metadata={"help": "callback(step, info) after every step; not saved", "cli": False},
    )  # fmt: skip

    def __post_init__(self) -> None:
        if isinstance(self.augment, bool) or self.augment is None:
            self.augment = "reference" if self.augment else "none"
        if self.val is None:
            self.val = f"carve:{DEFAULT_CARVE}" if self.data == "offline-faces" else "none"
        self.betas = tuple(self.betas)
        self.overrides = dict(self.overrides)
        check_config(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy (without the callback), as saved in checkpoints and ``config.json``."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "callback"}
        return {**d, "betas": list(self.betas), "overrides": dict(self.overrides)}


def check_config(cfg: TrainConfig) -> None:
    """Raise a one-line :class:`TrainingError` for an invalid configuration."""
    for name, value, choices in (("schedule", cfg.schedule, SCHEDULES),
                                 ("precision", cfg.precision, PRECISIONS),
                                 ("augment", cfg.augment, AUGMENTATIONS)):  # fmt: skip
        if value not in choices:
            raise TrainingError(f"unknown {name} {value!r}; choose {', '.join(choices)}")
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise TrainingError("steps and batch_size must be positive")
    if not (cfg.lr > 0):
        raise TrainingError(f"lr must be positive, got {cfg.lr}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise TrainingError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}")
    if cfg.eval_every < 0 or cfg.save_every < 0 or cfg.keep_every < 0:
        raise TrainingError("eval_every, save_every and keep_every must be >= 0 (0 = off)")
    for name in ("workers", "full_size_from_step"):
        if (getattr(cfg, name) or 0) < 0:
            raise TrainingError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.val.startswith("carve:") and not (cfg.val[6:].isdigit() and int(cfg.val[6:]) > 0):
        raise TrainingError(f"val {cfg.val!r}: write carve:N with N a positive number")
    try:
        with torch.device("meta"):  # the config only: no memory, no initialisation
            probe = build_model(cfg.preset, **cfg.overrides).config
    except (ValueError, TypeError) as exc:
        raise TrainingError(str(exc)) from None
    m, lo, p = probe.size_multiple, probe.min_input_size, cfg.patch_size or cfg.hr_size
    if cfg.hr_size % m or cfg.hr_size < lo:
        raise TrainingError(f"hr size {cfg.hr_size} must be a multiple of {m} and at least {lo} "
                            "for this model")  # fmt: skip
    if p % m or p > cfg.hr_size or p < lo:
        raise TrainingError(f"patch size {p} must be a multiple of {m} between {lo} (smallest "
                            f"input of this model) and the hr size {cfg.hr_size}")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The run: model, optimizer, EMA, scaler, built once; saved and resumed as one
# ---------------------------------------------------------------------------------------------
class Run:
    """A training run's state, built once; :meth:`save` and :meth:`resume` move it to and from disk.

    ``net`` is the CTCNet itself (checkpoints, the EMA and validation use it), ``forward`` what the
    loop calls (``net``, wrapped for DDP and compiled as asked), ``opt`` Adam, ``scaler`` the loss
    scaler its precision needs, ``ema`` the averaged copy (or None); ``step`` (completed),
    ``best_psnr``, ``last_val`` (the last validation scores) and the clock go into checkpoints."""

    def __init__(self, cfg: TrainConfig, ranks: Ranks) -> None:
        self.cfg, self.device = cfg, ranks.device
        torch.manual_seed(cfg.seed)
        self.net = build_model(cfg.preset, **cfg.overrides)
        if cfg.reference_init:
            reference_init_(self.net)
        try:
            optimize_for_training(self.net.to(self.device), cfg.precision,
                                  checkpointing=cfg.checkpointing)
        except ValueError as exc:
            raise TrainingError(str(exc)) from None
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, betas=cfg.betas,
                                    weight_decay=cfg.weight_decay)  # fmt: skip
        self.scaler = grad_scaler_for(self.net)
        self.ema = None
        if cfg.ema_decay:  # BatchNorm statistics are averaged too: the EMA model is used as is
            self.ema = AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay),
                                     use_buffers=True)  # fmt: skip
        self.forward = data_parallel(self.net.train(), ranks, cfg.sync_batchnorm)
        if cfg.compile:
            if ranks.master:
                print("compiling the forward pass with torch.compile: the first steps take "
                      f"minutes; the compiled code is kept in {inductor_cache_dir()} "
                      "($TORCHINDUCTOR_CACHE_DIR) for later runs", file=sys.stderr, flush=True)
            self.forward = torch.compile(self.forward)
        self.step, self.best_psnr, self.last_val = 0, -math.inf, None
        self.clock = time.time()  # the run's clock: moved back by the seconds of resumed runs
        self._norm_before: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._updating = False

    @property
    def scored(self) -> nn.Module:
        """The weights that validation scores and ``best.pt`` / ``ema.pt`` release."""
        return self.ema.module if self.ema is not None else self.net

    def train_step(self, batch: dict[str, torch.Tensor], lr: float) -> float:
        """One optimizer step on ``batch`` at learning rate ``lr``; returns the loss."""
        for group in self.opt.param_groups:
            group["lr"] = lr
        x = batch["lr_up"].to(self.device, non_blocking=True)
        y = batch["hr"].to(self.device, non_blocking=True)
        self._norm_before = _norm_buffers(self.net)  # put back if this step fails
        loss = F.l1_loss(self.forward(x).float(), y)
        if not torch.isfinite(loss):
            raise TrainingError(f"loss is {loss.item()} at step {self.step + 1}: stopping")
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self._updating = True  # a failure from here on leaves the weights half-updated
        self.scaler.step(self.opt)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.net)
        self.step, self._norm_before, self._updating = self.step + 1, None, False
        return loss.item()

    def validate(self, data: FaceSRDataset, limit: int) -> bool:
        """Score :attr:`scored` (``ctcnet`` protocol); True if it is the best so far."""
        scores = evaluate(self.scored, data, limit=limit).means()
        self.net.train()
        self.last_val = {k: scores[k] for k in ("psnr", "ssim", "bicubic_psnr")}
        improved = self.last_val["psnr"] > self.best_psnr
        self.best_psnr = max(self.best_psnr, self.last_val["psnr"])
        return improved

    def seconds(self) -> float:
        """Seconds of training of the whole run, resumed parts included."""
        return time.time() - self.clock

    def save(self, path: Path, scored: bool = False) -> None:
        """Write everything a resume needs (``last.pt``) or, ``scored``, the validated weights
        (``best.pt``, ``ema.pt``). Never writes non-finite weights; names a full disk."""
        model = self.scored if scored else self.net
        bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise TrainingError(f"non-finite weights ({bad[0]}) after step {self.step}: not saving")
        extra = {"best_psnr": self.best_psnr, "seconds": self.seconds(), "val": self.last_val or {},
                 "train_config": self.cfg.to_dict(),
                 "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                 "ema": self.ema.state_dict() if self.ema is not None and not scored else None}  # fmt: skip
        optimizer = None if scored and self.ema is not None else self.opt
        with disk_errors(path):
            save_checkpoint(path, model, optimizer, step=self.step, extra=extra)

    def save_after_failure(self, exc: BaseException, path: Path) -> None:
        """Write ``path`` at the last completed step after ``exc``, or say why it cannot (a
        full disk: saving again would fail again, and the last good file is intact)."""
        what = "interrupted" if isinstance(exc, KeyboardInterrupt) else type(exc).__name__
        if isinstance(exc, DiskFullError):
            return
        if self._updating:  # the optimizer was half-way through changing the weights
            print(f"{what} during the weight update of step {self.step + 1}: {path} not "
                  "rewritten", file=sys.stderr)  # fmt: skip
            return
        with torch.no_grad():
            for buf, value in self._norm_before or []:
                buf.copy_(value)
        try:
            self.save(path)
        except TrainingError as err:
            print(f"{what}: {err}", file=sys.stderr)
            return
        print(f"{what}: saved {path} at step {self.step}", file=sys.stderr)

    def resume(self, path: Path) -> None:
        """Load ``last.pt`` into the model, optimizer, scaler, EMA and RNGs, after checking that
        its settings continue this run."""
        if not path.is_file():
            raise TrainingError(f"cannot resume: {path} does not exist")
        try:
            ckpt = read_checkpoint(path)
            restored = model_from_checkpoint(ckpt, source=f"checkpoint {path}")
        except CheckpointError as exc:
            raise TrainingError(str(exc)) from None
        extra = ckpt.get("extra") or {}
        _check_resume(self.cfg, extra.get("train_config", {}), int(ckpt["step"]), path)
        if restored.config != self.net.config:
            raise TrainingError(f"cannot resume: {path} holds a different model config")
        if ckpt.get("optimizer") is None:
            raise TrainingError(f"cannot resume: {path} has no optimizer state")
        self.net.load_state_dict(restored.state_dict())
        self.opt.load_state_dict(ckpt["optimizer"])
        if extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(extra["ema"])
        if ckpt.get("rng"):
            set_rng_state(ckpt["rng"])
        self.step, self.best_psnr = int(ckpt["step"]), float(extra.get("best_psnr", -math.inf))
        self.clock -= extra.get("seconds", 0.0)


def _flag(name: str) -> str:
    """How ``ctcnet train`` spells the flag of the :class:`TrainConfig` field ``name``."""
    meta = {f.name: f.metadata for f in fields(TrainConfig)}[name]
    return meta.get("flag", "--" + name.replace("_", "-"))


def _check_resume(cfg: TrainConfig, saved: dict[str, Any], step: int, path: Path) -> None:
    """Refuse a resume whose settings would not continue the saved run, naming the setting."""
    known = {f.name for f in fields(TrainConfig)}
    try:  # normalised as this version normalises: a run saved by an older one compares fairly
        before = TrainConfig(**{k: v for k, v in saved.items() if k in known})
    except (TrainingError, TypeError) as exc:
        raise TrainingError(f"cannot resume: {path} holds settings this version refuses: {exc}") from None
    fixed = RESUME_FIXED + (("steps",) if cfg.schedule == "cosine" else ())
    for name in fixed:
        was, now = getattr(before, name), getattr(cfg, name)
        if name == "val" and not (was.startswith("carve:") or now.startswith("carve:")):
            continue  # only a carved validation set changes what is trained on
        if was != now:
            why = "; the cosine schedule's learning rate depends on it" if name == "steps" else ""
            raise TrainingError(
                f"cannot resume: {name} ({_flag(name)}) is {now!r} but {path} was "
                f"trained with {was!r}{why}; use the same value or a new --out"
            )
    if cfg.steps < step:
        raise TrainingError(
            f"cannot resume: {path} is already at step {step}, beyond --steps {cfg.steps}"
        )


def _lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return cfg.lr


def _norm_buffers(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(buffer, copy) of the BatchNorm statistics: a training forward pass updates them before
    the step completes, so a step that fails half-way must put them back."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    return [(buf, buf.detach().clone()) for m in norms for buf in m.buffers()]


class _StopRequest:
    """Ctrl-C handling for the loop: the first SIGINT asks to stop after the current step, a
    second one stops at once (a ``KeyboardInterrupt`` wherever the loop is); while
    :attr:`saving`, further SIGINTs are ignored so that ``last.pt`` is always written."""

    requested = saving = False

    def __call__(self, signum: int, frame: Any) -> None:  # the SIGINT handler
        if self.requested and not self.saving:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def on_sigint(self) -> Iterator[None]:
        """Install the handler (only over Python's default one, in the main thread)."""
        mine = (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler)  # fmt: skip
        previous = signal.signal(signal.SIGINT, self) if mine else None
        try:
            yield
        finally:
            if mine:
                signal.signal(signal.SIGINT, previous)


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
        Invalid settings or data (before step 1), a run folder in use, a non-finite loss (naming
        the step), a full disk (naming the file), a ``last.pt`` that cannot be resumed. This and
        any other exception (``KeyboardInterrupt`` too) after saving the last completed step.
    """
    cfg = replace(cfg)  # checked again: a field may have been set since the config was built
    ranks = join(cfg.device, cfg.batch_size)
    train_set, val_set = load_data(cfg)
    run, folder = Run(cfg, ranks), RunFolder(cfg.out)
    if cfg.resume:
        run.resume(folder.last)
    start, losses = run.step, []
    loader = make_loader(cfg, train_set, start, ranks)
    show = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
    bar = tqdm(total=cfg.steps, initial=start, disable=not (show and ranks.master), desc="train")
    stop = _StopRequest()
    with stop.on_sigint():
        try:
            if ranks.master:
                folder.claim(cfg.to_dict(), start if cfg.resume else -1, cfg.tensorboard)
            for step, batch in zip(range(start, cfg.steps), loader):
                lr = _lr_at(cfg, step)
                loss = run.train_step(batch, lr)
                loss, stop.requested = agree(loss, stop.requested, ranks.device)
                losses.append((step, loss))
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
                row = {"step": run.step, "loss": loss, "lr": lr, "time": round(run.seconds(), 3)}
                if ranks.master and val_set is not None and _due(run.step, cfg.eval_every, cfg.steps):
                    if run.validate(val_set, cfg.val_limit):
                        run.save(folder.best, scored=True)
                    v = run.last_val
                    row.update(val_psnr=v["psnr"], val_ssim=v["ssim"], bicubic_psnr=v["bicubic_psnr"])
                    _say(f"step {run.step}: loss {loss:.4f}, val PSNR {v['psnr']:.2f} dB SSIM "
                         f"{v['ssim']:.4f} (bicubic {v['bicubic_psnr']:.2f} dB)", show)  # fmt: skip
                if ranks.master:
                    folder.log(row)
                    keep = bool(cfg.keep_every) and run.step % cfg.keep_every == 0
                    if keep or _due(run.step, cfg.save_every, cfg.steps):
                        run.save(folder.last)
                    if keep:
                        folder.keep(run.step)
                if cfg.callback is not None:
                    cfg.callback(run.step, {"loss": loss, "lr": lr, "val": run.last_val})
                if stop.requested:
                    raise KeyboardInterrupt
            if ranks.master and run.ema is not None:  # the averaged weights alone, to release
                run.save(folder.ema, scored=True)
        except BaseException as exc:
            stop.saving = True  # a further Ctrl-C must not cut the save short
            if ranks.master and run.step > start:
                run.save_after_failure(exc, folder.last)
            raise
        finally:
            bar.close()
            folder.release()
            leave(ranks)
    return {"steps": cfg.steps, "losses": losses, "best_psnr": run.best_psnr,
            "last_val": run.last_val, "out": str(folder.path), "seconds": run.seconds(),
            "precision": getattr(run.net, "precision", cfg.precision)}  # fmt: skip


def _due(step: int, every: int, last: int) -> bool:
    return step == last or bool(every and step % every == 0)


def _say(msg: str, show: bool) -> None:
    """A progress line: beside tqdm's bar when shown, else on stdout (not as an error block)."""
    if show:
        tqdm.write(msg, file=sys.stderr)
    else:
        print(msg, flush=True)

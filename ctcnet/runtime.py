"""Running CTCNet: device choice, precision and memory format, inference-only speed-ups and
activation checkpointing.

Precision is a property of the model you get back, not of the code that calls it::

    fast = ctcnet.optimize_for_inference(model, precision="auto")     # a copy, eval only
    net = ctcnet.optimize_for_training(model, precision="auto")       # the same model, in place
    fast.precision, fast.precision_reason                              # what "auto" chose and why

Both models take and return float32 tensors; their weights stay float32 (the master copy that the
optimizer updates); inside ``forward`` the matrix products run under ``torch.autocast`` in the
chosen precision.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import getpass
import logging
import os
import tempfile
import types
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils.checkpoint import checkpoint

from .errors import UsageError
from .model import CTCNet, HourglassConv

__all__ = [
    "PRECISIONS",
    "pick_device",
    "autocast",
    "cpu_has_fast_bf16",
    "choose_precision",
    "resolve_precision",
    "optimize_for_inference",
    "optimize_for_training",
    "grad_scaler_for",
    "fold_batchnorm",
    "enable_checkpointing",
    "disable_checkpointing",
    "inductor_cache_dir",
]

logger = logging.getLogger(__name__)


def inductor_cache_dir() -> str:
    """The folder where ``torch.compile`` (inductor) keeps compiled code between processes:
    ``$TORCHINDUCTOR_CACHE_DIR``, else torch's default (``<temp dir>/torchinductor_<user>``).

    A later process that compiles the same graphs reads them from there instead of compiling
    again (benchmarks/RESULTS.md measures how much of the first call that saves)."""
    configured = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if configured:
        return configured
    try:
        # deferred: torch's inductor is only needed here; private, and moved between releases
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        return default_cache_dir()
    except ImportError:  # what it computes in the releases that have it
        return os.path.join(tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}")

#: The precisions a model can run in; ``"auto"`` is accepted wherever one is chosen.
PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_DEFAULT_CHECKPOINTED = ("TransformerBlock", "FSAU")


def pick_device(preference: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``preference`` if given, else ``$CTCNET_DEVICE``, else CUDA, then
    Apple MPS, then CPU. Raises a one-line :class:`~ctcnet.errors.UsageError` (a ``ValueError``)
    for a device that is not available."""
    choice = preference if preference is not None else os.environ.get("CTCNET_DEVICE") or None
    if choice is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(choice)
    except RuntimeError as exc:
        raise UsageError(f"unknown device {choice!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {choice!r} requested but CUDA is not available on this machine")
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise UsageError(f"device {choice!r} requested but MPS is not available on this machine")
    return device


def autocast(device: torch.device | str, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """A context for ``precision`` in ``{"fp32", "bf16", "fp16"}`` on ``device``.

    Mixed precision is offered on CUDA (bf16, fp16) and on CPU (bf16 only); fp32 is a no-op.
    Models from :func:`optimize_for_inference` / :func:`optimize_for_training` carry their
    precision themselves and need no such context.
    """
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in _DTYPES:
        raise UsageError(f"unknown precision {precision!r}; choose fp32, bf16 or fp16")
    if device.type == "cpu" and precision == "fp16":
        raise UsageError("fp16 autocast is for CUDA; use bf16 on the CPU")
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


# --------------------------------------------------------------------------------------------
# Choosing a precision
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    # torch 2.x exposes no public "does this CPU do bf16 natively" probe:
    # torch.backends.cpu.get_cpu_capability() stops at "AVX512", and mkldnn's bf16 check is also
    # true on AVX512 CPUs that only emulate bf16 (slower than fp32 there). The kernel's flag list
    # says it directly. Off Linux there is none, and "auto" stays fp32 on the CPU.
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (x86 ``avx512_bf16`` or ``amx_bf16``), so that
    bf16 matrix products run faster than fp32 ones rather than being emulated."""
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def _cuda_capability(device: torch.device) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device)


def choose_precision(device: torch.device | str, training: bool = False) -> tuple[str, str]:
    """What ``precision="auto"`` means on ``device``: ``(precision, reason)``.

    * CPU: bf16 if it has native bf16 (:func:`cpu_has_fast_bf16`), else fp32.
    * CUDA: bf16 from compute capability 8.0 (Ampere) on; fp16 on 7.x (Volta/Turing tensor cores;
      for training together with the dynamic loss scaling of :func:`grad_scaler_for`); fp32 below.
    * Anything else (MPS, ...): fp32.
    """
    device = torch.device(device)
    if device.type == "cpu":
        if cpu_has_fast_bf16():
            return "bf16", "the CPU has native bf16 (avx512_bf16/amx_bf16)"
        return "fp32", "the CPU has no native bf16 (no avx512_bf16/amx_bf16 flag)"
    if device.type == "cuda":
        major, minor = _cuda_capability(device)
        cc = f"compute capability {major}.{minor}"
        if major >= 8:
            return "bf16", f"CUDA {cc} has bf16 tensor cores"
        if major >= 7:
            scaled = ", with loss scaling" if training else ""
            return "fp16", f"CUDA {cc} has fp16 but no bf16 tensor cores{scaled}"
        return "fp32", f"CUDA {cc} has no tensor cores"
    return "fp32", f"no mixed precision chosen automatically on {device.type}"


def resolve_precision(
    precision: str, device: torch.device | str, training: bool = False
) -> tuple[str, str]:
    """``(precision, reason)`` for a requested ``precision`` in ``{"auto", "fp32", "bf16",
    "fp16"}`` on ``device``; a one-line :class:`~ctcnet.errors.UsageError` (a ``ValueError``)
    for an unknown name or fp16 on the CPU."""
    device = torch.device(device)
    if precision == "auto":
        return choose_precision(device, training)
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose auto, fp32, bf16 or fp16")
    if precision == "fp16" and device.type == "cpu":
        raise UsageError("fp16 is for CUDA; use bf16 (or auto) on the CPU")
    return precision, "requested"


def _model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _precision_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    dtype = _DTYPES.get(self.precision)
    if dtype is None:
        return type(self).forward(self, x, *args, **kwargs)
    with torch.autocast(device_type=x.device.type, dtype=dtype):
        y = type(self).forward(self, x, *args, **kwargs)
    # Callers (metrics, losses, image writers) get the dtype they passed in.
    return y.to(x.dtype)


def _set_precision(model: nn.Module, precision: str, reason: str, channels_last: bool) -> None:
    # An instance attribute, like enable_checkpointing: parameters and state_dict keys are
    # untouched (checkpoints stay interchangeable), and copy.deepcopy (EMA copies) rebinds it.
    model.forward = types.MethodType(_precision_forward, model)
    model.precision = precision
    model.precision_reason = reason
    model.channels_last = channels_last
    logger.info("ctcnet: running in %s (%s)%s", precision, reason,
                ", channels-last" if channels_last else "")


def _default_channels_last(device: torch.device) -> bool:
    # Measured faster on CPU (oneDNN) and CUDA (cuDNN NHWC kernels) in benchmarks/RESULTS.md.
    return device.type in ("cpu", "cuda")


def grad_scaler_for(model: nn.Module) -> torch.amp.GradScaler:
    """The loss scaler a training loop should use with ``model``: the enabled one that
    :func:`optimize_for_training` attached for fp16, else a disabled one (whose ``scale``,
    ``step`` and ``update`` are plain pass-throughs), so one loop serves every precision."""
    scaler = getattr(model, "grad_scaler", None)
    if scaler is None:
        scaler = torch.amp.GradScaler(_model_device(model).type, enabled=False)
    return scaler


# --------------------------------------------------------------------------------------------
# Inference and training forms
# --------------------------------------------------------------------------------------------


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold, in place, every hourglass BatchNorm into the convolution before it (eval only):
    ``conv`` becomes ``torch.nn.utils.fusion.fuse_conv_bn_eval(conv, norm)`` and ``norm`` an
    ``nn.Identity``, so each unit does one convolution with bias instead of conv + BatchNorm.
    Raises a one-line ``ValueError`` for a model in train mode (its BatchNorm would normalise with
    batch statistics, which no fixed weights can reproduce)."""
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (call model.eval() first)")
    for module in model.modules():
        if isinstance(module, HourglassConv) and isinstance(module.norm, nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(module.conv, module.norm)
            module.norm = nn.Identity()
    return model


def optimize_for_inference(
    model: CTCNet, precision: str = "fp32", channels_last: bool | None = None
) -> CTCNet:
    """A copy of ``model`` in its fastest eval-only form: BatchNorm folded into the preceding
    convolutions, no autograd state, channels-last memory format (default on CPU and CUDA,
    measured faster in ``benchmarks/RESULTS.md``) and ``precision`` (``"fp32"``, ``"bf16"``,
    ``"fp16"`` on CUDA, or ``"auto"``: see :func:`choose_precision`; the copy's ``precision`` and
    ``precision_reason`` attributes say what was chosen, and it is logged at INFO level).

    In fp32 the result matches the eager model within 1e-4; in bf16 within 0.02 on the
    ``[-1, 1]`` scale (tested on every preset). Inputs may stay float32 in the default layout;
    outputs are float32. In bf16/fp16 the copy stores its convolution weights already in that
    precision (the same numbers autocast would use, without casting them on every call); the
    original model is left untouched, and the copy can no longer be trained.

    ``torch.compile(fast)`` is left to the caller (opt-in): on a shared 2-core CPU its first call
    did not finish within 15 minutes for ``official`` (``benchmarks/RESULTS.md``)."""
    fast = copy.deepcopy(model).eval()
    device = _model_device(fast)
    chosen, reason = resolve_precision(precision, device, training=False)
    fold_batchnorm(fast)
    for parameter in fast.parameters():
        parameter.requires_grad_(False)
    if channels_last is None:
        channels_last = _default_channels_last(device)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    if chosen in _DTYPES:
        _precast_matmul_weights(fast, _DTYPES[chosen])
    _set_precision(fast, chosen, reason, channels_last)
    return fast


def _precast_matmul_weights(model: nn.Module, dtype: torch.dtype) -> None:
    # Autocast casts every convolution weight to ``dtype`` on every call (its cast cache only
    # keeps weights that require grad). Storing them cast gives the same numbers without the
    # copies (benchmarks/bench_model.py compares it with the ``bf16-autocast`` variant; numbers in
    # benchmarks/RESULTS.md). Element-wise parameters (PReLU, LayerNorm, temperatures) stay
    # float32, as autocast runs those ops in float32 or in their input's precision anyway.
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            for name in ("weight", "bias"):
                tensor = getattr(module, name)
                if tensor is not None:
                    tensor.data = tensor.data.to(dtype)


def optimize_for_training(
    model: CTCNet,
    precision: str = "auto",
    channels_last: bool | None = None,
    checkpointing: bool | Iterable[str] = False,
) -> CTCNet:
    """Prepare ``model`` **in place** for training and return it: ``forward`` runs under
    autocast in ``precision`` (``"auto"``: see :func:`choose_precision`) with float32 master
    weights, the weights go channels-last (default on CPU and CUDA), and with ``checkpointing``
    (``True`` for TransformerBlock + FSAU, or an iterable of class names) activation
    checkpointing trades recomputation for memory (:func:`enable_checkpointing`).

    Parameters, buffers and ``state_dict`` keys do not change, so optimizers, checkpoints and
    EMA copies work as before. ``model.precision`` / ``model.precision_reason`` say what was
    chosen; for fp16 ``model.grad_scaler`` holds the loss scaler the loop must use (get it with
    :func:`grad_scaler_for`, which gives a disabled one otherwise). Call it before building the
    optimizer; the model's train/eval mode is not changed."""
    device = _model_device(model)
    chosen, reason = resolve_precision(precision, device, training=True)
    if channels_last is None:
        channels_last = _default_channels_last(device)
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if checkpointing:
        enable_checkpointing(model, _DEFAULT_CHECKPOINTED if checkpointing is True else checkpointing)
    _set_precision(model, chosen, reason, channels_last)
    model.grad_scaler = torch.amp.GradScaler(device.type, enabled=chosen == "fp16")
    return model


# --------------------------------------------------------------------------------------------
# Activation checkpointing
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _keep_norm_buffers(module: nn.Module) -> Iterator[None]:
    # The recomputation in the backward pass must not update BatchNorm running statistics a
    # second time (in train mode BatchNorm normalises with batch statistics, so the recomputed
    # values are the same either way).
    saved = [
        (buf, buf.clone())
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for buf in m.buffers()
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def _checkpointed_forward(self, *args, **kwargs):
    if torch.is_grad_enabled():
        return checkpoint(
            type(self).forward,
            self,
            *args,
            use_reentrant=False,
            context_fn=lambda: (contextlib.nullcontext(), _keep_norm_buffers(self)),
            **kwargs,
        )
    return type(self).forward(self, *args, **kwargs)


def _is_checkpointed(module: nn.Module) -> bool:
    forward = module.__dict__.get("forward")
    return getattr(forward, "__func__", None) is _checkpointed_forward


def enable_checkpointing(
    model: nn.Module, modules: Iterable[str] = _DEFAULT_CHECKPOINTED
) -> list[str]:
    """Activation checkpointing for training with less memory: every submodule whose class name is
    in ``modules`` (e.g. ``"TransformerBlock"``, ``"FSAU"``, ``"LocalBlock"``, ``"GDFN"``) keeps
    only its input during the forward pass and recomputes its intermediates in the backward pass
    (``torch.utils.checkpoint``, non-reentrant). Same function, same parameters and state_dict
    keys; it only costs the recomputation (measured in ``benchmarks/RESULTS.md``). Only active
    while autograd records; inference is unaffected. Returns the names of the wrapped modules.
    Undo with :func:`disable_checkpointing`."""
    wanted = set(modules)
    known = {type(m).__name__ for m in model.modules()}
    unknown = wanted - known
    if unknown:
        raise ValueError(f"no module of class {sorted(unknown)} in this model; have {sorted(known)}")
    wrapped = []
    for name, module in model.named_modules():
        if type(module).__name__ in wanted:
            # An instance attribute, so parameters and state_dict keys are untouched and
            # copy.deepcopy rebinds it to the copy.
            module.forward = types.MethodType(_checkpointed_forward, module)
            wrapped.append(name)
    return wrapped


def disable_checkpointing(model: nn.Module) -> None:
    """Remove what :func:`enable_checkpointing` added (and nothing else: a precision set by
    :func:`optimize_for_training` stays)."""
    for module in model.modules():
        if _is_checkpointed(module):
            del module.forward

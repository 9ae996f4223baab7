"""Running CTCNet: device choice, mixed precision, inference-only speed-ups and attention maps."""

from __future__ import annotations

import contextlib
import copy
import os
import types
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .model import FSAU, MDTA, CTCNet, HourglassConv

__all__ = [
    "pick_device",
    "autocast",
    "optimize_for_inference",
    "attention_maps",
    "fold_batchnorm",
    "enable_checkpointing",
    "disable_checkpointing",
]


def pick_device(preference: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``preference`` if given, else ``$CTCNET_DEVICE``, else CUDA, then
    Apple MPS, then CPU. Raises a one-line ``ValueError`` for a device that is not available."""
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
        raise ValueError(f"unknown device {choice!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {choice!r} requested but CUDA is not available on this machine")
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ValueError(f"device {choice!r} requested but MPS is not available on this machine")
    return device


def autocast(device: torch.device | str, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """A context for ``precision`` in ``{"fp32", "bf16", "fp16"}`` on ``device``.

    Mixed precision is offered on CUDA (bf16, fp16) and on CPU (bf16 only); fp32 is a no-op.
    """
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise ValueError(f"unknown precision {precision!r}; choose fp32, bf16 or fp16")
    if device.type == "cpu" and precision == "fp16":
        raise ValueError("fp16 autocast is for CUDA; use bf16 on the CPU")
    return torch.autocast(device_type=device.type, dtype=dtypes[precision])


class _FoldedHourglassConv(nn.Module):
    """An :class:`HourglassConv` whose BatchNorm is folded into the convolution (eval only)."""

    def __init__(self, unit: HourglassConv) -> None:
        super().__init__()
        self.upsample = unit.upsample
        conv, norm = unit.conv, unit.norm
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        self.conv = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, bias=True
        ).to(conv.weight.device, conv.weight.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight * scale[:, None, None, None])
            self.conv.bias.copy_(norm.bias - norm.running_mean * scale)
        self.act = unit.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.act(self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect")))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Replace, in place, every hourglass conv + BatchNorm by one conv with bias (eval only)."""
    for name, child in list(model.named_children()):
        if isinstance(child, HourglassConv):
            setattr(model, name, _FoldedHourglassConv(child))
        else:
            fold_batchnorm(child)
    return model


def optimize_for_inference(model: CTCNet, channels_last: bool | None = None) -> CTCNet:
    """A copy of ``model`` in its fastest eval-only form: BatchNorm folded into the preceding
    convolutions, no autograd state, and channels-last memory format (default on; measured faster
    on CPU and CUDA in ``benchmarks/RESULTS.md``). The result matches the eager
    model within 1e-4 and can no longer be trained. Inputs may stay in the default layout."""
    fast = copy.deepcopy(model).eval()
    fold_batchnorm(fast)
    for parameter in fast.parameters():
        parameter.requires_grad_(False)
    device = next(fast.parameters()).device
    if channels_last is None:
        channels_last = device.type in ("cpu", "cuda")
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return fast


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


def enable_checkpointing(
    model: nn.Module, modules: Iterable[str] = ("TransformerBlock", "FSAU")
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
    """Remove what :func:`enable_checkpointing` added."""
    for module in model.modules():
        if "forward" in module.__dict__:
            del module.forward


@contextlib.contextmanager
def _taps(model: nn.Module, fsau: bool, mdta: bool) -> Iterator[dict[str, torch.Tensor]]:
    found: dict[str, torch.Tensor] = {}
    handles = []

    def keep(name: str):
        def hook(_module, _inputs, output):
            found[name] = output.detach()

        return hook

    for name, module in model.named_modules():
        if fsau and isinstance(module, FSAU):
            handles.append(module.map_tap.register_forward_hook(keep(name)))
        if mdta and isinstance(module, MDTA):
            handles.append(module.attention_tap.register_forward_hook(keep(name)))
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()


def attention_maps(
    model: CTCNet, x: torch.Tensor, fsau: bool = True, mdta: bool = True
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``model`` on ``x`` and return ``(output, maps)``.

    ``maps`` is keyed by module path: FSAU spatial maps ``(N, 1, H, W)`` in ``(0, 1)`` (e.g.
    ``"encoder.0.fsau"``) and MDTA channel-attention matrices ``(N, heads, C/h, C/h)`` whose
    rows sum to 1 (e.g. ``"decoder.2.transformer.0.attn"``). The model runs in eval mode (so
    BatchNorm uses, and does not update, its running statistics) and is returned to its previous
    mode. Nothing is stored on the modules: temporary hooks are removed before returning.
    """
    was_training = model.training
    model.eval()
    try:
        with _taps(model, fsau, mdta) as found, torch.no_grad():
            output = model(x)
    finally:
        model.train(was_training)
    return output, dict(found)

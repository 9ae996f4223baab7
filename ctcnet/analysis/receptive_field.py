"""Receptive fields of CTCNet: theoretical (kernel/stride arithmetic) and effective (gradients).

* :func:`theoretical_receptive_field` applies the usual receptive-field recurrence
  (Araujo, Norris & Sim, "Computing receptive fields of convolutional neural networks",
  Distill 2019) to the *convolutional* path of CTCNet. It is an upper bound on the local
  support; the true receptive field is the whole image as soon as one global operator runs
  (every channel attention's global average pool and every MDTA, whose ``C x C`` attention is
  built from inner products over all pixels).
* :func:`effective_receptive_field` measures the effective receptive field of Luo, Li, Urtasun &
  Zemel ("Understanding the effective receptive field in deep convolutional neural networks",
  NeurIPS 2016): the mean absolute gradient of one output pixel with respect to the input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..model import (
    FEU,
    FRM,
    FSAU,
    GDFN,
    LGCM,
    MDTA,
    CTCNet,
    CTCNetConfig,
    Downsample,
    Hourglass,
    HourglassConv,
    LocalBlock,
    ResidualUnit,
    TransformerBlock,
    Upsample,
)

__all__ = [
    "theoretical_receptive_field",
    "ERFResult",
    "effective_receptive_field",
    "erf_radius",
]


# --------------------------------------------------------------------------------------------
# Theoretical receptive field
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RF:
    """Receptive field ``size`` (input pixels) and ``jump`` (input pixels between neighbouring
    positions of this feature map) of one tensor."""

    size: Fraction
    jump: Fraction
    global_context: bool = False

    def conv(self, k: int, stride: int = 1, dilation: int = 1) -> _RF:
        return _RF(self.size + (k - 1) * dilation * self.jump, self.jump * stride,
                   self.global_context)

    def conv_transpose(self, k: int, stride: int) -> _RF:
        # each output of a transposed conv sees ceil(k / stride) input positions per axis
        taps = math.ceil(k / stride)
        return _RF(self.size + (taps - 1) * self.jump, self.jump / stride, self.global_context)

    def upsample(self, factor: int, taps: int = 1) -> _RF:
        # nearest: one input tap per output; bilinear: two
        return _RF(self.size + (taps - 1) * self.jump, self.jump / factor, self.global_context)

    def globalised(self) -> _RF:
        return _RF(self.size, self.jump, True)


def _max(*fields: _RF) -> _RF:
    return _RF(max(f.size for f in fields), min(f.jump for f in fields),
               any(f.global_context for f in fields))


def _k(conv: nn.Module) -> int:
    return conv.kernel_size[0]


def _s(conv: nn.Module) -> int:
    return conv.stride[0]


def _rf_module(m: nn.Module, r: _RF) -> _RF:
    """RF after module ``m`` (only the classes of :mod:`ctcnet.model` are understood)."""
    if isinstance(m, nn.Conv2d):
        return r.conv(_k(m), _s(m))
    if isinstance(m, nn.ConvTranspose2d):
        return r.conv_transpose(_k(m), _s(m))
    if isinstance(m, ResidualUnit):  # a*x + b*conv(PReLU(conv(x)))
        return _max(r, _rf_module(m.conv_expand, _rf_module(m.conv_reduce, r)))
    if isinstance(m, LocalBlock):  # RU, RU, 1x1 fuse, CA (global), 3x3
        r1 = _rf_module(m.unit1, r)
        r2 = _rf_module(m.unit2, r1)
        f = _rf_module(m.fuse, _max(r1, r2)).globalised()
        return _max(r, _rf_module(m.conv_out, f))
    if isinstance(m, HourglassConv):
        if m.upsample:
            r = r.upsample(2)
        return r.conv(_k(m.conv), _s(m.conv))
    if isinstance(m, Hourglass):
        skipped = []
        for skip, down in zip(m.skips, m.downs):
            skipped.append(_rf_module(skip, r))
            r = _rf_module(down, r)
        r = _rf_module(m.bottom, r)
        for level in range(len(m.ups) - 1, -1, -1):
            r = _max(_rf_module(m.ups[level], r), skipped[level])
        return r
    if isinstance(m, FSAU):  # a * sigmoid(conv3x3(CA(HG(a)) + proj(a)))
        h = _max(_rf_module(m.hourglass, r).globalised(), r)
        return _max(r, _rf_module(m.to_map, h))
    if isinstance(m, MDTA):  # 1x1, depth-wise 3x3, channel attention (global), 1x1
        return _rf_module(m.qkv_dwconv, r).globalised()
    if isinstance(m, GDFN):
        return _rf_module(m.dwconv, r)
    if isinstance(m, TransformerBlock):
        r = _max(r, _rf_module(m.attn, r))
        return _max(r, _rf_module(m.ffn, r))
    if isinstance(m, LGCM):
        y = _rf_module(m.local_in, r)
        if m.fsau is not None:
            y = _rf_module(m.fsau, y)
        y = _rf_module(m.local_out, y)
        if m.transformer is not None:
            for block in m.transformer:
                y = _rf_module(block, y)
        return _max(y, r)
    if isinstance(m, FEU):
        low = r.conv(2, 2)  # 2x2 average pool
        up_low = low.upsample(2, taps=2)  # bilinear back to full size
        high = _max(r, up_low)
        low1 = _rf_module(m.low_branch, low)
        high1 = _rf_module(m.high_branch, high)
        z = _max(low1.upsample(2, taps=2), high1)
        y_high = _rf_module(m.high_branch, z)
        y_low = _rf_module(m.low_branch, low1).upsample(2, taps=2)
        return _max(_max(y_low, y_high), r)
    if isinstance(m, FRM):
        a = _rf_module(m.local_in, r)
        if m.fsau is not None:
            a = _rf_module(m.fsau, a)
        a = _rf_module(m.local_mid, a)
        return _max(_rf_module(m.local_mid, _rf_module(m.feu, a)), r)
    if isinstance(m, (Downsample, Upsample)):
        return _rf_module(m.conv, _rf_module(m.resample, r))
    if isinstance(m, nn.Sequential):
        for child in m:
            r = _rf_module(child, r)
        return r
    raise TypeError(f"no receptive-field rule for {type(m).__name__}")


def theoretical_receptive_field(model_or_config: CTCNet | CTCNetConfig | str) -> pd.DataFrame:
    """Theoretical receptive field of every stage of CTCNet's convolutional path.

    The recurrence ``r_out = r_in + (k - 1) * j_in``, ``j_out = j_in * s`` (Araujo et al.,
    Distill 2019) is applied to every tensor of the forward pass, taking the maximum over the
    branches that are added or concatenated (residual skips, hourglass levels, MFFU inputs).

    Counted: every convolution with its kernel and stride (3x3 convs of the residual units and
    local blocks, 1x1 convs, the hourglass convs at their strides, the depth-wise 3x3 convs of
    MDTA and GDFN, down-sampling convs), transposed convolutions (a ``k x k`` stride-``s``
    transposed conv sees ``ceil(k/s)`` input positions per axis), nearest up-sampling (1 tap),
    bilinear up-sampling in FEU (2 taps) and the FEU's 2x2 average pool.

    Not counted: the global operators. Every channel attention (SE-style global average pool)
    and every MDTA (channel attention whose ``C x C`` matrix is a function of all pixels) makes
    each output depend on every input pixel, so the **true receptive field is the whole image**
    from the first local block on; the column ``global_context`` marks where that has happened.
    The numbers are therefore the reach of the *local* convolutional path only, and an upper
    bound (zero padding and alignment of strided grids are ignored).

    Parameters
    ----------
    model_or_config : CTCNet, CTCNetConfig or preset name

    Returns
    -------
    pandas.DataFrame
        One row per stage output in forward order (``head``, ``encoder.0``, ``downsample.0``,
        ..., ``decoder.2``, ``tail``) with ``stage``, ``scale`` (feature-map resolution relative
        to the input, e.g. 0.125), ``jump`` (input pixels per feature pixel), ``rf`` (side of the
        square theoretical receptive field in input pixels) and ``global_context``.
    """
    if isinstance(model_or_config, str):
        from ..model import PRESETS

        model_or_config = PRESETS[model_or_config]
    if isinstance(model_or_config, CTCNetConfig):
        with torch.device("meta"):
            model = CTCNet(model_or_config)
    else:
        model = model_or_config
    rows = []

    def log(stage: str, r: _RF) -> _RF:
        rows.append({"stage": stage, "scale": float(1 / r.jump), "jump": float(r.jump),
                     "rf": float(r.size), "global_context": r.global_context})
        return r

    r0 = _RF(Fraction(1), Fraction(1))
    x = log("head", _rf_module(model.head, r0))
    e1 = log("encoder.0", _rf_module(model.encoder[0], x))
    x = log("downsample.0", _rf_module(model.downsample[0], e1))
    e2 = log("encoder.1", _rf_module(model.encoder[1], x))
    x = log("downsample.1", _rf_module(model.downsample[1], e2))
    e3 = log("encoder.2", _rf_module(model.encoder[2], x))
    y = log("downsample.2", _rf_module(model.downsample[2], e3))
    if len(model.bottleneck):
        y = log("bottleneck", _rf_module(model.bottleneck, y))
    rs = model.resampler
    others = (
        [
            lambda: [_rf_module(rs.e2_down, e2), _rf_module(rs.e1_down, _rf_module(rs.e1_down, e1))],
            lambda: [_rf_module(rs.e1_down, e1), _rf_module(rs.e3_up, e3)],
            lambda: [_rf_module(rs.e2_up, e2), _rf_module(rs.e3_up2, _rf_module(rs.e3_up2, e3))],
        ]
        if rs is not None
        else [lambda: [], lambda: [], lambda: []]
    )
    for i, same in enumerate((e3, e2, e1)):
        y = log(f"upsample.{i}", _rf_module(model.upsample[i], y))
        fused = _max(y, same, *others[i]())
        if model.fusion is not None:
            fused = _rf_module(model.fusion[i].fuse, fused).globalised()  # + CA
        y = log(f"fusion.{i}" if model.fusion is not None else f"skip.{i}", fused)
        y = log(f"decoder.{i}", _rf_module(model.decoder[i], y))
    log("tail", _rf_module(model.tail, y))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Effective receptive field
# --------------------------------------------------------------------------------------------


@dataclass
class ERFResult:
    """Effective receptive field of one output pixel.

    Attributes
    ----------
    map : numpy.ndarray
        ``(H, W)`` mean over inputs of ``|d y_p / d x|`` summed over input channels, normalised to
        sum 1 (``y_p`` = output pixel ``p`` summed over output channels).
    pixel : (int, int)
        The output pixel ``p`` (row, column).
    radii : dict
        ``{0.5: r50, 0.9: r90, 0.99: r99, 1.0: support radius}``: the smallest Chebyshev radius
        (half side of a square centred at ``pixel``) holding that fraction of the mass.
    nonzero_fraction : float
        Fraction of input pixels with a non-zero mean gradient.
    n_inputs : int
    residual : bool
        Whether the gradient is of the residual branch ``output - input``.
    """

    map: np.ndarray
    pixel: tuple[int, int]
    radii: dict[float, float]
    nonzero_fraction: float
    n_inputs: int
    residual: bool


def erf_radius(
    erf_map: np.ndarray, fraction: float, center: tuple[int, int] | None = None,
    metric: str = "chebyshev",
) -> float:
    """Smallest radius around ``center`` whose disc holds ``fraction`` of the map's mass.

    Parameters
    ----------
    erf_map : array (H, W)
        Non-negative map (e.g. :attr:`ERFResult.map`).
    fraction : float in (0, 1]
        ``1.0`` gives the support radius: the largest distance of a non-zero pixel.
    center : (row, col), optional
        Default: the map centre ``(H // 2, W // 2)``.
    metric : {"chebyshev", "euclidean"}
        ``"chebyshev"``: ``max(|dy|, |dx|)``, the disc is a ``(2r+1) x (2r+1)`` square (natural
        for convolution kernels: three 3x3 convs give radius 3); ``"euclidean"``:
        ``sqrt(dy^2 + dx^2)``.

    Returns
    -------
    float
    """
    m = np.abs(np.asarray(erf_map, dtype=np.float64))
    if m.ndim != 2:
        raise ValueError(f"erf_map must be 2-D, got shape {m.shape}")
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    h, w = m.shape
    cy, cx = center if center is not None else (h // 2, w // 2)
    yy, xx = np.mgrid[0:h, 0:w]
    dy, dx = np.abs(yy - cy), np.abs(xx - cx)
    if metric == "chebyshev":
        dist = np.maximum(dy, dx).astype(np.float64)
    elif metric == "euclidean":
        dist = np.sqrt(dy**2 + dx**2)
    else:
        raise ValueError(f"metric must be 'chebyshev' or 'euclidean', got {metric!r}")
    total = m.sum()
    if total == 0:
        return 0.0
    if fraction >= 1:
        return float(dist[m > 0].max())
    order = np.argsort(dist, axis=None, kind="stable")
    d_sorted, cum = dist.ravel()[order], np.cumsum(m.ravel()[order])
    index = int(np.searchsorted(cum, fraction * total * (1 - 1e-12)))
    return float(d_sorted[min(index, d_sorted.size - 1)])


def effective_receptive_field(
    model: nn.Module,
    n_inputs: int = 16,
    size: int = 128,
    residual: bool = True,
    pixel: tuple[int, int] | None = None,
    generator: torch.Generator | None = None,
    inputs: torch.Tensor | None = None,
    batch_size: int | None = None,
    channels: int | None = None,
) -> ERFResult:
    """Effective receptive field (Luo et al., NeurIPS 2016) of one output pixel.

    For every input ``x`` the output pixel ``p`` summed over output channels,
    ``y_p = sum_c f(x)[c, p]``, is back-propagated to the input; the map is
    ``mean_x sum_c' |d y_p / d x[c', :, :]|``, normalised to sum 1.

    With ``residual=True`` (default) ``f(x) = model(x) - x``: CTCNet ends with a global skip
    ``output = input + body(input)``, whose identity term would put a spike at ``p`` and hide
    the body's ERF (``ANCHORS.md`` section 4.2).

    The model is put in eval mode for the measurement (BatchNorm in training mode would couple
    the samples of a batch) and restored afterwards. Samples are independent in eval mode, so
    one backward pass of ``sum_n y_p(x_n)`` gives every ``d y_p(x_n) / d x_n`` at once; inputs are
    processed in batches of ``batch_size`` (default: all at once).

    Parameters
    ----------
    model : nn.Module
        Maps ``(N, C, H, W)`` to ``(N, C', H, W)``.
    n_inputs : int
        Number of random inputs, uniform in ``[-1, 1]`` (ignored when ``inputs`` is given).
    size : int
        Input side (ignored when ``inputs`` is given).
    residual : bool
    pixel : (row, col), optional
        Output pixel, default the centre ``(size // 2, size // 2)``.
    generator : torch.Generator, optional
        For reproducible random inputs.
    inputs : tensor (N, C, H, W), optional
        E.g. face images in ``[-1, 1]`` instead of noise.
    batch_size : int, optional
    channels : int, optional
        Input channels for random inputs; default ``model.config.in_channels`` or 3.

    Returns
    -------
    ERFResult
        Radii are Chebyshev radii around ``pixel`` (see :func:`erf_radius`).
    """
    device = next(model.parameters()).device if any(True for _ in model.parameters()) else "cpu"
    if inputs is None:
        if channels is None:
            channels = getattr(getattr(model, "config", None), "in_channels", 3)
        inputs = torch.rand(n_inputs, channels, size, size, generator=generator) * 2 - 1
    inputs = inputs.to(device=device, dtype=torch.float32)
    n, _, h, w = inputs.shape
    py, px = pixel if pixel is not None else (h // 2, w // 2)
    batch_size = batch_size or n
    was_training = model.training
    model.eval()
    total = torch.zeros(h, w, dtype=torch.float64)
    try:
        for start in range(0, n, batch_size):
            x = inputs[start : start + batch_size].clone().requires_grad_(True)
            out = model(x)
            if residual:
                if out.shape != x.shape:
                    raise ValueError("residual=True needs output and input of the same shape")
                out = out - x
            (grad,) = torch.autograd.grad(out[:, :, py, px].sum(), x)
            total += grad.abs().sum(dim=1).sum(dim=0).double().cpu()
    finally:
        model.train(was_training)
    mean = (total / n).numpy()
    nonzero = float((mean > 0).mean())
    normalised = mean / mean.sum() if mean.sum() > 0 else mean
    radii = {f: erf_radius(normalised, f, (py, px)) for f in (0.5, 0.9, 0.99, 1.0)}
    return ERFResult(normalised, (py, px), radii, nonzero, n, residual)

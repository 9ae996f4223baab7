"""Attention maps of CTCNet: FSAU spatial maps and MDTA channel-attention matrices.

FSAU (Gao et al., IEEE TIP 2023, Sec. III-B) multiplies its input by a one-channel spatial map
``M`` in ``(0, 1)`` from an hourglass; MDTA (Zamir et al., Restormer, CVPR 2022) attends across
channels with one ``C/heads x C/heads`` softmax matrix per head whose rows sum to 1. Both are
read with :func:`attention_maps` (temporary hooks on ``FSAU.map_tap`` and
``MDTA.attention_tap``; the model is not modified). Over many faces: :func:`mdta_measures`
(entropy and :func:`effective_rank` per head), :func:`channel_attention_weights` (the CA gains)
and :func:`region_contrast` of a map inside :func:`ctcnet.face_regions.landmark_mask` regions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..model import FSAU, MDTA, ChannelAttention, CTCNet

__all__ = [
    "attention_maps",
    "fsau_maps",
    "mdta_matrices",
    "attention_stats",
    "effective_rank",
    "mdta_measures",
    "channel_attention_weights",
    "region_contrast",
]


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


def _select(t: torch.Tensor, sample: int | None) -> torch.Tensor:
    return t if sample is None else t[sample]


def fsau_maps(model: nn.Module, x: torch.Tensor, sample: int | None = 0) -> dict[str, torch.Tensor]:
    """FSAU spatial attention maps, keyed by module path (``"encoder.0.fsau"``, ...,
    ``"bottleneck.0.fsau"``, ``"decoder.2.fsau"``), in forward order.

    Parameters
    ----------
    model : CTCNet
    x : tensor (N, 3, H, W)
        Model input in ``[-1, 1]``.
    sample : int or None
        Which sample to return: ``(H_s, W_s)`` maps; ``None`` keeps ``(N, 1, H_s, W_s)``.

    Returns
    -------
    dict of str -> tensor
        Values in ``(0, 1)`` at each stage's resolution (``H``, ``H/2``, ``H/4``, ``H/8``).
    """
    _, maps = attention_maps(model, x, fsau=True, mdta=False)
    return {k: (_select(v, sample)[0] if sample is not None else v) for k, v in maps.items()}


def mdta_matrices(
    model: nn.Module, x: torch.Tensor, sample: int | None = 0
) -> dict[str, torch.Tensor]:
    """MDTA channel-attention matrices keyed by block path (``"encoder.0.transformer.0.attn"``).

    Returns
    -------
    dict of str -> tensor
        ``(heads, C/heads, C/heads)`` for ``sample`` (``(N, heads, C/heads, C/heads)`` when
        ``sample`` is None); every row sums to 1.
    """
    _, maps = attention_maps(model, x, fsau=False, mdta=True)
    return {k: _select(v, sample) for k, v in maps.items()}


def attention_stats(matrices: dict[str, torch.Tensor]) -> pd.DataFrame:
    """Per block and head: mean row entropy (in nats; ``log(C/heads)`` = uniform attention),
    its ratio to the uniform entropy, and the mean diagonal weight (self-attention of a channel).

    ``matrices`` as returned by :func:`mdta_matrices` with an integer ``sample``.
    """
    rows = []
    for name, a in matrices.items():
        a = a.double().cpu()
        for head in range(a.shape[0]):
            p = a[head]
            entropy = float(-(p * torch.log(p.clamp_min(1e-300))).sum(-1).mean())
            d = p.shape[-1]
            rows.append({
                "block": name,
                "head": head,
                "channels": d,
                "entropy": entropy,
                "entropy_ratio": entropy / np.log(d) if d > 1 else 1.0,
                "diagonal": float(torch.diagonal(p).mean()),
            })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Measures over many faces: effective rank, MDTA per stage, CA weights, FSAU map vs face regions
# --------------------------------------------------------------------------------------------


def effective_rank(matrix: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Effective rank of a matrix (Roy & Vetterli, EUSIPCO 2007): ``exp(H(p))`` where
    ``p = sigma / sum(sigma)`` are the singular values normalised to sum to 1 and ``H`` is the
    Shannon entropy in nats.

    It lies between 1 (one singular value carries everything: a rank-1 matrix, e.g. attention in
    which every row is the same distribution, uniform attention included) and ``min(m, n)`` (all
    singular values equal, e.g. the identity: every channel keeps only itself). It does not change
    when the matrix is scaled.

    Parameters
    ----------
    matrix : tensor or array (..., m, n)
        One matrix or a batch of them (leading dimensions are kept).

    Returns
    -------
    tensor (...)
        float64 effective ranks.

    Raises
    ------
    ValueError
        For fewer than 2 dimensions, non-finite entries, or an all-zero matrix (no singular value
        to normalise).
    """
    a = torch.as_tensor(matrix).detach().to("cpu", torch.float64)
    if a.ndim < 2:
        raise ValueError(f"effective_rank needs a matrix (..., m, n), got shape {tuple(a.shape)}")
    if not torch.isfinite(a).all():
        raise ValueError("effective_rank needs finite entries")
    sigma = torch.linalg.svdvals(a)
    total = sigma.sum(-1, keepdim=True)
    if (total <= 0).any():
        raise ValueError("an all-zero matrix has no effective rank")
    p = sigma / total
    return torch.exp(-(p * torch.log(p.clamp_min(1e-300))).sum(-1))


def _stage(block: str) -> str:
    return ".".join(block.split(".")[:2])


def mdta_measures(matrices: dict[str, torch.Tensor]) -> pd.DataFrame:
    """Entropy and effective rank of every MDTA head, for every sample.

    Parameters
    ----------
    matrices : dict of str -> tensor
        As returned by :func:`mdta_matrices` with ``sample=None`` (``(N, heads, d, d)``) or an
        integer sample (``(heads, d, d)``, counted as sample 0).

    Returns
    -------
    DataFrame
        One row per sample, block and head: ``sample``, ``block``, ``stage`` (the first two parts of
        the path, e.g. ``"encoder.1"``), ``head``, ``channels`` (``d``), ``entropy`` (mean row
        entropy, nats), ``entropy_ratio`` (to the uniform ``log d``), ``effective_rank``
        (:func:`effective_rank` of the ``d x d`` matrix), ``rank_ratio`` (``effective_rank / d``)
        and ``diagonal`` (mean weight a channel gives itself).
    """
    rows = []
    for name, a in matrices.items():
        a = a.detach().to("cpu", torch.float64)
        if a.ndim == 3:
            a = a[None]
        d = a.shape[-1]
        entropy = -(a * torch.log(a.clamp_min(1e-300))).sum(-1).mean(-1)  # (N, heads)
        erank = effective_rank(a)
        diagonal = torch.diagonal(a, dim1=-2, dim2=-1).mean(-1)
        for sample in range(a.shape[0]):
            for head in range(a.shape[1]):
                h = float(entropy[sample, head])
                rows.append({
                    "sample": sample,
                    "block": name,
                    "stage": _stage(name),
                    "head": head,
                    "channels": d,
                    "entropy": h,
                    "entropy_ratio": h / np.log(d) if d > 1 else 1.0,
                    "effective_rank": float(erank[sample, head]),
                    "rank_ratio": float(erank[sample, head]) / d,
                    "diagonal": float(diagonal[sample, head]),
                })
    return pd.DataFrame(rows)


def channel_attention_weights(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The weights ``w`` in ``(0, 1)`` of every channel attention (CA, squeeze-and-excitation) of
    ``model`` on ``x``, keyed by module path in forward order.

    Temporary forward hooks recompute ``w = sigmoid(excite(ReLU(squeeze(mean(a)))))`` from each
    CA's input ``a`` (so ``CA(a) = a * w``). The model runs in eval mode without gradients and is
    returned to its previous mode.

    Returns
    -------
    dict of str -> tensor
        ``(N, C)`` per CA module.
    """

    found: dict[str, torch.Tensor] = {}

    def record(name):
        def hook(module, args, output):
            z = args[0].mean(dim=(2, 3), keepdim=True)
            found[name] = torch.sigmoid(module.excite(F.relu(module.squeeze(z))))[:, :, 0, 0]
        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules()
               if isinstance(m, ChannelAttention)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return found


def region_contrast(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean of a map inside a region minus its mean outside, per sample.

    Parameters
    ----------
    maps : tensor (N, 1, h, w) or (N, h, w)
        E.g. FSAU maps from :func:`fsau_maps` with ``sample=None``; enlarged with nearest
        neighbours to the masks' size (which must be a multiple of ``h`` and ``w``).
    masks : tensor (N, H, W) of bool
        E.g. :func:`ctcnet.face_regions.landmark_mask`; each must have pixels inside and outside.

    Returns
    -------
    tensor (N,)
        float64; 0 when the map ignores the region, positive when it is higher there.
    """
    m = maps.detach().to("cpu", torch.float64)
    if m.ndim == 4:
        m = m[:, 0]
    masks = torch.as_tensor(masks, dtype=torch.bool)
    if m.ndim != 3 or masks.ndim != 3 or m.shape[0] != masks.shape[0]:
        raise ValueError(f"maps (N, h, w) and masks (N, H, W) expected, got {tuple(maps.shape)} "
                         f"and {tuple(masks.shape)}")
    H, W = masks.shape[-2:]
    if H % m.shape[-2] or W % m.shape[-1]:
        raise ValueError(f"mask size {H}x{W} is not a multiple of the map size {tuple(m.shape[-2:])}")
    m = m.repeat_interleave(H // m.shape[-2], dim=-2).repeat_interleave(W // m.shape[-1], dim=-1)
    inside = masks.flatten(1).sum(1)
    outside = (~masks).flatten(1).sum(1)
    if (inside == 0).any() or (outside == 0).any():
        raise ValueError("every mask needs pixels both inside and outside the region")
    flat, keep = m.flatten(1), masks.flatten(1)
    return (flat * keep).sum(1) / inside - (flat * ~keep).sum(1) / outside

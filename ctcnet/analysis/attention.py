"""Attention maps of CTCNet: FSAU spatial maps and MDTA channel-attention matrices.

FSAU (Gao et al., IEEE TIP 2023, Sec. III-B) multiplies its input by a one-channel spatial map
``M`` in ``(0, 1)`` from an hourglass; MDTA (Zamir et al., Restormer, CVPR 2022) attends across
channels with one ``C/heads x C/heads`` softmax matrix per head whose rows sum to 1. Both are
read with :func:`ctcnet.runtime.attention_maps` (temporary hooks on ``FSAU.map_tap`` and
``MDTA.attention_tap``; the model is not modified).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..runtime import attention_maps

__all__ = ["fsau_maps", "mdta_matrices", "attention_stats"]


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

"""The golden fixtures in ``tests/fixtures`` (see its README): the reference model's outputs for
weights that are a formula of each key, and the reference ``state_dict`` manifest."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def manifest() -> list[dict]:
    """Every entry of the reference ``state_dict``, in the reference's order."""
    return json.loads((FIXTURES / "official_state_dict_manifest.json").read_text())


def reference_weights(strong: bool) -> dict[str, torch.Tensor]:
    """The fixture weights: a formula of each key alone (tests/fixtures/README.md)."""
    state = {}
    for entry in manifest():
        g = torch.Generator().manual_seed(zlib.crc32(entry["key"].encode()))
        shape, kind = entry["shape"], entry["kind"]
        if kind == "bn_running_var":
            t = 1 + 0.1 * torch.rand(shape, generator=g)
        elif kind == "bn_running_mean":
            t = 0.1 * torch.randn(shape, generator=g)
        elif kind == "bn_num_batches_tracked":
            t = torch.tensor(0, dtype=torch.long)
        elif kind == "scale":
            t = torch.full(shape, float(entry["init_value"]))
        elif kind == "norm_weight":
            t = 1 + 0.02 * torch.randn(shape, generator=g)
        elif strong and len(shape) >= 2:
            t = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        else:
            t = 0.02 * torch.randn(shape, generator=g)
        state[entry["key"]] = t
    return state

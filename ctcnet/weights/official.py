"""Reading and writing the authors' checkpoints (the reference ``state_dict`` layout).

The reference saves 2,112 entries; 198 of them belong to modules that its forward pass never
calls: ``models/ctcnet.py`` of the authors' repository builds them in ``__init__`` and never uses
them in ``forward`` (e.g. ``embed``, ``down_input``/``up_input``, the ``scale{i}_{j}`` factors,
a spare channel attention ``att`` in most LGCMs, and MLP blocks and hourglass convolutions in
every FRM). Our modules have no such dead parameters, so this file holds the map
between the two layouts: every reference key, in the reference's order, with the key of our
model that holds the same tensor, or none for a dead entry. The reference's attribute names
appear here and only here.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..errors import CheckpointError
from ..model import PRESETS, CTCNet, CTCNetConfig
from .checkpoint import (
    FORMAT,
    check_finite,
    describe_key_problems,
    read_checkpoint,
    state_dict_shapes,
)

__all__ = [
    "OfficialEntry",
    "official_layout",
    "load_official_checkpoint",
    "official_to_ours",
    "export_official_state_dict",
]

# Hourglass attribute names of the FSAU in each LGCM of the reference, in our order
# (encoder at H, H/2, H/4, then decoder at H/4, H/2, H).
_FSAU_ATTR = ("att_func", "att_func", "att_func2", "att_func2", "att_func", "att_func2")
_LGCM_NAMES = (
    "res_layers_down1_pre",
    "res_layers_down1",
    "res_layers_down2",
    "res_layers_up1",
    "res_layers_up2",
    "res_layers_back",
)
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "params", "params_ema", "net", "netG")


@dataclass(frozen=True)
class OfficialEntry:
    """One entry of the reference ``state_dict``.

    ``ours`` is our key holding the same tensor, or ``None`` for an entry the reference never
    uses; then ``shape`` and ``init`` say how the reference initialises it.
    """

    key: str
    ours: str | None
    shape: tuple[int, ...] = ()
    init: str = ""


class _Layout:
    def __init__(self) -> None:
        self.entries: list[OfficialEntry] = []

    def live(self, key: str, ours: str) -> None:
        self.entries.append(OfficialEntry(key, ours))

    def dead(self, key: str, shape: tuple[int, ...], init: str) -> None:
        self.entries.append(OfficialEntry(key, None, tuple(shape), init))

    # -- building blocks ------------------------------------------------------------------
    def conv(self, key: str, ours: str, bias: bool = True) -> None:
        self.live(f"{key}.weight", f"{ours}.weight")
        if bias:
            self.live(f"{key}.bias", f"{ours}.bias")

    def channel_attention(self, key: str, ours: str) -> None:
        self.conv(f"{key}.conv_du.0", f"{ours}.squeeze")
        self.conv(f"{key}.conv_du.2", f"{ours}.excite")

    def dead_channel_attention(self, key: str, width: int, reduction: int) -> None:
        hidden = max(1, width // reduction)
        self.dead(f"{key}.conv_du.0.weight", (hidden, width, 1, 1), "normal")
        self.dead(f"{key}.conv_du.0.bias", (hidden,), "zeros")
        self.dead(f"{key}.conv_du.2.weight", (width, hidden, 1, 1), "normal")
        self.dead(f"{key}.conv_du.2.bias", (width,), "zeros")

    def local_block(self, key: str, ours: str) -> None:
        for unit in (1, 2):
            k, o = f"{key}.layer{unit}", f"{ours}.unit{unit}"
            self.conv(f"{k}.conv", f"{o}.conv_reduce")
            self.conv(f"{k}.conv1", f"{o}.conv_expand")
            self.live(f"{k}.relu.weight", f"{o}.act.weight")
            self.live(f"{k}.weight1.scale", f"{o}.skip_scale")
            self.live(f"{k}.weight2.scale", f"{o}.residual_scale")
        self.live(f"{key}.layer4.conv.weight", f"{ours}.conv_out.weight")
        self.live(f"{key}.alise.conv.weight", f"{ours}.fuse.weight")
        self.channel_attention(f"{key}.atten", f"{ours}.attention")
        self.dead(f"{key}.weight1.scale", (1,), "scale:1.0")
        for index, name in zip((2, 3, 4, 5), ("deep", "shallow", "skip", "body")):
            self.live(f"{key}.weight{index}.scale", f"{ours}.scale_{name}")

    def hourglass_conv(self, key: str, ours: str) -> None:
        self.live(f"{key}.conv2d.weight", f"{ours}.conv.weight")
        self.live(f"{key}.relu.func.weight", f"{ours}.act.weight")
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            self.live(f"{key}.norm.norm.{name}", f"{ours}.norm.{name}")

    def dead_hourglass_conv(self, key: str, width: int, with_act: bool) -> None:
        self.dead(f"{key}.conv2d.weight", (width, width, 3, 3), "normal")
        if with_act:
            self.dead(f"{key}.relu.func.weight", (width,), "prelu")
        self.dead(f"{key}.norm.norm.weight", (width,), "bn_weight")
        self.dead(f"{key}.norm.norm.bias", (width,), "zeros")
        self.dead(f"{key}.norm.norm.running_mean", (width,), "zeros")
        self.dead(f"{key}.norm.norm.running_var", (width,), "ones")
        self.dead(f"{key}.norm.norm.num_batches_tracked", (), "count")

    def fsau(self, key: str, ours: str, depth: int, has_proj: bool) -> None:
        for level in range(depth):
            self.hourglass_conv(f"{key}.b1_{depth - level}", f"{ours}.hourglass.skips.{level}")
            self.hourglass_conv(f"{key}.b2_{depth - level}", f"{ours}.hourglass.downs.{level}")
        self.hourglass_conv(f"{key}.b2_plus_1", f"{ours}.hourglass.bottom")
        for level in range(depth - 1, -1, -1):
            self.hourglass_conv(f"{key}.b3_{depth - level}", f"{ours}.hourglass.ups.{level}")
        self.conv(f"{key}.out_block.0.conv2d", f"{ours}.to_map")
        self.channel_attention(f"{key}.channel_func", f"{ours}.attention")
        if has_proj:
            self.conv(f"{key}._64", f"{ours}.proj")

    def transformer_block(self, key: str, ours: str) -> None:
        self.live(f"{key}.norm1.body.weight", f"{ours}.norm1.weight")
        self.live(f"{key}.norm1.body.bias", f"{ours}.norm1.bias")
        self.live(f"{key}.attn.temperature", f"{ours}.attn.temperature")
        self.live(f"{key}.attn.qkv.weight", f"{ours}.attn.to_qkv.weight")
        self.live(f"{key}.attn.qkv_dwconv.weight", f"{ours}.attn.qkv_dwconv.weight")
        self.live(f"{key}.attn.project_out.weight", f"{ours}.attn.proj_out.weight")
        self.live(f"{key}.norm2.body.weight", f"{ours}.norm2.weight")
        self.live(f"{key}.norm2.body.bias", f"{ours}.norm2.bias")
        self.live(f"{key}.ffn.project_in.weight", f"{ours}.ffn.proj_in.weight")
        self.live(f"{key}.ffn.dwconv.weight", f"{ours}.ffn.dwconv.weight")
        self.live(f"{key}.ffn.project_out.weight", f"{ours}.ffn.proj_out.weight")

    def dead_mlp_block(self, key: str, width: int) -> None:
        for norm in ("norm1", "norm2"):
            self.dead(f"{key}.{norm}.weight", (width,), "ones")
            self.dead(f"{key}.{norm}.bias", (width,), "zeros")
        self.dead(f"{key}.mlp.fc1.weight", (4 * width, width), "normal")
        self.dead(f"{key}.mlp.fc1.bias", (4 * width,), "zeros")
        self.dead(f"{key}.mlp.fc2.weight", (width, 4 * width), "normal")
        self.dead(f"{key}.mlp.fc2.bias", (width,), "zeros")


def _require_reference_structure(cfg: CTCNetConfig) -> None:
    if not (cfg.use_fsau and cfg.use_transformer and cfg.use_mffu and cfg.num_frm > 0):
        raise CheckpointError(
            "the reference layout needs every module: FSAU, Transformer, MFFU and FRM switched on"
        )
    if 0 in cfg.encoder_blocks or 0 in cfg.decoder_blocks:
        raise CheckpointError("the reference layout needs at least one Transformer block per LGCM")


def official_layout(config: CTCNetConfig | None = None) -> list[OfficialEntry]:
    """Every entry of the reference ``state_dict`` for ``config`` (default: ``official``),
    in the reference's order, each mapped to our key or marked dead."""
    cfg = config or PRESETS["official"]
    _require_reference_structure(cfg)
    c1, c2, c3 = cfg.widths
    r = cfg.ca_reduction
    lay = _Layout()
    lay.conv("head", "head")

    ours_lgcm = [f"encoder.{i}" for i in range(3)] + [f"decoder.{i}" for i in range(3)]
    widths = (c1, c2, c3, c3, c2, c1)
    blocks = cfg.encoder_blocks + cfg.decoder_blocks

    def lgcm(index: int) -> None:
        key, ours, width = _LGCM_NAMES[index], ours_lgcm[index], widths[index]
        lay.local_block(f"{key}.encoder", f"{ours}.local_in")
        lay.local_block(f"{key}.alise", f"{ours}.local_out")
        if index != 0:  # the first encoder LGCM of the reference has no spare CA layer
            lay.dead_channel_attention(f"{key}.att", width, r)
        lay.fsau(f"{key}.{_FSAU_ATTR[index]}", f"{ours}.fsau", cfg.fsau_depth,
                 width != cfg.fsau_width)
        for b in range(blocks[index]):
            lay.transformer_block(f"{key}.encoder_level1.{b}", f"{ours}.transformer.{b}")

    for index in range(5):
        lgcm(index)
    for i in range(cfg.num_frm):
        key, ours = f"res_layers.{i}", f"bottleneck.{i}"
        lay.local_block(f"{key}.encoder", f"{ours}.local_in")
        lay.dead_mlp_block(f"{key}.STL64", 64)
        lay.dead_mlp_block(f"{key}.STL128", 128)
        lay.local_block(f"{key}.decoder_low", f"{ours}.feu.low_branch")
        lay.local_block(f"{key}.decoder_high", f"{ours}.feu.high_branch")
        lay.local_block(f"{key}.alise", f"{ours}.local_mid")
        lay.live(f"{key}.alise2.conv.weight", f"{ours}.feu.merge.weight")
        lay.dead_channel_attention(f"{key}.att", c3, r)
        lay.dead_hourglass_conv(f"{key}.conv1", c3, with_act=True)
        lay.dead_hourglass_conv(f"{key}.conv2", c3, with_act=False)
        lay.fsau(f"{key}.att_func2", f"{ours}.fsau", cfg.frm_fsau_depth, c3 != cfg.fsau_width)
        lay.live(f"{key}.scale_1.scale", f"{ours}.feu.scale_low")
        lay.live(f"{key}.scale_2.scale", f"{ours}.feu.scale_high")
        lay.conv(f"{key}.compress1", f"{ours}.feu.compress")
        lay.conv(f"{key}.compress2", f"{ours}.feu.gate")
    lgcm(5)

    lay.conv("tail", "tail")
    lay.conv("tail352_128", "fusion.0.fuse")
    lay.conv("tail288_64", "fusion.1.fuse")
    lay.conv("tai256_32", "fusion.2.fuse")
    lay.conv("conv_64", "resampler.e2_down")
    lay.conv("conv_32", "resampler.e1_down")
    lay.conv("tranpose_128", "resampler.e3_up")
    lay.conv("tranpose64_128", "resampler.e2_up")
    lay.conv("tranpose128_128", "resampler.e3_up2")
    lay.dead("down_input.0.weight", (c2, c1, 3, 3), "normal")
    lay.dead("down_input.2.weight", (c1, c2, 3, 3), "normal")
    lay.dead("up_input.0.weight", (c1, c2, 6, 6), "normal")
    lay.dead("up_input.2.weight", (c1, c2, 3, 3), "normal")
    for i in range(3):
        lay.live(f"down{i + 1}.0.weight", f"downsample.{i}.resample.weight")
        lay.live(f"down{i + 1}.2.weight", f"downsample.{i}.conv.weight")
    for i in range(3):
        lay.live(f"up{i + 1}.0.weight", f"upsample.{i}.resample.weight")
        lay.live(f"up{i + 1}.2.weight", f"upsample.{i}.conv.weight")
    for i in range(1, 4):
        for j in range(1, 5):
            lay.dead(f"scale{i}_{j}.scale", (1,), "scale:0.25")
    lay.dead("embed.weight", (c1, c1, 3, 3), "normal")
    lay.dead("embed.bias", (c1,), "zeros")
    lay.channel_attention("channel_func_128", "fusion.0.attention")
    lay.channel_attention("channel_func_64", "fusion.1.attention")
    lay.channel_attention("channel_func_32", "fusion.2.attention")
    return lay.entries


# ---------------------------------------------------------------------------------------------


_NOT_THEIRS = "this is a ctcnet checkpoint, not the authors'"


def _read_state_dict(source) -> dict[str, torch.Tensor]:
    """A state dict from a path, a state dict, or a dict that wraps one; ``module.`` stripped."""
    if isinstance(source, (str, os.PathLike)):
        source = read_checkpoint(source)
    if not isinstance(source, Mapping):
        raise CheckpointError(f"a checkpoint must hold a dict of tensors, got {type(source).__name__}")
    if source.get("format") == FORMAT:
        raise CheckpointError(f"{_NOT_THEIRS} (load it with --checkpoint PATH or load_model)")
    for wrapper in _WRAPPER_KEYS:
        inner = source.get(wrapper)
        if isinstance(inner, Mapping) and inner and all(
            isinstance(v, torch.Tensor) for v in inner.values()
        ):
            source = inner
            break
    state = {}
    for key, value in source.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"checkpoint entry {key!r} is not a tensor")
        state[key[len("module."):] if key.startswith("module.") else key] = value
    return state


def official_to_ours(
    state_dict, config: CTCNetConfig | None = None
) -> OrderedDict[str, torch.Tensor]:
    """Translate a reference-layout state dict into our key names for ``config``.

    Every live entry must be present with the right shape; dead entries may be present or not.
    All problems are reported together in one :class:`CheckpointError`.
    """
    cfg = config or PRESETS["official"]
    state = _read_state_dict(state_dict)
    layout = official_layout(cfg)
    expected = state_dict_shapes(cfg)
    missing, misshaped, ours = [], [], OrderedDict()
    known = set()
    for entry in layout:
        known.add(entry.key)
        tensor = state.get(entry.key)
        want = tuple(expected[entry.ours]) if entry.ours else entry.shape
        if tensor is None:
            if entry.ours is not None:
                missing.append(entry.key)
            continue
        if tuple(tensor.shape) != want:
            misshaped.append(f"{entry.key} {tuple(tensor.shape)} != {want}")
        elif entry.ours is not None:
            ours[entry.ours] = tensor
    unexpected = [k for k in state if k not in known]
    if missing or misshaped or unexpected:
        if any(set(state) == set(state_dict_shapes(c)) for c in PRESETS.values()):
            raise CheckpointError(f"{_NOT_THEIRS}: a state dict with our key names")
        problems = describe_key_problems(missing, unexpected, misshaped)
        raise CheckpointError(f"not a CTCNet reference checkpoint: {problems}")
    check_finite(ours, "the file")
    return ours


def load_official_checkpoint(path_or_state_dict, device: str | torch.device = "cpu") -> CTCNet:
    """An ``official`` :class:`CTCNet` in eval mode holding the weights of a reference checkpoint.

    Accepts a path or a state dict, a ``module.`` prefix (DataParallel saves) and a dict that
    wraps the state dict (under ``state_dict``, ``model``, ``params``, ...). Every live entry must
    be present with the right shape; the 198 entries the reference never uses are accepted and
    ignored. Raises :class:`CheckpointError` listing all missing, unexpected and mis-shaped keys.
    """
    ours = official_to_ours(path_or_state_dict)
    model = CTCNet(PRESETS["official"])
    model.load_state_dict(ours, strict=True)
    return model.to(device).eval()


def _dead_init(entry: OfficialEntry, generator: torch.Generator) -> torch.Tensor:
    shape, init = entry.shape, entry.init
    if init == "normal":
        return torch.randn(shape, generator=generator) * 0.02
    if init == "bn_weight":
        return 1.0 + torch.randn(shape, generator=generator) * 0.02
    if init == "zeros":
        return torch.zeros(shape)
    if init == "ones":
        return torch.ones(shape)
    if init == "prelu":
        return torch.full(shape, 0.25)
    if init == "count":
        return torch.zeros(shape, dtype=torch.long)
    if init.startswith("scale:"):
        return torch.full(shape, float(init.split(":")[1]))
    raise AssertionError(f"unknown init {init!r}")


def export_official_state_dict(model: CTCNet, seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """All reference entries (2,112 for ``official``), in the reference's order, so the authors'
    code can load our weights with strict loading. Dead entries get the reference's
    initialisation (normal(0, 0.02) weights, zero biases, ...) from a generator seeded ``seed``."""
    ours = model.state_dict()
    generator = torch.Generator().manual_seed(seed)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for entry in official_layout(model.config):
        if entry.ours is None:
            out[entry.key] = _dead_init(entry, generator)
        else:
            out[entry.key] = ours[entry.ours].detach().cpu().clone()
    return out

"""CTCNet: the CNN-Transformer Cooperation Network for x8 face super-resolution.

Gao et al., "CTCNet: A CNN-Transformer Cooperation Network for Face Image Super-Resolution",
IEEE TIP 2023 (arXiv:2204.08696). One class per module of the paper's Fig. 2:

========================  =====================================================================
paper module              class
========================  =====================================================================
local residual block      :class:`LocalBlock` (two :class:`ResidualUnit` + :class:`ChannelAttention`)
FSAU                      :class:`FSAU` (hourglass spatial attention, :class:`Hourglass`)
Transformer block         :class:`TransformerBlock` = :class:`MDTA` + :class:`GDFN`
LGCM                      :class:`LGCM`
FRM (FSAU + FEU)          :class:`FRM` (its FEU is :class:`FEU`)
MFFU                      :class:`MFFU` (+ the shared :class:`CrossScaleResampler`)
Down/Upsampling           :class:`Downsample`, :class:`Upsample`
whole network             :class:`CTCNet`
========================  =====================================================================

Every paper module carries its Fig. 2 name as the class attribute ``paper_name`` (containers also
name their parts in ``paper_parts``), and :meth:`CTCNet.units` lists the boxes of Fig. 2 as this
model builds them -- path, paper name, part, stage and scale -- so that the analysis and the course
group their results by what the model says about itself instead of by hard-coded module paths.

The network maps a bicubic-upsampled low-resolution face ``N x 3 x H x W`` in ``[-1, 1]`` to the
super-resolved face of the same shape (a global residual: ``output = input + body(input)``).
The behaviour follows the authors' code (``models/ctcnet.py`` of their repository),
which differs from the paper's figure in several places; each class says where.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CTCNetConfig",
    "PRESETS",
    "build_model",
    "reference_init_",
    "ResidualUnit",
    "ChannelAttention",
    "LocalBlock",
    "HourglassConv",
    "Hourglass",
    "FSAU",
    "LayerNorm2d",
    "MDTA",
    "GDFN",
    "TransformerBlock",
    "LGCM",
    "FEU",
    "FRM",
    "Downsample",
    "Upsample",
    "CrossScaleResampler",
    "MFFU",
    "PaperUnit",
    "CTCNet",
]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CTCNetConfig:
    """Every architectural choice of :class:`CTCNet`.

    The three stages have widths ``C, 2C, 4C`` (``C = base_width``) at resolutions
    ``H, H/2, H/4``; the bottleneck keeps ``4C`` channels at ``H/8``.

    Attributes
    ----------
    in_channels : image channels (3 for RGB).
    base_width : ``C``; 32 in the paper.
    encoder_blocks : Transformer blocks in the encoder LGCMs at ``H, H/2, H/4``.
    decoder_blocks : Transformer blocks in the decoder LGCMs at ``H/4, H/2, H`` (decoding order).
    heads : MDTA heads at the widths ``C, 2C, 4C`` (each must divide its width).
    ffn_expansion : GDFN hidden width factor (hidden = floor(factor * width)).
    fsau_width : internal width of the FSAU hourglass.
    fsau_depth : hourglass depth of the FSAUs inside the LGCMs.
    frm_fsau_depth : hourglass depth of the FSAUs inside the FRMs.
    num_frm : number of FRMs in the bottleneck (0 removes the bottleneck).
    ca_reduction : channel-attention squeeze ratio.
    use_fsau : ablation switch; when False, the LGCMs and FRMs skip their spatial attention (no
        FSAU).
    use_transformer : ablation switch; when False, the LGCMs have no Transformer blocks.
    use_mffu : ablation switch; when False, each decoder stage receives ``upsampled + encoder
        feature of the same scale`` (a parameter-free U-Net skip) instead of the multi-scale
        fusion of the MFFU.
    """

    in_channels: int = 3
    base_width: int = 32
    encoder_blocks: tuple[int, int, int] = (4, 6, 6)
    decoder_blocks: tuple[int, int, int] = (6, 6, 4)
    heads: tuple[int, int, int] = (1, 2, 4)
    ffn_expansion: float = 2.66
    fsau_width: int = 64
    fsau_depth: int = 4
    frm_fsau_depth: int = 2
    num_frm: int = 4
    ca_reduction: int = 16
    use_fsau: bool = True
    use_transformer: bool = True
    use_mffu: bool = True

    def __post_init__(self) -> None:
        for name in ("encoder_blocks", "decoder_blocks", "heads"):
            value = tuple(getattr(self, name))
            if len(value) != 3:
                raise ValueError(f"{name} needs 3 entries (one per stage), got {value}")
            object.__setattr__(self, name, value)
        if self.base_width < 1 or self.fsau_width < 1:
            raise ValueError("base_width and fsau_width must be positive")
        for width, heads in zip(self.widths, self.heads):
            if heads < 1 or width % heads:
                raise ValueError(f"heads={heads} must be >= 1 and divide the stage width {width}")
        if self.fsau_depth < 1 or self.frm_fsau_depth < 1:
            raise ValueError("hourglass depths must be >= 1")
        if self.num_frm < 0:
            raise ValueError("num_frm must be >= 0")

    @property
    def widths(self) -> tuple[int, int, int]:
        """Channel widths of the three stages (``C, 2C, 4C``)."""
        c = self.base_width
        return (c, 2 * c, 4 * c)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (three stride-2 stages)."""
        return 8

    @property
    def min_input_size(self) -> int:
        """Smallest allowed input side: every hourglass's coarsest map must be >= 2 pixels,
        because its reflection padding of 1 needs at least 2 pixels."""
        size = self.size_multiple
        while not self._fits(size):
            size += self.size_multiple
        return size

    def _fits(self, size: int) -> bool:
        needs: list[tuple[int, int]] = []  # (downsampling factor, hourglass depth)
        if self.use_fsau:
            needs += [(1, self.fsau_depth), (2, self.fsau_depth), (4, self.fsau_depth)]
            if self.num_frm:
                needs.append((8, self.frm_fsau_depth))
        if self.num_frm:
            needs.append((8, 1))  # the FEU's 2x2 average pool needs >= 2 pixels
        for factor, depth in needs:
            side = size // factor
            for _ in range(depth):
                side = math.ceil(side / 2)
            if side < 2:
                return False
        return True

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, CTCNetConfig] = {
    # The authors' network: 22,407,699 parameters (tests/test_model.py).
    "official": CTCNetConfig(),
    # Trainable on a 2-core CPU in minutes: half the width, fewer blocks, one FRM.
    "reduced": CTCNetConfig(
        base_width=16,
        encoder_blocks=(1, 2, 2),
        decoder_blocks=(2, 2, 1),
        heads=(1, 1, 2),
        fsau_width=16,
        fsau_depth=3,
        frm_fsau_depth=1,
        num_frm=1,
        ca_reduction=4,
    ),
    # For tests: every module present, as small as possible.
    "tiny": CTCNetConfig(
        base_width=8,
        encoder_blocks=(1, 1, 1),
        decoder_blocks=(1, 1, 1),
        heads=(1, 1, 2),
        ffn_expansion=2.0,
        fsau_width=8,
        fsau_depth=2,
        frm_fsau_depth=1,
        num_frm=1,
        ca_reduction=4,
    ),
}


def build_model(preset: str = "official", **overrides) -> CTCNet:
    """Build a :class:`CTCNet` from a preset name (``official``, ``reduced``, ``tiny``),
    with any :class:`CTCNetConfig` field overridden, e.g. ``build_model("reduced", use_fsau=False)``.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    unknown = set(overrides) - set(CTCNetConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown config field(s) {sorted(unknown)} for CTCNetConfig")
    return CTCNet(replace(PRESETS[preset], **overrides))


def reference_init_(model: nn.Module) -> nn.Module:
    """The authors' initialisation, in place: conv / transposed conv / linear weights N(0, 0.02)
    and zero biases; BatchNorm weights N(1, 0.02) and zero biases. Returns ``model``."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return model


def _squeezed(width: int, reduction: int) -> int:
    return max(1, width // reduction)


# --------------------------------------------------------------------------------------------
# Convolutional building blocks
# --------------------------------------------------------------------------------------------


class ResidualUnit(nn.Module):
    """Residual unit (RU) of the local block: ``a*x + b*conv(PReLU(conv(x)))``.

    The two 3x3 convolutions go ``C -> C/2 -> C``; ``a`` and ``b`` are learnable scalars
    (init 1). Shapes: ``(N, C, H, W) -> (N, C, H, W)``.
    """

    paper_name: ClassVar[str] = "RU"

    def __init__(self, width: int) -> None:
        super().__init__()
        hidden = width // 2
        self.conv_reduce = nn.Conv2d(width, hidden, 3, padding=1)
        self.act = nn.PReLU(hidden, init=0.25)
        self.conv_expand = nn.Conv2d(hidden, width, 3, padding=1)
        self.skip_scale = nn.Parameter(torch.ones(1))
        self.residual_scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        body = self.conv_expand(self.act(self.conv_reduce(x)))
        return self.skip_scale * x + self.residual_scale * body


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention (Hu et al., 2018), "CA" in the paper.

    Global average pool -> 1x1 conv ``C -> C/r`` -> ReLU -> 1x1 conv ``C/r -> C`` -> sigmoid,
    then the input is scaled per channel. Shapes: ``(N, C, H, W) -> (N, C, H, W)``.
    """

    paper_name: ClassVar[str] = "CA"

    def __init__(self, width: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = _squeezed(width, reduction)
        self.squeeze = nn.Conv2d(width, hidden, 1)
        self.excite = nn.Conv2d(hidden, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = F.adaptive_avg_pool2d(x, 1)
        weights = torch.sigmoid(self.excite(F.relu(self.squeeze(weights))))
        return x * weights


class LocalBlock(nn.Module):
    """Local residual conv block (LB): the CNN part that the code puts around every FSAU.

    Not drawn in the paper's figure, but present in every LGCM and FRM of the authors' code::

        r1 = RU1(x); r2 = RU2(r1)
        f  = ReLU(conv1x1(concat[s2*r2, s3*r1]))      # 2C -> C
        g  = ReLU(conv3x3(CA(f)))
        LB(x) = s4*x + s5*g

    Shapes: ``(N, C, H, W) -> (N, C, H, W)``.
    """

    paper_name: ClassVar[str] = "local block"

    def __init__(self, width: int, ca_reduction: int = 16) -> None:
        super().__init__()
        self.unit1 = ResidualUnit(width)
        self.unit2 = ResidualUnit(width)
        self.fuse = nn.Conv2d(2 * width, width, 1, bias=False)
        self.attention = ChannelAttention(width, ca_reduction)
        self.conv_out = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.scale_deep = nn.Parameter(torch.ones(1))
        self.scale_shallow = nn.Parameter(torch.ones(1))
        self.scale_skip = nn.Parameter(torch.ones(1))
        self.scale_body = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r1 = self.unit1(x)
        r2 = self.unit2(r1)
        f = F.relu(self.fuse(torch.cat([self.scale_deep * r2, self.scale_shallow * r1], dim=1)))
        g = F.relu(self.conv_out(self.attention(f)))
        return self.scale_skip * x + self.scale_body * g


# --------------------------------------------------------------------------------------------
# FSAU: hourglass spatial attention
# --------------------------------------------------------------------------------------------


class HourglassConv(nn.Module):
    """One hourglass unit: [nearest x2] -> reflection pad 1 -> 3x3 conv (no bias, stride 1 or 2)
    -> BatchNorm -> PReLU. Shapes: ``(N, Cin, H, W) -> (N, Cout, H', W')`` with ``H' = ceil(H/2)``
    for stride 2 and ``2H`` when ``upsample``.
    """

    paper_name: ClassVar[str] = "hourglass conv"

    def __init__(self, in_width: int, out_width: int, stride: int = 1, upsample: bool = False):
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(in_width, out_width, 3, stride=stride, bias=False)
        self.norm = nn.BatchNorm2d(out_width)
        self.act = nn.PReLU(out_width, init=0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))
        return self.act(self.norm(x))


class Hourglass(nn.Module):
    """Hourglass of depth ``D`` (Newell et al., 2016) used inside FSAU.

    Level ``L`` (``D`` outermost) splits into a full-resolution branch ``skips[L]`` and a
    stride-2 branch ``downs[L]``; the stride-2 branch goes to level ``L-1`` (or ``bottom`` at the
    last level), is brought back by ``ups[L]`` (nearest x2 + conv) and added to the skip branch.
    Index 0 of each list is the outermost level. Only the outermost skip/down take ``in_width``
    channels; everything else is ``width -> width``.
    Shapes: ``(N, Cin, H, W) -> (N, width, H, W)``; odd sizes are handled by a nearest resize.
    """

    paper_name: ClassVar[str] = "hourglass"

    def __init__(self, in_width: int, width: int, depth: int) -> None:
        super().__init__()
        self.skips = nn.ModuleList(
            HourglassConv(in_width if i == 0 else width, width) for i in range(depth)
        )
        self.downs = nn.ModuleList(
            HourglassConv(in_width if i == 0 else width, width, stride=2) for i in range(depth)
        )
        self.bottom = HourglassConv(width, width)
        self.ups = nn.ModuleList(HourglassConv(width, width, upsample=True) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skipped = []
        for skip, down in zip(self.skips, self.downs):
            skipped.append(skip(x))
            x = down(x)
        x = self.bottom(x)
        for level in range(len(self.ups) - 1, -1, -1):
            x = self.ups[level](x)
            target = skipped[level]
            if x.shape[-2:] != target.shape[-2:]:
                x = F.interpolate(x, size=target.shape[-2:], mode="nearest")
            x = x + target
        return x


class FSAU(nn.Module):
    """Facial Structure Attention Unit (paper Sec. III-B, Fig. 2): a one-channel spatial attention
    map from an hourglass, multiplied onto the input.

    ``h = CA(Hourglass(a)) + proj(a)``; ``M = sigmoid(conv3x3(reflect_pad(h)))``; ``FSAU(a) = a * M``.
    ``proj`` is a 1x1 conv to the hourglass width, or the identity when the widths match.
    ``map_tap`` is an identity that receives ``M`` so that hooks can read the map
    (see :func:`ctcnet.analysis.attention_maps`).
    Shapes: ``(N, C, H, W) -> (N, C, H, W)``; map ``(N, 1, H, W)``.
    """

    paper_name: ClassVar[str] = "FSAU"

    def __init__(self, in_width: int, width: int, depth: int, ca_reduction: int = 16) -> None:
        super().__init__()
        self.hourglass = Hourglass(in_width, width, depth)
        self.attention = ChannelAttention(width, ca_reduction)
        self.proj = nn.Identity() if in_width == width else nn.Conv2d(in_width, width, 1)
        self.to_map = nn.Conv2d(width, 1, 3)
        self.map_tap = nn.Identity()

    def attention_map(self, a: torch.Tensor) -> torch.Tensor:
        """The spatial map ``M`` in ``(0, 1)``, shape ``(N, 1, H, W)``."""
        h = self.attention(self.hourglass(a)) + self.proj(a)
        return torch.sigmoid(self.to_map(F.pad(h, (1, 1, 1, 1), mode="reflect")))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return a * self.map_tap(self.attention_map(a))


# --------------------------------------------------------------------------------------------
# Transformer block (Restormer, Zamir et al. CVPR 2022)
# --------------------------------------------------------------------------------------------


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of every pixel (biased variance, eps 1e-5), with bias.
    Shapes: ``(N, C, H, W) -> (N, C, H, W)``."""

    paper_name: ClassVar[str] = "LN"

    def __init__(self, width: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Same function as ``(x - mean) / sqrt(var + eps) * weight + bias`` per pixel, computed by
        # one fused ``F.layer_norm`` over the channels-last view: faster, and autograd keeps only
        # the input and per-pixel statistics instead of several full-size intermediates
        # (benchmarks/RESULTS.md, "Model speed and memory").
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        y = y.permute(0, 3, 1, 2)
        return y if channels_last else y.contiguous()


class MDTA(nn.Module):
    """Multi-Dconv head Transposed Attention: self-attention across *channels*.

    ``q, k, v = split(dwconv3x3(conv1x1(x)))``; per head, ``q`` and ``k`` (``C/heads x HW``) are
    L2-normalised along pixels, ``A = softmax(q k^T * temperature)`` is ``C/heads x C/heads``, and
    the output is ``conv1x1(A v)``. Cost is linear in ``H*W``. ``attention_tap`` receives ``A``
    (``N x heads x C/heads x C/heads``) for hooks. Shapes: ``(N, C, H, W) -> (N, C, H, W)``.
    """

    paper_name: ClassVar[str] = "MDTA"

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.to_qkv = nn.Conv2d(width, 3 * width, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(3 * width, 3 * width, 3, padding=1, groups=3 * width, bias=False)
        self.proj_out = nn.Conv2d(width, width, 1, bias=False)
        self.attention_tap = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.to_qkv(x)).chunk(3, dim=1)
        q = F.normalize(q.reshape(n, self.heads, c // self.heads, h * w), dim=-1)
        k = F.normalize(k.reshape(n, self.heads, c // self.heads, h * w), dim=-1)
        v = v.reshape(n, self.heads, c // self.heads, h * w)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.temperature, dim=-1)
        out = self.attention_tap(attn) @ v
        return self.proj_out(out.reshape(n, c, h, w))


class GDFN(nn.Module):
    """Gated-Dconv Feed-forward Network: ``conv1x1(GELU(x1) * x2)`` where ``x1, x2`` are the halves
    of ``dwconv3x3(conv1x1(x))`` (hidden width ``floor(expansion * C)``).
    Shapes: ``(N, C, H, W) -> (N, C, H, W)``."""

    paper_name: ClassVar[str] = "GDFN"

    def __init__(self, width: int, expansion: float) -> None:
        super().__init__()
        hidden = int(width * expansion)
        self.proj_in = nn.Conv2d(width, 2 * hidden, 1, bias=False)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=False)
        self.proj_out = nn.Conv2d(hidden, width, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.dwconv(self.proj_in(x)).chunk(2, dim=1)
        return self.proj_out(F.gelu(gate) * value)


class TransformerBlock(nn.Module):
    """Transformer block (paper Fig. 2): ``x + MDTA(LN(x))`` then ``x + GDFN(LN(x))``.
    Shapes: ``(N, C, H, W) -> (N, C, H, W)``."""

    paper_name: ClassVar[str] = "Transformer block"

    def __init__(self, width: int, heads: int, ffn_expansion: float) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(width)
        self.attn = MDTA(width, heads)
        self.norm2 = LayerNorm2d(width)
        self.ffn = GDFN(width, ffn_expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


# --------------------------------------------------------------------------------------------
# LGCM, FEU, FRM
# --------------------------------------------------------------------------------------------


class LGCM(nn.Module):
    """Local-Global feature Cooperation Module (paper Sec. III-A, Fig. 2).

    ``LGCM(x) = TBs(LB_out(FSAU(LB_in(x)))) + x``. The figure shows FSAU -> Transformer blocks;
    the authors' code adds two local blocks around the FSAU. ``fsau`` and
    ``transformer`` are ``None`` when switched off in the config.
    Shapes: ``(N, C, H, W) -> (N, C, H, W)``.
    """

    paper_name: ClassVar[str] = "LGCM"
    # How the cost tables name the children (the figure draws FSAU -> Transformer blocks; the two
    # local blocks are the code's addition).
    paper_parts: ClassVar[dict[str, str]] = {
        "local_in": "local blocks",
        "fsau": "FSAU",
        "local_out": "local blocks",
        "transformer": "Transformer blocks",
    }

    def __init__(self, width: int, blocks: int, heads: int, cfg: CTCNetConfig) -> None:
        super().__init__()
        self.local_in = LocalBlock(width, cfg.ca_reduction)
        self.fsau = (
            FSAU(width, cfg.fsau_width, cfg.fsau_depth, cfg.ca_reduction) if cfg.use_fsau else None
        )
        self.local_out = LocalBlock(width, cfg.ca_reduction)
        self.transformer = (
            nn.Sequential(*(TransformerBlock(width, heads, cfg.ffn_expansion) for _ in range(blocks)))
            if cfg.use_transformer and blocks > 0
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.local_in(x)
        if self.fsau is not None:
            y = self.fsau(y)
        y = self.local_out(y)
        if self.transformer is not None:
            y = self.transformer(y)
        return y + x


class FEU(nn.Module):
    """Feature Enhancement Unit (inside FRM): splits the features into a low-frequency part
    (2x2 average pool) and a high-frequency residual, processes them with two weight-shared
    local blocks (each used twice), and merges them with a multiplicative gate.

    Follows the authors' code: with ``Up`` a bilinear (align_corners) resize to
    the input size, ``s1, s2`` learnable scalars (init 0.5)::

        L = avgpool(a); Hf = a - Up(L)
        L1 = LB_low(L); H1 = LB_high(Hf)
        Z  = compress(concat[s1*Up(L1), s2*H1])
        Y1 = s1*LB_high(Z); Y2 = s2*Up(LB_low(L1))
        FEU(a) = ReLU(merge(concat[Y2, Y1])) + a * gate(a)     # gate is a 1x1 conv, unbounded

    Shapes: ``(N, C, H, W) -> (N, C, H, W)``.
    """

    paper_name: ClassVar[str] = "FEU"

    def __init__(self, width: int, ca_reduction: int = 16) -> None:
        super().__init__()
        self.low_branch = LocalBlock(width, ca_reduction)
        self.high_branch = LocalBlock(width, ca_reduction)
        self.compress = nn.Conv2d(2 * width, width, 1)
        self.gate = nn.Conv2d(width, width, 1)
        self.merge = nn.Conv2d(2 * width, width, 1, bias=False)
        self.scale_low = nn.Parameter(torch.full((1,), 0.5))
        self.scale_high = nn.Parameter(torch.full((1,), 0.5))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        size = a.shape[-2:]

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, size=size, mode="bilinear", align_corners=True)

        low = F.avg_pool2d(a, 2)
        high = a - up(low)
        low1 = self.low_branch(low)
        high1 = self.high_branch(high)
        z = self.compress(torch.cat([self.scale_low * up(low1), self.scale_high * high1], dim=1))
        y_high = self.scale_low * self.high_branch(z)
        y_low = self.scale_high * up(self.low_branch(low1))
        return F.relu(self.merge(torch.cat([y_low, y_high], dim=1))) + a * self.gate(a)


class FRM(nn.Module):
    """Feature Refinement Module (paper Sec. III-C): FSAU then FEU, with a residual skip.

    In the code the FSAU is wrapped by two local blocks, and the second one (``local_mid``) is
    applied again after the FEU, as in the authors' code::

        a = LB_mid(FSAU(LB_in(x)));  FRM(x) = LB_mid(FEU(a)) + x

    Shapes: ``(N, C, H, W) -> (N, C, H, W)``.
    """

    paper_name: ClassVar[str] = "FRM"
    paper_parts: ClassVar[dict[str, str]] = {
        "local_in": "local blocks",
        "fsau": "FSAU",
        "local_mid": "local blocks",
        "feu": "FEU",
    }

    def __init__(self, width: int, cfg: CTCNetConfig) -> None:
        super().__init__()
        self.local_in = LocalBlock(width, cfg.ca_reduction)
        self.fsau = (
            FSAU(width, cfg.fsau_width, cfg.frm_fsau_depth, cfg.ca_reduction)
            if cfg.use_fsau
            else None
        )
        self.local_mid = LocalBlock(width, cfg.ca_reduction)
        self.feu = FEU(width, cfg.ca_reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.local_in(x)
        if self.fsau is not None:
            a = self.fsau(a)
        a = self.local_mid(a)
        return self.local_mid(self.feu(a)) + x


# --------------------------------------------------------------------------------------------
# Resampling and multi-scale fusion
# --------------------------------------------------------------------------------------------


class Downsample(nn.Module):
    """Downsampling (Fig. 2): 3x3 conv stride 2 -> LeakyReLU(0.2) -> 3x3 conv -> LeakyReLU(0.2),
    no biases. Shapes: ``(N, Cin, H, W) -> (N, Cout, H/2, W/2)``."""

    paper_name: ClassVar[str] = "Downsampling"

    def __init__(self, in_width: int, out_width: int) -> None:
        super().__init__()
        self.resample = nn.Conv2d(in_width, out_width, 3, stride=2, padding=1, bias=False)
        self.conv = nn.Conv2d(out_width, out_width, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.resample(x), 0.2)
        return F.leaky_relu(self.conv(x), 0.2)


class Upsample(nn.Module):
    """Upsampling (Fig. 2): 6x6 transposed conv stride 2 (exact x2) -> LeakyReLU(0.2) -> 3x3
    conv -> LeakyReLU(0.2), no biases. Shapes: ``(N, Cin, H, W) -> (N, Cout, 2H, 2W)``."""

    paper_name: ClassVar[str] = "Upsampling"

    def __init__(self, in_width: int, out_width: int) -> None:
        super().__init__()
        self.resample = nn.ConvTranspose2d(in_width, out_width, 6, stride=2, padding=2, bias=False)
        self.conv = nn.Conv2d(out_width, out_width, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.resample(x), 0.2)
        return F.leaky_relu(self.conv(x), 0.2)


class CrossScaleResampler(nn.Module):
    """The un-activated resamplers that bring the encoder features ``E1, E2, E3`` (at
    ``H, H/2, H/4``) to each MFFU's scale. Shared by the three MFFUs, as in the reference:
    ``e1_down`` is used three times (twice for ``H/4``, once for ``H/2``) and ``e3_up2`` twice in
    a row.

    ``to_quarter``, ``to_half`` and ``to_full`` return the two encoder features that are not
    already at that scale, in the order the MFFU concatenates them.
    """

    paper_name: ClassVar[str] = "MFFU resamplers"

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.e1_down = nn.Conv2d(c1, c1, 3, stride=2, padding=1)
        self.e2_down = nn.Conv2d(c2, c2, 3, stride=2, padding=1)
        self.e3_up = nn.ConvTranspose2d(c3, c3, 8, stride=2, padding=3)
        self.e2_up = nn.ConvTranspose2d(c2, c2, 8, stride=2, padding=3)
        self.e3_up2 = nn.ConvTranspose2d(c3, c3, 6, stride=2, padding=2)

    def to_quarter(self, e1: torch.Tensor, e2: torch.Tensor) -> list[torch.Tensor]:
        return [self.e2_down(e2), self.e1_down(self.e1_down(e1))]

    def to_half(self, e1: torch.Tensor, e3: torch.Tensor) -> list[torch.Tensor]:
        return [self.e1_down(e1), self.e3_up(e3)]

    def to_full(self, e2: torch.Tensor, e3: torch.Tensor) -> list[torch.Tensor]:
        return [self.e2_up(e2), self.e3_up2(self.e3_up2(e3))]


class MFFU(nn.Module):
    """Multi-scale Feature Fusion Unit (paper Sec. III-D): concatenates the upsampled decoder
    feature with all encoder features brought to its scale, fuses them with a 3x3 conv and
    re-weights channels with CA. Shapes: ``sum(Ci) -> (N, Cout, H, W)``."""

    paper_name: ClassVar[str] = "MFFU"
    paper_parts: ClassVar[dict[str, str]] = {"fuse": "fusion convs", "attention": "CA"}

    def __init__(self, in_width: int, out_width: int, ca_reduction: int = 16) -> None:
        super().__init__()
        self.fuse = nn.Conv2d(in_width, out_width, 3, padding=1)
        self.attention = ChannelAttention(out_width, ca_reduction)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.attention(self.fuse(torch.cat(list(features), dim=1)))


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PaperUnit:
    """One box of the paper's Fig. 2 (or one part of it) as a :class:`CTCNet` builds it.

    Attributes
    ----------
    path : module path inside the model, e.g. ``"encoder.0"`` or ``"encoder.0.fsau"``.
    paper_name : the box's name in the paper (the class's ``paper_name``): ``"LGCM"``, ``"FRM"``,
        ``"MFFU"``, ``"Downsampling"``, ``"Upsampling"``, or ``"Conv kxk"`` for head and tail.
    part : ``""`` for a whole box; for a part, the container's name for it (``paper_parts``):
        ``"local blocks"``, ``"FSAU"``, ``"Transformer blocks"``, ``"FEU"``, ``"fusion convs"``,
        ``"CA"``; ``"resamplers"`` for the encoder-feature resamplers the MFFUs share.
    stage : ``"head"``, ``"encoder"``, ``"bottleneck"``, ``"decoder"`` or ``"tail"``.
    scale : resolution of the unit's output relative to the input (1, 1/2, 1/4, 1/8), or
        ``None`` for the shared resamplers, which work at every scale.
    module : the module itself.
    """

    path: str
    paper_name: str
    part: str
    stage: str
    scale: float | None
    module: nn.Module


class CTCNet(nn.Module):
    """CTCNet (paper Fig. 2): a three-stage U-shaped encoder-decoder of LGCMs with FRMs in the
    bottleneck, MFFUs before every decoder stage, and a global residual.

    Input: ``(N, 3, H, W)`` float in ``[-1, 1]`` (the LR face bicubic-upsampled to ``H x W``),
    ``H, W`` multiples of :attr:`size_multiple` and at least :attr:`min_input_size`.
    Output: the same shape and scale, not clamped.
    """

    def __init__(self, config: CTCNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or CTCNetConfig()
        self.config = cfg
        c1, c2, c3 = cfg.widths
        self.head = nn.Conv2d(cfg.in_channels, c1, 3, padding=1)
        self.encoder = nn.ModuleList(
            LGCM(w, n, h, cfg) for w, n, h in zip(cfg.widths, cfg.encoder_blocks, cfg.heads)
        )
        self.downsample = nn.ModuleList(
            [Downsample(c1, c2), Downsample(c2, c3), Downsample(c3, c3)]
        )
        self.bottleneck = nn.Sequential(*(FRM(c3, cfg) for _ in range(cfg.num_frm)))
        self.upsample = nn.ModuleList([Upsample(c3, c3), Upsample(c3, c2), Upsample(c2, c1)])
        if cfg.use_mffu:
            self.resampler = CrossScaleResampler(cfg.widths)
            self.fusion = nn.ModuleList(
                [
                    MFFU(c3 + c3 + c2 + c1, c3, cfg.ca_reduction),
                    MFFU(c2 + c2 + c1 + c3, c2, cfg.ca_reduction),
                    MFFU(c1 + c1 + c2 + c3, c1, cfg.ca_reduction),
                ]
            )
        else:
            self.resampler = None
            self.fusion = None
        decoder_widths = (c3, c2, c1)
        decoder_heads = tuple(reversed(cfg.heads))
        self.decoder = nn.ModuleList(
            LGCM(w, n, h, cfg) for w, n, h in zip(decoder_widths, cfg.decoder_blocks, decoder_heads)
        )
        self.tail = nn.Conv2d(c1, cfg.in_channels, 3, padding=1)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return self.config.size_multiple

    @property
    def min_input_size(self) -> int:
        """Smallest allowed input height and width."""
        return self.config.min_input_size

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a one-line ``ValueError`` naming the broken rule if ``x`` is not a valid input."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"CTCNet expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"CTCNet expects a 4-D batch (N, C, H, W), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"CTCNet expects a floating-point tensor in [-1, 1], got {x.dtype}")
        weights = self.head.weight.dtype  # the weights decide; autocast converts by itself
        if x.dtype != weights and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(
                f"CTCNet's weights are {weights} but the input is {x.dtype}: pass x.to({weights})"
            )
        n, c, h, w = x.shape
        if c != self.config.in_channels:
            raise ValueError(f"CTCNet expects {self.config.in_channels} channels, got {c}")
        m, lo = self.size_multiple, self.min_input_size
        if h % m or w % m:
            raise ValueError(f"input size {h}x{w}: height and width must be multiples of {m}")
        if h < lo or w < lo:
            raise ValueError(f"input size {h}x{w}: height and width must be at least {lo}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        e1 = self.encoder[0](self.head(x))
        e2 = self.encoder[1](self.downsample[0](e1))
        e3 = self.encoder[2](self.downsample[1](e2))
        y = self.bottleneck(self.downsample[2](e3))

        y = self.upsample[0](y)
        y = self._fuse(0, [y, e3], lambda: self.resampler.to_quarter(e1, e2))
        y = self.decoder[0](y)
        y = self.upsample[1](y)
        y = self._fuse(1, [y, e2], lambda: self.resampler.to_half(e1, e3))
        y = self.decoder[1](y)
        y = self.upsample[2](y)
        y = self._fuse(2, [y, e1], lambda: self.resampler.to_full(e2, e3))
        y = self.decoder[2](y)
        return self.tail(y) + x

    def _fuse(self, index: int, same_scale: list[torch.Tensor], other_scales) -> torch.Tensor:
        if self.fusion is None:
            return same_scale[0] + same_scale[1]
        return self.fusion[index](same_scale + other_scales())

    def extra_repr(self) -> str:
        return f"min_input_size={self.min_input_size}, size_multiple={self.size_multiple}"

    def units(self, parts: bool = False) -> list[PaperUnit]:
        """The boxes of the paper's Fig. 2 as this model builds them, in forward order.

        ``head``, then per encoder stage its LGCM and Downsampling, the FRMs of the bottleneck,
        per decoder stage its Upsampling, MFFU (the shared ``resamplers`` are listed just before
        the first MFFU) and LGCM, and ``tail``. Paths come from the module tree and names from
        the classes' ``paper_name``; the scale is tracked through the resamplers (each
        Downsampling halves it, each Upsampling doubles it), so a config with other depths or
        an ablation switch off is described without any change here.

        With ``parts=True`` every box that names its children in ``paper_parts`` (LGCM, FRM,
        MFFU) is replaced by those children, in registration order: the finest level at which
        the paper describes the network, and a partition of every parameter and every
        operation of the forward pass except the global residual addition. A child that its
        container does not name keeps its attribute name as ``part``, so it shows up in
        results under that name rather than disappearing.
        """
        paths = {id(m): name for name, m in self.named_modules()}

        def unit(module: nn.Module, stage: str, scale: float | None, paper_name: str = "",
                 part: str = "") -> PaperUnit:
            name = paper_name or type(module).paper_name
            return PaperUnit(paths[id(module)], name, part, stage, scale, module)

        def conv_name(conv: nn.Conv2d) -> str:
            kh, kw = conv.kernel_size
            return f"Conv {kh}x{kw}"

        scale = 1.0
        boxes = [unit(self.head, "head", scale, conv_name(self.head))]
        for lgcm, down in zip(self.encoder, self.downsample):
            boxes.append(unit(lgcm, "encoder", scale))
            scale /= 2
            boxes.append(unit(down, "encoder", scale))
        boxes += [unit(frm, "bottleneck", scale) for frm in self.bottleneck]
        for i, (up, lgcm) in enumerate(zip(self.upsample, self.decoder)):
            scale *= 2
            boxes.append(unit(up, "decoder", scale))
            if self.fusion is not None:
                if i == 0:
                    boxes.append(unit(self.resampler, "decoder", None, MFFU.paper_name,
                                      "resamplers"))
                boxes.append(unit(self.fusion[i], "decoder", scale))
            boxes.append(unit(lgcm, "decoder", scale))
        boxes.append(unit(self.tail, "tail", scale, conv_name(self.tail)))
        if not parts:
            return boxes
        units = []
        for box in boxes:
            named = getattr(type(box.module), "paper_parts", None)
            if named is None:
                units.append(box)
                continue
            for attribute, child in box.module.named_children():
                units.append(unit(child, box.stage, box.scale, box.paper_name,
                                  named.get(attribute, attribute)))
        return units


"""ctcnet.analysis: FLOP conventions, receptive fields, LAM / captum attributions, attention maps.

Every numeric check is against a closed form written out here, an independent count (module by
module, class by class) or a number measured with the real tools (benchmarks/flop_counters.md).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ctcnet
from ctcnet import analysis as A
from ctcnet.analysis import attribution, cost
from ctcnet.analysis.receptive_field import ReceptiveFieldError, trace_receptive_fields
from ctcnet.model import (
    FRM,
    FSAU,
    LGCM,
    MDTA,
    ChannelAttention,
    CTCNetConfig,
    Downsample,
    LayerNorm2d,
    TransformerBlock,
)


@pytest.fixture(scope="module")
def official_meta():
    with torch.device("meta"):
        return ctcnet.build_model("official").eval()


# ------------------------------------------------------------------------------------------
# FLOPs: closed forms
# ------------------------------------------------------------------------------------------


def test_conv2d_flops_match_the_closed_form():
    conv = nn.Conv2d(6, 10, 3, stride=2, padding=1, groups=2)
    # output 9 x 10; MACs = N * Cout * Hout * Wout * (Cin / groups) * k * k
    macs = 2 * 10 * 9 * 10 * 3 * 9
    assert cost.count_flops(conv, (2, 6, 17, 19)) == 2 * macs
    assert cost.fvcore_style_macs(conv, (2, 6, 17, 19)).total == macs
    assert cost.thop_style_flops(conv, (2, 6, 17, 19)).total == macs


def test_conv_transpose_flops_and_the_thop_overcount():
    up = nn.ConvTranspose2d(6, 4, 6, stride=2, padding=2, bias=False)
    # true MACs: every input pixel times the whole Cin x Cout x 6 x 6 kernel
    macs = 8 * 8 * 6 * 4 * 36
    assert cost.count_flops(up, (1, 6, 8, 8)) == 2 * macs
    assert cost.fvcore_style_macs(up, (1, 6, 8, 8)).total == macs
    # thop: output elements (4 x 16 x 16) x Cin x 36 = stride^2 x the true count
    assert cost.thop_style_flops(up, (1, 6, 8, 8)).total == 4 * 16 * 16 * 6 * 36 == 4 * macs


def test_mdta_flops_match_the_closed_form():
    c, heads, h, w = 16, 2, 12, 10
    hw = h * w
    macs = 3 * c * c * hw + 27 * c * hw + c * c * hw + 2 * (c // heads) ** 2 * hw * heads
    assert cost.mdta_flops(c, heads, h, w) == 2 * macs
    assert cost.count_flops(MDTA(c, heads), (1, c, h, w)) == 2 * macs
    assert cost.mdta_flops(c, heads, h, w, projections=False) == 4 * c * c * hw // heads


def test_attention_cost_is_linear_for_mdta_and_quadratic_for_spatial_attention():
    small = [f(32, 2, 16, 16, projections=False) for f in (cost.mdta_flops,
                                                            cost.spatial_attention_flops)]
    large = [f(32, 2, 32, 32, projections=False) for f in (cost.mdta_flops,
                                                            cost.spatial_attention_flops)]
    assert large[0] == 4 * small[0]  # 4x the pixels
    assert large[1] == 16 * small[1]
    assert cost.spatial_attention_flops(32, 1, 16, 16, projections=False) == 4 * 256**2 * 32


# ------------------------------------------------------------------------------------------
# FLOPs and parameters of the official model (meta device: no arithmetic)
# ------------------------------------------------------------------------------------------


def test_official_flopcounter_total(official_meta):
    assert cost.count_flops(official_meta, (1, 3, 128, 128)) == 59_950_977_280


def test_official_thop_style_matches_the_measured_thop(official_meta):
    res = cost.thop_style_flops(official_meta, (1, 3, 128, 128))
    assert res.total == pytest.approx(47.23e9, rel=5e-3)
    assert res.params == 22_397_147  # thop's parameter total measured on the reference code
    # The reference code's CA and FEU use nn.AdaptiveAvgPool2d / nn.AvgPool2d modules, which thop
    # counts as (H*W + 1) per output element and 1 per output element; ctcnet calls them
    # functionally (invisible to thop). Adding them back gives the measured number exactly.
    extra = []

    def ca_hook(module, inputs, output):
        n, c, h, w = inputs[0].shape
        extra.append(n * c * (h * w + 1))

    handles = [m.register_forward_hook(ca_hook) for m in official_meta.modules()
               if isinstance(m, ChannelAttention)]
    try:
        with torch.no_grad():
            official_meta(torch.empty(1, 3, 128, 128, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    feu_pool = 4 * 128 * 8 * 8  # 4 FRMs, 2x2 average pool of 128 x 16 x 16
    assert res.total + sum(extra) + feu_pool == 47_226_812_768


def test_official_fvcore_style_matches_the_measured_fvcore(official_meta):
    res = cost.fvcore_style_macs(official_meta, (1, 3, 128, 128))
    assert res.total == pytest.approx(30.01e9, rel=5e-3)
    # attention matmuls: sum over blocks of 2 * C^2 * HW / heads (the real fvcore's matmul count)
    assert res.by_kind["matmul"] == 570_425_344
    # the reference's custom LayerNorm (mean/var) is invisible to fvcore; ctcnet's fused
    # F.layer_norm is counted 5 x elements. Without it: the measured fvcore number.
    assert res.total - res.by_kind.get("norm", 0) == 30_005_774_464


def test_flops_by_module_rows_add_up(tiny):
    shape = (1, 3, 32, 32)
    total = cost.count_flops(tiny, shape)
    for kwargs in ({"depth": 1}, {"depth": 2}, {"by": "paper"}):
        df = cost.flops_by_module(tiny, shape, **kwargs)
        assert df["module"].iloc[-1] == "total"
        assert df["flops"].iloc[-1] == total
        assert df["flops"].iloc[:-1].sum() == total
        assert "other" not in set(df["module"])


def test_flops_by_type_covers_the_classes_that_profile_modules_times(tiny):
    shape = (1, 3, 32, 32)
    df = cost.flops_by_module(tiny, shape, by="type").set_index("module")
    assert df.index[-1] == "total"
    assert df.loc["total", "flops"] == cost.count_flops(tiny, shape)  # the forward, not a sum
    prof = cost.profile_modules(tiny, torch.zeros(shape), repeats=1, warmup=0)
    assert set(df.index[:-1]) == set(prof.loc[prof["level"] == "type", "module"])
    # classes nest: an MDTA is inside a TransformerBlock, which is inside an LGCM
    assert 0 < df.loc["MDTA", "flops"] < df.loc["TransformerBlock", "flops"] < df.loc["LGCM", "flops"]
    # and a class's row is the sum over its instances, each counted on its own input
    shapes = {}
    hooks = [m.register_forward_pre_hook(lambda m, inp: shapes.__setitem__(m, inp[0].shape))
             for m in tiny.modules() if isinstance(m, LGCM)]
    with torch.no_grad():
        tiny(torch.zeros(shape))
    for h in hooks:
        h.remove()
    assert df.loc["LGCM", "flops"] == sum(cost.count_flops(m, s) for m, s in shapes.items())


@pytest.mark.parametrize("overrides", [{}, {"use_mffu": False, "use_fsau": False}])
def test_count_params_groups_sum_to_the_total(overrides):
    model = ctcnet.build_model("reduced", **overrides)
    total = sum(p.numel() for p in model.parameters())
    for by in ("paper", "module"):
        df = cost.count_params(model, by=by)
        assert df["params"].iloc[-1] == total
        assert df["params"].iloc[:-1].sum() == total
    paper = cost.count_params(model)
    assert {"LGCM", "FRM", "Downsampling", "Upsampling", "head+tail"} <= set(paper["module"])


def test_scaling_table_and_profile(tiny):
    table = cost.scaling_table(tiny, sizes=(24, 48))
    assert list(table["size"]) == [24, 48]
    assert table["gflops"].iloc[1] > 3.9 * table["gflops"].iloc[0]
    with pytest.raises(ValueError):
        cost.scaling_table(tiny, sizes=(30,))
    prof = cost.profile_modules(tiny, torch.zeros(1, 3, 32, 32), repeats=1, warmup=0)
    assert prof["module"].iloc[-1] == "forward"
    assert {"LGCM", "MDTA"} <= set(prof.loc[prof["level"] == "type", "module"])


# ------------------------------------------------------------------------------------------
# Receptive fields
# ------------------------------------------------------------------------------------------


def test_erf_of_three_all_ones_convs_is_the_triple_box_filter():
    stack = nn.Sequential(*(nn.Conv2d(1, 1, 3, padding=1, bias=False) for _ in range(3)))
    for conv in stack:
        nn.init.ones_(conv.weight)
    res = A.effective_receptive_field(stack, n_inputs=2, size=21, residual=False, channels=1)
    # d y_c / d x = (box * box * box)(offset): 1-D weights 1 3 6 7 6 3 1, outer product
    one_d = np.array([1, 3, 6, 7, 6, 3, 1], dtype=float)
    expected = np.zeros((21, 21))
    expected[7:14, 7:14] = np.outer(one_d, one_d)
    np.testing.assert_allclose(res.map, expected / expected.sum(), atol=1e-12)
    assert res.radii[1.0] == 3
    assert (res.map > 0).sum() == 49
    assert A.erf_radius(res.map, 1.0, metric="euclidean") == pytest.approx(np.sqrt(18))


def test_erf_radius_of_a_delta_and_a_ring():
    m = np.zeros((11, 11))
    m[5, 5] = 1.0
    assert A.erf_radius(m, 0.5) == 0
    m[5, 9] = 1.0  # half the mass at Chebyshev distance 4
    assert A.erf_radius(m, 0.5) == 0
    assert A.erf_radius(m, 0.9) == 4


def test_theoretical_rf_matches_the_hand_count():
    for preset in ("official", "tiny"):
        cfg = ctcnet.PRESETS[preset]
        df = A.theoretical_receptive_field(cfg).set_index("unit")
        # head 3; local blocks 2 x 10; FSAU hourglass of depth D: 6 * 2^D - 2; 4 per TB
        expected = 3 + 20 + (6 * 2**cfg.fsau_depth - 2) + 4 * cfg.encoder_blocks[0]
        assert df.loc["encoder.0", "rf"] == expected
        assert df.loc["encoder.0", "global_context"]
        assert not df.loc["head", "global_context"]
        assert df.loc["downsample.2", "scale"] == 0.125
        assert df["rf"].is_monotonic_increasing


def test_receptive_field_rules_on_small_networks():
    def field(module, shape=(1, 2, 16, 16)):
        return trace_receptive_fields(module.to("meta"), torch.zeros(shape, device="meta"))[1]

    def conv(k=3, stride=1, channels=2):
        return nn.Conv2d(channels, channels, k, stride=stride, padding=k // 2)

    def size_and_jump(module, shape=(1, 2, 16, 16)):
        r = field(module, shape)
        return r.size, r.jump

    assert size_and_jump(nn.Sequential(conv(), conv(), conv())) == (7, 1)
    assert size_and_jump(nn.Sequential(conv(3, 2), conv())) == (3 + 2 * 2, 2)
    # a 6x6 stride-2 transposed conv: each output receives ceil(6 / 2) = 3 inputs per axis
    assert size_and_jump(nn.ConvTranspose2d(2, 2, 6, stride=2, padding=2)) == (3, Fraction(1, 2))
    # unshuffle (2 taps, jump 2), 3x3 conv at jump 2 (+4), shuffle back to jump 1
    shuffle = nn.Sequential(nn.PixelUnshuffle(2), conv(channels=8), nn.PixelShuffle(2))
    assert size_and_jump(shuffle) == (6, 1)
    assert size_and_jump(nn.AvgPool2d(2)) == (2, 2)
    assert size_and_jump(nn.Upsample(scale_factor=2, mode="bilinear")) == (2, Fraction(1, 2))
    assert size_and_jump(nn.Upsample(scale_factor=2, mode="nearest")) == (1, Fraction(1, 2))
    # global operators set the flag and leave the local reach alone
    assert not field(nn.Sequential(conv(), conv())).global_context
    squeeze = field(ChannelAttention(2, 1))
    assert squeeze.global_context and squeeze.size == 1
    mdta = field(MDTA(4, 2), (1, 4, 8, 8))  # 1x1, depth-wise 3x3, attention over all pixels
    assert mdta.global_context and mdta.size == 3
    norm = field(LayerNorm2d(2))  # normalises the channels of each pixel: local
    assert not norm.global_context and norm.size == 1

    class Softmax(nn.Module):  # softmax over the flattened pixels or over the channels
        def __init__(self, dim):
            super().__init__()
            self.dim = dim

        def forward(self, x):
            return x.flatten(2).softmax(self.dim).reshape(x.shape)

    assert field(Softmax(-1)).global_context
    assert not field(Softmax(1)).global_context


def test_receptive_field_refuses_an_operator_without_a_rule():
    class Flip(nn.Module):
        def forward(self, x):
            return x.flip(-1)

    with pytest.raises(ReceptiveFieldError, match="flip"):
        trace_receptive_fields(Flip(), torch.zeros(1, 1, 8, 8, device="meta"))


def test_theoretical_rf_refuses_an_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        A.theoretical_receptive_field("huge")


# ------------------------------------------------------------------------------------------
# The model's own units drive every grouping
# ------------------------------------------------------------------------------------------


def _meta_model(preset_or_config, **overrides):
    with torch.device("meta"):
        if isinstance(preset_or_config, CTCNetConfig):
            return ctcnet.CTCNet(preset_or_config).eval()
        return ctcnet.build_model(preset_or_config, **overrides).eval()


VARIANTS = [
    ("official", {}),
    ("reduced", {}),
    ("tiny", {}),
    ("tiny", {"use_mffu": False}),
    ("tiny", {"use_fsau": False, "use_transformer": False}),
    ("tiny", {"num_frm": 0}),
]


@pytest.mark.parametrize("preset,overrides", VARIANTS)
def test_units_partition_every_parameter_and_flop(preset, overrides):
    model = _meta_model(preset, **overrides)
    paths = [u.path for u in model.units(parts=True)]
    assert len(set(paths)) == len(paths)
    for name, _ in model.named_parameters():
        assert sum(name.startswith(path + ".") for path in paths) == 1, name
    assert "other" not in set(cost.count_params(model)["module"])
    assert "other" not in set(cost.count_params(model, by="module")["module"])
    side = model.min_input_size
    flops = cost.flops_by_module(model, (1, 3, side, side), by="paper")
    assert "other" not in set(flops["module"])


def test_units_are_listed_in_call_order_with_their_scale():
    model = _meta_model("tiny")
    units = model.units()
    called, scales = [], {}

    def hook_for(path):
        def hook(module, inputs, output):
            called.append(path)
            scales[path] = output.shape[-1] / 32

        return hook

    handles = [u.module.register_forward_hook(hook_for(u.path)) for u in units]
    try:
        model(torch.zeros(1, 3, 32, 32, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    # every unit but the shared resamplers (used through methods) runs once, in listed order
    assert called == [u.path for u in units if u.scale is not None]
    assert all(u.scale == scales[u.path] for u in units if u.scale is not None)


class Refined(ctcnet.CTCNet):
    """CTCNet with one more convolution that ``units()`` does not know about."""

    def __init__(self, config):
        super().__init__(config)
        self.refine = nn.Conv2d(config.in_channels, config.in_channels, 3, padding=1)

    def forward(self, x):
        return self.refine(super().forward(x))


def test_a_module_outside_the_units_is_reported_as_other_not_dropped():
    model = Refined(ctcnet.PRESETS["tiny"]).eval()
    params = cost.count_params(model).set_index(["module", "part"])["params"]
    assert params[("other", "refine")] == 3 * 3 * 9 + 3
    assert params.iloc[:-1].sum() == sum(p.numel() for p in model.parameters())
    flops = cost.flops_by_module(model, (1, 3, 32, 32), by="paper").set_index("module")["flops"]
    assert flops["other"] == 2 * 3 * 32 * 32 * 3 * 9
    table = cost.compare_conventions(model, (1, 3, 32, 32)).set_index("module")
    assert table.loc["other", "fvcore_gmac"] == pytest.approx(3 * 32 * 32 * 3 * 9 / 1e9)


# A configuration that is no preset: other widths, depths and heads, a stage without
# Transformer blocks, two FRMs with shallow hourglasses, and no MFFU.
ODD = CTCNetConfig(base_width=12, encoder_blocks=(2, 0, 1), decoder_blocks=(0, 1, 2),
                   heads=(3, 2, 4), ffn_expansion=2.0, fsau_width=6, fsau_depth=1,
                   frm_fsau_depth=1, num_frm=2, ca_reduction=4, use_mffu=False)


def test_cost_groups_of_a_config_that_is_not_a_preset():
    model = ctcnet.CTCNet(ODD).eval()

    def params_of(modules):
        return sum(p.numel() for m in modules for p in m.parameters())

    def inside(containers, kind):
        return [m for c in containers for m in c.modules() if isinstance(m, kind)]

    lgcms = [m for m in model.modules() if isinstance(m, LGCM)]
    frms = [m for m in model.modules() if isinstance(m, FRM)]
    assert len(lgcms) == 6 and len(frms) == 2
    params = cost.count_params(model).set_index(["module", "part"])["params"]
    blocks = params_of(inside(lgcms, TransformerBlock))
    fsaus = params_of(inside(lgcms, FSAU))
    assert params[("LGCM", "Transformer blocks")] == blocks
    assert params[("LGCM", "FSAU")] == fsaus
    assert params[("LGCM", "local blocks")] == params_of(lgcms) - blocks - fsaus
    assert params.xs("FRM").sum() == params_of(frms)
    assert params[("Downsampling", "")] == params_of(inside([model], Downsample))
    assert not {"MFFU", "other"} & set(params.index.get_level_values(0))

    side = 32
    flops = cost.flops_by_module(model, (1, 3, side, side), by="paper")
    by_module = flops.set_index(["module", "part"])["flops"]
    c3 = ODD.widths[2]
    frm_flops = sum(cost.count_flops(f, (1, c3, side // 8, side // 8)) for f in frms)
    assert by_module.xs("FRM").sum() == frm_flops
    assert "other" not in set(flops["module"])
    assert flops["flops"].iloc[:-1].sum() == cost.count_flops(model, (1, 3, side, side))


def test_receptive_fields_of_a_config_that_is_not_a_preset():
    trf = A.theoretical_receptive_field(ODD).set_index("unit")
    assert list(trf.index) == [
        "head", "encoder.0", "downsample.0", "encoder.1", "downsample.1", "encoder.2",
        "downsample.2", "bottleneck.0", "bottleneck.1", "upsample.0", "decoder.0",
        "upsample.1", "decoder.1", "upsample.2", "decoder.2", "tail",
    ]

    def lgcm(blocks):  # two local blocks (10 each), FSAU of depth 1 (6 * 2 - 2), 4 per block
        return 20 + (6 * 2**ODD.fsau_depth - 2) + 4 * blocks

    down = 2 + 2 * 2  # 3x3 stride 2, then 3x3 at twice the jump
    e0 = 3 + lgcm(2)
    e1 = e0 + down + 2 * lgcm(0)
    e2 = e1 + 2 * down + 4 * lgcm(1)
    assert trf.loc[["encoder.0", "encoder.1", "encoder.2"], "rf"].tolist() == [e0, e1, e2]
    model = ctcnet.CTCNet(ODD)
    scales = {u.path: u.scale for u in model.units()}
    assert all(trf.loc[path, "scale"] == scales[path] for path in trf.index)
    assert trf["global_context"].tolist() == [False] + [True] * (len(trf) - 1)
    assert trf["rf"].is_monotonic_increasing


def test_flop_conventions_match_the_real_thop_and_fvcore_on_tiny():
    """Dev-only drift check of our re-implementations against the packages themselves."""
    import copy
    import io
    import logging
    import warnings
    from contextlib import redirect_stdout
    from importlib import metadata

    thop = pytest.importorskip(
        "thop", reason="dev-only check: pip install thop==0.1.1.post2209072238 to run it")
    fvcore_nn = pytest.importorskip(
        "fvcore.nn", reason="dev-only check: pip install fvcore==0.1.5.post20221221 to run it")
    versions = f"thop {metadata.version('thop')}, fvcore {metadata.version('fvcore')}"
    torch.manual_seed(0)
    model = ctcnet.build_model("tiny").eval()
    shape = (1, 3, 32, 32)
    x = torch.rand(shape) * 2 - 1
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, params = thop.profile(copy.deepcopy(model), inputs=(x,), verbose=False)
        analysis = fvcore_nn.FlopCountAnalysis(copy.deepcopy(model), (x,))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        fvcore_total = int(analysis.total())
    ours = cost.thop_style_flops(model, shape)
    assert (ours.total, ours.params) == (int(macs), int(params)), versions
    assert cost.fvcore_style_macs(model, shape).total == fvcore_total, versions


# ------------------------------------------------------------------------------------------
# LAM and Diffusion Index
# ------------------------------------------------------------------------------------------


def test_gini_and_diffusion_index():
    uniform = np.ones((16, 16))
    one = np.zeros((16, 16))
    one[3, 4] = 1.0
    n = one.size
    assert A.diffusion_index(uniform) == pytest.approx(100.0)
    assert A.diffusion_index(one, corrected=True) == pytest.approx(0.0, abs=1e-12)
    # the LAM code's Gini adds 1e-7 to every entry: G = (n - 1) / (n (1 + n 1e-7)) -> DI ~ 100/n
    lam_gini = (n - 1) / (n * (1 + n * 1e-7))
    assert A.diffusion_index(one) == pytest.approx((1 - lam_gini) * 100, rel=1e-9)
    assert A.gini(np.arange(4.0), corrected=False) == pytest.approx(
        (-3 * 0 - 1 * 1 + 1 * 2 + 3 * 3 + 0) / (4 * 6), rel=1e-5
    )


def test_bicubic_upsample_matches_pil_float_mode():
    rng = np.random.default_rng(0)
    lr = rng.uniform(-1, 1, size=(16, 12)).astype(np.float32)
    pil = np.asarray(Image.fromarray(lr, mode="F").resize((96, 128), Image.BICUBIC))
    ours = attribution.BicubicUpsample(8)(torch.from_numpy(lr)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(ours, pil, atol=1e-5)


def test_lam_path_integral_is_complete():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 3, 3, padding=1))
    image = torch.rand(1, 3, 24, 24) * 2 - 1
    res = A.lam(model, image, window=(8, 8, 8), steps=400, space="hr", sigma_max=2.0,
                batch_size=200)
    difference = res.objective_input - res.objective_baseline
    assert abs(difference) > 0.1
    assert abs(res.completeness_gap) < 0.01 * abs(difference)
    assert res.map.shape == (24, 24) and res.map.max() == pytest.approx(1.0)


class CopyPixel(nn.Module):
    """Every output pixel is the input pixel (p, q) times a fixed checkerboard."""

    def __init__(self, p: int, q: int, size: int) -> None:
        super().__init__()
        self.p, self.q = p, q
        board = (torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2
        self.register_buffer("board", board.float())
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x[:, :, self.p, self.q][:, :, None, None] * self.board + self.dummy


def test_lam_points_at_the_copied_pixel():
    model = CopyPixel(5, 11, 32)
    image = torch.rand(1, 3, 32, 32) * 0.2
    image[:, :, 5, 11] = 1.0
    res = A.lam(model, image, window=(20, 20, 8), steps=20, space="hr", sigma_max=2.0)
    assert np.unravel_index(res.map.argmax(), res.map.shape) == (5, 11)
    assert res.map.sum() == pytest.approx(1.0)  # nothing else is attributed
    # in LR space the attribution flows back through the bicubic upsampler: the peak is the LR
    # pixel whose bicubic weight on HR pixel (5, 11) is largest, i.e. (5 // 8, 11 // 8) = (0, 1)
    lr = torch.rand(1, 3, 4, 4) * 0.2
    lr[:, :, 0, 1] = 1.0
    res_lr = A.lam(model, lr, window=(20, 20, 8), steps=20, space="lr", scale=8)
    assert res_lr.map.shape == (4, 4)
    assert np.unravel_index(res_lr.map.argmax(), res_lr.map.shape) == (0, 1)


def test_lam_and_captum_on_tiny_ctcnet(tiny):
    torch.manual_seed(0)
    lr = torch.rand(1, 3, 4, 4) * 2 - 1
    res = A.lam(tiny, lr, window=(12, 12, 8), steps=6, batch_size=6)
    assert res.map.shape == (4, 4) and np.isfinite(res.diffusion_index)
    x = attribution.BicubicUpsample(8)(lr)
    maps = A.captum_attributions(tiny, x, (12, 12, 8), n_steps=4, internal_batch_size=4,
                                 nt_samples=2, occlusion_size=16, occlusion_stride=16, sigma=2.0)
    assert set(maps) == {"ig", "smoothgrad", "occlusion", "gradcam"}
    for m in maps.values():
        assert m.shape == (32, 32) and np.isfinite(m).all()
    assert not tiny.training


# ------------------------------------------------------------------------------------------
# Attention maps and plots
# ------------------------------------------------------------------------------------------


def test_attention_shapes(tiny):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    fsau = A.fsau_maps(tiny, x)
    assert list(fsau)[0] == "encoder.0.fsau"
    assert fsau["encoder.0.fsau"].shape == (32, 32)
    assert fsau["bottleneck.0.fsau"].shape == (4, 4)
    assert len(fsau) == 7
    mats = A.mdta_matrices(tiny, x)
    assert mats["encoder.2.transformer.0.attn"].shape == (2, 16, 16)  # heads 2, C = 32
    assert mats["encoder.0.transformer.0.attn"].shape == (1, 8, 8)
    for m in mats.values():
        torch.testing.assert_close(m.sum(-1), torch.ones(m.shape[:-1]))
    assert A.mdta_matrices(tiny, x, sample=None)["decoder.2.transformer.0.attn"].shape[0] == 2
    stats = A.attention_stats(mats)
    assert (stats["entropy_ratio"] <= 1 + 1e-9).all()


def test_plots_return_figures(tiny):
    import matplotlib.pyplot as plt

    from ctcnet.course import plotting

    x = torch.rand(1, 3, 32, 32) * 2 - 1
    figs = [
        plotting.plot_attribution_grid(x, {"a": np.random.rand(4, 4)}, window=(8, 8, 8),
                                       diffusion={"a": 12.0}),
        plotting.plot_fsau_maps(A.fsau_maps(tiny, x), image=None),
        plotting.plot_mdta_heads(A.mdta_matrices(tiny, x)["encoder.2.transformer.0.attn"]),
        plotting.plot_erf(A.effective_receptive_field(
            nn.Conv2d(3, 3, 3, padding=1), n_inputs=1, size=16, residual=False)),
    ]
    for fig in figs:
        assert isinstance(fig, plt.Figure)
        plt.close(fig)

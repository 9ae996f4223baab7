"""Effective rank, MDTA measures per head, CA weights and map-vs-region contrast
(ctcnet.analysis.attention)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ctcnet import build_model
from ctcnet.analysis import attention as A
from ctcnet.face_regions import landmark_mask
from ctcnet.model import ChannelAttention

# ------------------------------------------------------------------------------------------
# the maps themselves
# ------------------------------------------------------------------------------------------


def test_attention_maps_are_returned_not_stored():
    model = build_model("tiny").eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    output, maps = A.attention_maps(model, x)
    with torch.no_grad():
        assert torch.equal(output, model(x))
    fsau = {k: v for k, v in maps.items() if k.endswith("fsau")}
    mdta = {k: v for k, v in maps.items() if k.endswith("attn")}
    assert len(fsau) == 6 + 1 and len(mdta) == 6
    assert fsau["encoder.0.fsau"].shape == (2, 1, 32, 32)
    assert fsau["bottleneck.0.fsau"].shape == (2, 1, 4, 4)
    assert ((fsau["encoder.0.fsau"] > 0) & (fsau["encoder.0.fsau"] < 1)).all()
    attn = mdta["encoder.2.transformer.0.attn"]
    assert attn.shape == (2, 2, 16, 16)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 2, 16))
    assert all(not m._forward_hooks for m in model.modules())


def test_attention_maps_leave_a_training_model_untouched():
    model = build_model("tiny").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    A.attention_maps(model, torch.rand(2, 3, 32, 32) * 2 - 1)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ------------------------------------------------------------------------------------------
# effective rank
# ------------------------------------------------------------------------------------------


def test_effective_rank_of_known_matrices():
    assert A.effective_rank(torch.eye(5)).item() == pytest.approx(5.0)
    u, v = torch.randn(6, 1), torch.randn(1, 4)
    assert A.effective_rank(u @ v).item() == pytest.approx(1.0, abs=1e-6)  # rank 1
    uniform = torch.full((8, 8), 1 / 8)  # uniform attention: every row the same
    assert A.effective_rank(uniform).item() == pytest.approx(1.0, abs=1e-6)
    assert A.effective_rank(torch.diag(torch.tensor([3.0, 3.0, 0.0, 0.0]))).item() == pytest.approx(2.0)
    # two unequal singular values 3 and 1: p = (0.75, 0.25)
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert A.effective_rank(torch.diag(torch.tensor([3.0, 1.0]))).item() == pytest.approx(expected)
    assert A.effective_rank(torch.eye(5)[:3]).item() == pytest.approx(3.0)  # not square


def test_effective_rank_is_batched_bounded_and_scale_free():
    torch.manual_seed(1)
    a = torch.randn(2, 3, 7, 5)
    r = A.effective_rank(a)
    assert r.shape == (2, 3) and r.dtype == torch.float64
    assert ((r >= 1) & (r <= 5 + 1e-9)).all()
    torch.testing.assert_close(A.effective_rank(10 * a), r)
    torch.testing.assert_close(A.effective_rank(a[1, 2].numpy()), r[1, 2])


@pytest.mark.parametrize("bad", [torch.zeros(3, 3), torch.ones(4), torch.tensor([[1.0, float("nan")]])])
def test_effective_rank_rejects(bad):
    with pytest.raises(ValueError):
        A.effective_rank(bad)


# ------------------------------------------------------------------------------------------
# MDTA measures
# ------------------------------------------------------------------------------------------


def test_mdta_measures_of_uniform_and_identity_attention():
    d = 4
    mats = {"encoder.0.transformer.0.attn": torch.stack([torch.full((1, d, d), 1 / d), torch.eye(d)[None]])}
    m = A.mdta_measures(mats)
    assert list(m["sample"]) == [0, 1] and set(m["stage"]) == {"encoder.0"}
    uniform, identity = m.iloc[0], m.iloc[1]
    assert uniform["entropy"] == pytest.approx(math.log(d))
    assert uniform["entropy_ratio"] == pytest.approx(1.0)
    assert uniform["effective_rank"] == pytest.approx(1.0)
    assert uniform["diagonal"] == pytest.approx(1 / d)
    assert identity["entropy"] == pytest.approx(0.0)
    assert identity["effective_rank"] == pytest.approx(d)
    assert identity["rank_ratio"] == pytest.approx(1.0)


def test_mdta_measures_on_the_tiny_model(tiny):
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    mats = A.mdta_matrices(tiny, x, sample=None)
    m = A.mdta_measures(mats)
    heads = sum(a.shape[1] for a in mats.values())
    assert len(m) == 3 * heads
    assert set(m["sample"]) == {0, 1, 2}
    assert (m["entropy_ratio"] <= 1 + 1e-9).all() and (m["entropy_ratio"] > 0).all()
    assert ((m["effective_rank"] >= 1 - 1e-9) & (m["effective_rank"] <= m["channels"] + 1e-9)).all()
    # one sample as a (heads, d, d) matrix gives the same numbers as sample 0 of the batch
    one = A.mdta_measures({k: v[0] for k, v in mats.items()})
    first = m[m["sample"] == 0].reset_index(drop=True)
    np.testing.assert_allclose(one["effective_rank"], first["effective_rank"], rtol=1e-6)
    np.testing.assert_allclose(one["entropy"], first["entropy"], rtol=1e-6)


# ------------------------------------------------------------------------------------------
# channel attention weights
# ------------------------------------------------------------------------------------------


def test_channel_attention_weights_reproduce_the_module_output(tiny):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    tiny.train()
    weights = A.channel_attention_weights(tiny, x)
    assert tiny.training  # mode restored
    tiny.eval()
    names = [n for n, m in tiny.named_modules() if isinstance(m, ChannelAttention)]
    assert set(weights) == set(names) and len(names) > 0
    name = names[0]
    module = tiny.get_submodule(name)
    seen = {}
    handle = module.register_forward_hook(lambda mod, args, out: seen.update(a=args[0], out=out))
    with torch.no_grad():
        tiny(x)
    handle.remove()
    w = weights[name]
    assert w.shape == (2, seen["a"].shape[1])
    assert ((w > 0) & (w < 1)).all()
    torch.testing.assert_close(seen["out"], seen["a"] * w[:, :, None, None])
    # no hooks left behind
    assert not module._forward_hooks


# ------------------------------------------------------------------------------------------
# region contrast
# ------------------------------------------------------------------------------------------


def test_region_contrast():
    masks = landmark_mask(np.array([[[8.0, 8.0]], [[24.0, 24.0]]]), size=32, radius=5)
    torch.testing.assert_close(A.region_contrast(masks.double()[:, None], masks),
                               torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(A.region_contrast(torch.full((2, 1, 8, 8), 0.3), masks),
                               torch.zeros(2, dtype=torch.float64))
    # a 2x2 map (upper-left quadrant bright) against a mask of that quadrant, enlarged x16
    low = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    quad = torch.zeros(1, 32, 32, dtype=torch.bool)
    quad[:, :16, :16] = True
    assert A.region_contrast(low, quad).item() == pytest.approx(1.0)
    assert A.region_contrast(1 - low, quad).item() == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        A.region_contrast(low, torch.zeros(1, 32, 32, dtype=torch.bool))
    with pytest.raises(ValueError):
        A.region_contrast(torch.zeros(1, 3, 3), quad)  # 32 is not a multiple of 3


def test_same_radius_contrast_is_zero_for_radial_maps_and_sees_the_rest():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    radius = torch.round(torch.hypot(yy - 15.5, xx - 15.5))  # whole pixels, as the function rounds
    radial = torch.exp(-radius / 8)[None].repeat(2, 1, 1)  # bright in the middle
    masks = landmark_mask(np.array([[[12.0, 12.0]], [[20.0, 10.0]]]), size=32, radius=3)
    # a map that depends only on the distance from the centre: region contrast yes, this one no
    assert (A.region_contrast(radial, masks) > 0.1).all()
    torch.testing.assert_close(A.same_radius_contrast(radial, masks), torch.zeros(2, dtype=torch.float64))
    # a map that is high exactly on the region keeps a positive contrast
    assert (A.same_radius_contrast(masks.double(), masks) > 0.5).all()
    # coarse maps are enlarged like region_contrast's
    coarse = torch.ones(2, 1, 8, 8)
    torch.testing.assert_close(A.same_radius_contrast(coarse, masks), torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError):
        A.same_radius_contrast(coarse, torch.zeros(2, 32, 32, dtype=torch.bool))  # empty masks
    with pytest.raises(ValueError):
        A.same_radius_contrast(torch.ones(2, 1, 5, 5), masks)  # 32 is not a multiple of 5


def test_edge_mask_marks_the_strongest_gradients():
    img = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    img[:, :, 16:] = 255  # a vertical edge between columns 15 and 16
    masks = A.edge_mask(img, 0.05)  # 51 of 1024 pixels; the edge has 64 (columns 15 and 16)
    assert masks.shape == (2, 32, 32) and masks.dtype == torch.bool
    assert (masks.flatten(1).sum(1) == 51).all()
    assert masks[:, :, 15:17].sum() == 2 * 51 and not masks[:, :, :15].any() and not masks[:, :, 17:].any()
    sizes = A.edge_mask(img, [0.05, 0.5]).flatten(1).sum(1)  # one area per image, ties included
    assert sizes.tolist() == [51, 512]
    with pytest.raises(ValueError):
        A.edge_mask(img, 1.5)
    with pytest.raises(ValueError):
        A.edge_mask(np.zeros((1, 32, 32)), 0.1)

"""ctcnet.analysis.attribution: midpoint LAM, several windows at once, map similarity, pooling and
the weight-randomisation sanity check (Adebayo et al., NeurIPS 2018).

Small models and random tensors only; every check has a closed form or an independent computation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import ctcnet
from ctcnet.analysis import attribution as A


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return ctcnet.build_model("tiny").eval()


def _smooth_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 3, 3, padding=1))


def test_midpoint_rule_completes_better_than_the_right_rule():
    model = _smooth_net()
    image = torch.rand(1, 3, 24, 24) * 2 - 1
    kw = dict(window=(8, 8, 8), space="hr", sigma_max=2.0)
    right = A.lam(model, image, rule="right", steps=12, **kw)
    mid = A.lam(model, image, rule="midpoint", steps=12, **kw)
    finer = A.lam(model, image, rule="midpoint", steps=24, **kw)
    assert mid.rule == "midpoint" and right.rule == "right"
    # O(1/n^2) against O(1/n): with the same 12 gradients the midpoint sum is much closer,
    # and doubling the steps divides its error by about 4
    assert abs(mid.completeness_error) < 0.01
    assert abs(mid.completeness_error) < abs(right.completeness_error) / 2
    assert abs(finer.completeness_error) < abs(mid.completeness_error) / 3
    assert mid.completeness_error == pytest.approx(
        mid.completeness_gap / abs(mid.objective_input - mid.objective_baseline))
    with pytest.raises(ValueError, match="rule"):
        A.lam(model, image, rule="trapezoid", steps=2, **kw)


def test_lam_windows_equals_separate_lam_calls():
    model = _smooth_net()
    image = torch.rand(1, 3, 24, 24) * 2 - 1
    windows = [(2, 2, 6), (12, 10, 8), (4, 14, 5)]
    together = A.lam_windows(model, image, windows, steps=5, space="hr", sigma_max=2.0,
                             batch_size=2, rule="midpoint")
    assert [r.window for r in together] == windows
    for window, res in zip(windows, together):
        alone = A.lam(model, image, window, steps=5, space="hr", sigma_max=2.0, rule="midpoint")
        np.testing.assert_allclose(res.attributions, alone.attributions, rtol=1e-5, atol=1e-7)
        assert res.objective_input == pytest.approx(alone.objective_input, rel=1e-6)
        assert res.diffusion_index == pytest.approx(alone.diffusion_index, rel=1e-6)


def test_rank_correlation_matches_a_closed_form_and_scipy():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert A.rank_correlation(a, a) == pytest.approx(1.0)
    assert A.rank_correlation(a, -a) == pytest.approx(1.0)  # absolute values are ranked
    assert A.rank_correlation(a, 5.0 - a) == pytest.approx(-1.0)
    # ties: ranks (1.5, 1.5, 3, 4) against (1, 2, 3, 4)
    r1 = np.array([1.5, 1.5, 3, 4]) - 2.5
    r2 = np.array([1.0, 2, 3, 4]) - 2.5
    expected = (r1 * r2).sum() / np.sqrt((r1**2).sum() * (r2**2).sum())
    assert A.rank_correlation([1, 1, 3, 4], [1, 2, 3, 4]) == pytest.approx(expected)
    assert A.rank_correlation(np.ones(5), np.arange(5.0)) == 0.0
    # without ties: Pearson correlation of argsort-of-argsort ranks of |x|, |y|
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50)
    rx, ry = np.argsort(np.argsort(np.abs(x))), np.argsort(np.argsort(np.abs(y)))
    assert A.rank_correlation(x, y) == pytest.approx(np.corrcoef(rx, ry)[0, 1], rel=1e-9)


def test_map_ssim_equals_skimage_and_detects_change():
    rng = np.random.default_rng(1)
    a = rng.random((16, 16))
    b = a + 0.3 * rng.random((16, 16))
    assert A.map_ssim(a, a) == pytest.approx(1.0)
    assert A.map_ssim(a, np.roll(a, 5, axis=1)) < 0.5
    metrics = pytest.importorskip("skimage.metrics")
    expected = metrics.structural_similarity(a / a.max(), b / b.max(), data_range=1.0)
    assert A.map_ssim(a, b) == pytest.approx(expected, rel=1e-9)


def test_pool_map_and_the_resolution_floor_of_the_diffusion_index():
    fine = np.zeros((16, 16))
    fine[3, 5] = -2.0
    pooled = A.pool_map(fine, 4)
    assert pooled.shape == (4, 4) and pooled[0, 1] == 2.0 and pooled.sum() == 2.0
    # one hot cell: DI ~ 100 / n, so the same concentrated map scores 16x higher on the coarse grid
    assert A.diffusion_index(fine) == pytest.approx(100 / 256, rel=1e-2)
    assert A.diffusion_index(pooled) == pytest.approx(100 / 16, rel=1e-2)
    with pytest.raises(ValueError, match="blocks"):
        A.pool_map(np.ones((10, 10)), 4)


def test_randomized_models_cascade_top_first(tiny):
    stages = A.randomized_models(tiny, seed=3)
    labels = [label for label, _ in stages]
    assert labels == ["trained", "output conv", "+ decoder", "+ bottleneck", "+ encoder"]
    assert stages[0][1] is tiny
    trained = dict(tiny.named_parameters())

    def changed(model, prefix):
        return any(not torch.equal(p, trained[n]) for n, p in model.named_parameters()
                   if n.startswith(prefix))

    first, second, last = stages[1][1], stages[2][1], stages[-1][1]
    assert changed(first, "tail.") and not changed(first, "decoder.")
    assert not changed(first, "encoder.") and not changed(first, "head.")
    assert changed(second, "tail.") and changed(second, "decoder.") and not changed(second, "encoder.")
    assert all(changed(last, p) for p in ("tail.", "decoder.", "bottleneck.", "encoder.", "head."))
    # the trained model is untouched, and the same seed gives the same random weights
    assert all(torch.equal(p, trained[n]) for n, p in tiny.named_parameters())
    again = A.randomized_models(tiny, seed=3)[1][1]
    assert torch.equal(again.tail.weight, first.tail.weight)
    # independent mode re-initialises one group only
    independent = A.randomized_models(tiny, mode="independent", seed=3)
    enc_only = independent[-1][1]
    assert changed(enc_only, "encoder.") and not changed(enc_only, "tail.")
    with pytest.raises(ValueError, match="no child"):
        A.randomized_models(tiny, groups=[("x", ("nonexistent",))])


class WideNet(nn.Module):
    """A filter as wide as the image: where its attributions fall is set by its weights."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 3, 31, padding=15)
        self.tail = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.tail(torch.tanh(self.body(x)))


class WeightFreeNet(nn.Module):
    """The output does not depend on the (only) weight: every map survives randomisation."""

    def __init__(self) -> None:
        super().__init__()
        self.tail = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return x**2 + 0.0 * self.tail(x)


def test_sanity_check_separates_weight_free_from_weight_dependent_models():
    torch.manual_seed(0)
    lr = torch.rand(1, 3, 4, 4) * 2 - 1
    kw = dict(methods=("lam", "smoothgrad"), lam_steps=4, nt_samples=2, seed=1)
    free = A.sanity_check(WeightFreeNet(), lr, (8, 8, 12), **kw)
    assert free.stages == ["trained", "tail"]
    for method in ("lam", "smoothgrad"):
        assert free.spearman[method][0] == pytest.approx(1.0)
        assert free.spearman[method][-1] == pytest.approx(1.0)  # same noise, same map
        assert free.ssim[method][-1] == pytest.approx(1.0)
    torch.manual_seed(0)
    wide = A.sanity_check(WideNet(), lr, (14, 14, 4), groups=[("tail", ("tail",)),
                                                              ("body", ("body",))], **kw)
    assert wide.stages == ["trained", "tail", "+ body"]
    assert wide.maps["lam"][0].shape == (4, 4)
    assert wide.maps["smoothgrad"][0].shape == (32, 32)
    assert abs(wide.spearman["smoothgrad"][-1]) < 0.3
    assert A.sanity_verdict(free.spearman["lam"][-1:]) == "fails"
    assert A.sanity_verdict(free.spearman["lam"][-1:], free.ssim["lam"][-1:]) == "fails"
    assert A.sanity_verdict(wide.spearman["smoothgrad"][-1:]) == "passes"


def test_sanity_check_runs_every_method_on_tiny_ctcnet(tiny):
    torch.manual_seed(0)
    lr = torch.rand(1, 3, 4, 4) * 2 - 1
    res = A.sanity_check(tiny, lr, (12, 12, 8), groups=A.CTCNET_RANDOMIZATION_GROUPS[:2],
                         lam_steps=2, n_steps=2, nt_samples=1, occlusion_size=16,
                         occlusion_stride=16, sigma=2.0)
    assert res.stages == ["trained", "output conv", "+ decoder"]
    assert set(res.maps) == {"lam", "ig", "smoothgrad", "occlusion", "gradcam"}
    for method, maps in res.maps.items():
        assert len(maps) == 3 and all(np.isfinite(m).all() for m in maps)
        assert res.spearman[method][0] == pytest.approx(1.0)
        assert res.ssim[method][0] == pytest.approx(1.0)
    assert not tiny.training


def test_sanity_verdict():
    assert A.sanity_verdict([0.1, 0.2]) == "passes"
    assert A.sanity_verdict([0.9, 0.6]) == "fails"
    assert A.sanity_verdict([0.1, 0.9]) == "mixed"
    assert A.sanity_verdict([0.45], threshold=0.4) == "fails"
    # with SSIMs: a low correlation passes only if the SSIM has dropped too
    assert A.sanity_verdict([0.1, 0.2], [0.5, 0.6]) == "passes"
    assert A.sanity_verdict([0.4, 0.4], [0.9, 0.95]) == "mixed"  # rho low, SSIM kept
    assert A.sanity_verdict([0.9, 0.6], [0.95, 0.92]) == "fails"
    assert A.sanity_verdict([0.9], [0.5]) == "mixed"  # rho kept, SSIM dropped
    assert A.sanity_verdict([0.1], [0.85], ssim_threshold=0.8) == "mixed"
    with pytest.raises(ValueError):
        A.sanity_verdict([0.1, 0.2], [0.5])
    with pytest.raises(ValueError):
        A.sanity_verdict([])


def test_detail_windows_pick_the_edges_first():
    image = torch.zeros(1, 3, 64, 64)
    image[:, :, 40:48, 20:28] = 1.0  # a bright square: edges only inside window (32, 16)
    image[:, :, 20, :] = 0.2  # a faint line through the row-16 windows
    windows = A.detail_windows(image, n=3, size=16, margin=16)
    assert windows[0] == (32, 16, 16)
    assert {w[0] for w in windows[1:]} == {16}
    assert all(16 <= t <= 32 and 16 <= left <= 32 for t, left, _ in windows)
    with pytest.raises(ValueError, match="fit"):
        A.detail_windows(image, n=5, size=16, margin=16)

"""ctcnet.analysis.attribution: midpoint LAM, several windows at once, map similarity, pooling and
the weight-randomisation sanity check (Adebayo et al., NeurIPS 2018).

Small models and random tensors only; every check has a closed form or an independent computation.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import ctcnet
from ctcnet.analysis import attribution as A


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
    assert A.rank_correlation(a, 5.0 - a) == pytest.approx(-1.0)
    # ties: ranks (1.5, 1.5, 3, 4) against (1, 2, 3, 4)
    r1 = np.array([1.5, 1.5, 3, 4]) - 2.5
    r2 = np.array([1.0, 2, 3, 4]) - 2.5
    expected = (r1 * r2).sum() / np.sqrt((r1**2).sum() * (r2**2).sum())
    assert A.rank_correlation([1, 1, 3, 4], [1, 2, 3, 4]) == pytest.approx(expected)
    assert A.rank_correlation(np.ones(5), np.arange(5.0)) == 0.0
    # without ties: Pearson correlation of argsort-of-argsort ranks
    rng = np.random.default_rng(0)
    x, y = rng.random(50), rng.random(50)
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    assert A.rank_correlation(x, y) == pytest.approx(np.corrcoef(rx, ry)[0, 1], rel=1e-9)


def test_map_comparisons_refuse_signed_maps():
    signed = np.array([[1.0, -2.0], [3.0, 4.0]])
    for compare in (A.rank_correlation, A.map_ssim):
        with pytest.raises(ValueError, match="non-negative"):
            compare(signed, np.abs(signed))
        with pytest.raises(ValueError, match="non-negative"):
            compare(np.abs(signed), signed)


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
    with pytest.raises(ValueError, match="no module"):
        A.randomized_models(tiny, groups=[("x", ("nonexistent",))])


@pytest.mark.parametrize("overrides", [{}, {"use_mffu": False}, {"use_transformer": False}])
def test_randomization_groups_come_from_units_and_cover_every_parameter_once(overrides):
    torch.manual_seed(0)
    model = ctcnet.build_model("tiny", **overrides)
    groups = A.randomization_groups(model)
    assert [label for label, _ in groups] == ["output conv", "decoder", "bottleneck", "encoder"]
    owner = {}
    for label, paths in groups:
        for path in paths:
            for name, _ in model.get_submodule(path).named_parameters(prefix=path):
                assert name not in owner, f"{name} in {owner.get(name)} and {label}"
                owner[name] = label
    assert set(owner) == {name for name, _ in model.named_parameters()}
    assert groups[0][1] == ("tail",)
    # a model without units(): one group per top-level child, output side first
    plain = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1))
    assert A.randomization_groups(plain) == (("1", ("1",)), ("0", ("0",)))


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
    assert wide.spearman["lam"][0] == pytest.approx(1.0)
    assert free.completeness["lam"].shape == (2,) and "ig" not in free.completeness


def test_sanity_check_runs_every_method_on_tiny_ctcnet(tiny):
    torch.manual_seed(0)
    lr = torch.rand(1, 3, 4, 4) * 2 - 1
    res = A.sanity_check(tiny, lr, (12, 12, 8), groups=A.randomization_groups(tiny)[:2],
                         lam_steps=2, n_steps=2, nt_samples=1, occlusion_size=16,
                         occlusion_stride=16, sigma=2.0)
    assert res.stages == ["trained", "output conv", "+ decoder"]
    assert set(res.maps) == {"lam", "ig", "smoothgrad", "occlusion", "gradcam"}
    for method, maps in res.maps.items():
        assert len(maps) == 3 and all(np.isfinite(m).all() and (m >= 0).all() for m in maps)
        assert res.spearman[method][0] == pytest.approx(1.0)
        assert res.ssim[method][0] == pytest.approx(1.0)
    assert set(res.completeness) == {"lam", "ig"}
    assert all(len(v) == 3 and np.isfinite(v).all() for v in res.completeness.values())
    assert len(res.gradcam_weight_to_gradient) == 3
    assert (res.gradcam_weight_to_gradient > A.GRADCAM_NOISE_FLOOR).all()
    assert not tiny.training


def test_sanity_check_refines_incomplete_path_maps_until_within_tolerance(tiny):
    torch.manual_seed(0)
    lr = torch.rand(1, 3, 4, 4) * 2 - 1
    kw = dict(methods=("lam", "ig"), groups=A.randomization_groups(tiny)[:1], lam_steps=1,
              n_steps=1, sigma=2.0)
    coarse = A.sanity_check(tiny, lr, (12, 12, 8), **kw)
    assert {m: v.tolist() for m, v in coarse.steps.items()} == {"lam": [1, 1], "ig": [1, 1]}
    tolerance = 0.5 * min(np.abs(v).min() for v in coarse.completeness.values())
    assert tolerance > 0  # one step leaves every map incomplete, so each must be refined
    fine = A.sanity_check(tiny, lr, (12, 12, 8), completeness_tolerance=tolerance,
                          max_steps=32, **kw)
    for method in ("lam", "ig"):
        steps, errors = fine.steps[method], np.abs(fine.completeness[method])
        assert (steps > 1).all() and (steps <= 32).all()
        assert ((errors <= tolerance) | (steps == 32)).all()
        assert (errors < np.abs(coarse.completeness[method])).all()
    capped = A.sanity_check(tiny, lr, (12, 12, 8), completeness_tolerance=1e-12, max_steps=4,
                            **kw)
    assert all((v == 4).all() for v in capped.steps.values())  # stops at the cap, keeps the map


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


# ------------------------------------------------------------------------------------------
# Grad-CAM
# ------------------------------------------------------------------------------------------


def _last_decoder_lgcm(model):
    return [u.path for u in model.units() if u.stage == "decoder" and u.paper_name == "LGCM"][-1]


def test_gradcam_weights_cancel_after_the_linear_tail_and_are_refused(tiny):
    # LAM's objective is a sum of pixel differences: its gradient sums to zero over the pixels of
    # each channel, and only the linear output conv follows the last decoder LGCM, so Grad-CAM's
    # channel weights (spatial means of the gradient) vanish there up to rounding
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    layer = _last_decoder_lgcm(tiny)
    with pytest.raises(A.GradCAMWeightsError, match="rounding noise"):
        A.gradcam(tiny, x, (12, 12, 8), layer=layer)
    unchecked = A.gradcam(tiny, x, (12, 12, 8), layer=layer, check=False)
    assert unchecked.weight_to_gradient < 1e-5
    # the window's plain sum does not cancel there
    summed = A.gradcam(tiny, x, (12, 12, 8), layer=layer, objective="sum")
    assert summed.weight_to_gradient > 1e-2


def test_gradcam_default_layer_is_stable_in_fp64_and_with_one_thread(tiny):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    layer = A.default_gradcam_layer(tiny)
    assert layer == [u.path for u in tiny.units()
                     if u.stage == "decoder" and u.paper_name == "LGCM"][-2]
    res = A.gradcam(tiny, x, (12, 12, 8))
    assert res.layer == layer and res.map.shape == (32, 32)
    assert res.map.min() >= 0 and res.map.max() == pytest.approx(1.0)
    assert res.weight_to_gradient > 1e-2 and 0 < res.positive_fraction < 1
    wide = copy.deepcopy(tiny).double()
    exact = A.gradcam(wide, x.double(), (12, 12, 8))
    np.testing.assert_allclose(res.weights, exact.weights, rtol=1e-3, atol=1e-6 * np.abs(exact.weights).max())
    np.testing.assert_allclose(res.map, exact.map, atol=1e-4)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = A.gradcam(tiny, x, (12, 12, 8))
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(res.map, single.map, atol=1e-4)


def test_gradcam_equals_captum_layer_gradcam_with_relu(tiny):
    attr = pytest.importorskip("captum.attr")
    torch.manual_seed(1)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    layer = A.default_gradcam_layer(tiny)
    ours = A.gradcam(tiny, x, (8, 16, 8))
    forward = A.WindowObjective(tiny, (8, 16, 8))
    theirs = attr.LayerGradCam(forward, tiny.get_submodule(layer)).attribute(x, relu_attributions=True)
    theirs = attr.LayerAttribution.interpolate(theirs, (32, 32), "bilinear")[0, 0].detach().double()
    theirs = (theirs / theirs.max()).numpy()
    np.testing.assert_allclose(ours.map, theirs, atol=1e-5)


def test_gradcam_refuses_a_layer_that_runs_twice():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.conv(torch.relu(self.conv(x)))

    with pytest.raises(ValueError, match="runs once"):
        A.gradcam(Twice(), torch.rand(1, 3, 16, 16), (4, 4, 4), layer="conv")


def test_integrated_gradients_reports_its_completeness_error():
    pytest.importorskip("captum")
    torch.manual_seed(0)
    x = torch.rand(1, 3, 24, 24) * 2 - 1
    linear = nn.Conv2d(3, 3, 3, padding=1)  # the window sum is linear: IG is exact at any step count
    found = {}
    A.captum_attributions(linear, x, (8, 8, 8), methods=("ig",), n_steps=2, objective="sum",
                          sigma=2.0, completeness=found)
    assert abs(found["ig"]) < 1e-4
    net = _smooth_net()
    errors = []
    for steps in (2, 32):
        found = {}
        A.captum_attributions(net, x, (8, 8, 8), methods=("ig",), n_steps=steps, sigma=2.0,
                              completeness=found)
        errors.append(abs(found["ig"]))
    assert errors[1] < errors[0] and errors[1] < 0.01

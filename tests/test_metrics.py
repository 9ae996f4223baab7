"""Tests for ctcnet.metrics against independent reference computations (skimage, cv2)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from skimage.metrics import structural_similarity as sk_ssim

from ctcnet import metrics as M
from ctcnet.data.degradation import degrade
from ctcnet.pixels import to_tensor

W = np.array([65.481, 128.553, 24.966])


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A real photo (astronaut, public domain) at 128x128 and its x8 bicubic reconstruction."""
    hr = Image.fromarray(skdata.astronaut()).crop((140, 20, 340, 220)).resize((128, 128))
    _, up = degrade(hr)
    return np.asarray(up).copy(), np.asarray(hr).copy()


# independent luma definitions, written from the three reference scripts
def y_ctcnet(x):
    return np.floor(16 + x.astype(np.float64) @ (W / 255)).astype(np.uint8)


def y_dic(x):
    return np.round(x.astype(np.float64) @ W / 255 + 16).astype(np.uint8)


def y_basicsr(x):
    return 16 + x.astype(np.float64) @ W / 255


def basicsr_ssim_ref(a, b):
    k = cv2.getGaussianKernel(11, 1.5)
    win = k @ k.T
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def f(z):
        return cv2.filter2D(z, -1, win)[5:-5, 5:-5]

    mu1, mu2 = f(a), f(b)
    s11, s22, s12 = f(a * a) - mu1**2, f(b * b) - mu2**2, f(a * b) - mu1 * mu2
    num = (2 * mu1 * mu2 + c1) * (2 * s12 + c2)
    return float(np.mean(num / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))))


def direct_psnr(a, b):
    return 10 * math.log10(255**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_y_channel_definitions(pair):
    sr, _ = pair
    np.testing.assert_array_equal(M.rgb_to_y(sr, "ctcnet"), y_ctcnet(sr))
    np.testing.assert_array_equal(M.rgb_to_y(sr, "dic"), y_dic(sr))
    np.testing.assert_allclose(M.rgb_to_y(sr, "basicsr"), y_basicsr(sr), atol=1e-4)
    assert (M.rgb_to_y(sr, "ctcnet") != M.rgb_to_y(sr, "dic")).any()


def test_ctcnet_ssim_matches_skimage(pair):
    sr, hr = pair
    ref = sk_ssim(
        y_ctcnet(sr),
        y_ctcnet(hr),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert abs(M.ssim(sr, hr, "ctcnet") - ref) < 1e-6


def test_dic_ssim_matches_skimage_defaults(pair):
    sr, hr = pair
    a, b = y_dic(sr)[8:-8, 8:-8], y_dic(hr)[8:-8, 8:-8]
    ref = sk_ssim(a, b, data_range=255)  # 7x7 uniform, sample covariance (skimage defaults)
    assert abs(M.ssim(sr, hr, "dic") - ref) < 1e-6


def test_basicsr_ssim_matches_cv2_reference(pair):
    sr, hr = pair
    a, b = y_basicsr(sr)[8:-8, 8:-8], y_basicsr(hr)[8:-8, 8:-8]
    assert abs(M.ssim(sr, hr, "basicsr") - basicsr_ssim_ref(a, b)) < 1e-5


def test_psnr_matches_direct_formula(pair):
    sr, hr = pair
    assert M.psnr(sr, hr, "ctcnet") == pytest.approx(
        direct_psnr(y_ctcnet(sr), y_ctcnet(hr)), abs=1e-10
    )
    assert M.psnr(sr, hr, "dic") == pytest.approx(
        direct_psnr(y_dic(sr)[8:-8, 8:-8], y_dic(hr)[8:-8, 8:-8]), abs=1e-10
    )
    assert M.psnr(sr, hr, "basicsr") == pytest.approx(
        direct_psnr(y_basicsr(sr)[8:-8, 8:-8], y_basicsr(hr)[8:-8, 8:-8]), abs=1e-4
    )


def test_protocols_differ(pair):
    sr, hr = pair
    res = M.evaluate_pair(sr, hr)
    assert set(res) == {"ctcnet", "dic", "basicsr"}
    p = [res[k]["psnr"] for k in res]
    s = [res[k]["ssim"] for k in res]
    assert min(abs(p[0] - p[1]), abs(p[0] - p[2])) > 0.01
    assert min(abs(s[0] - s[1]), abs(s[0] - s[2]), abs(s[1] - s[2])) > 1e-3
    assert 10 < p[0] < 40 and 0 < s[0] < 1


def test_identical_images(pair):
    _, hr = pair
    for proto in M.PROTOCOLS:
        assert M.psnr(hr, hr, proto) == math.inf
        assert M.ssim(hr, hr, proto) == pytest.approx(1.0, abs=1e-12)


def test_tensor_and_batch_inputs(pair):
    sr, hr = pair
    # a tensor round-trips through to_uint8, which may lower values by one (truncation)
    t_sr, t_hr = to_tensor(sr), to_tensor(hr)
    from ctcnet.pixels import to_uint8

    expected = M.psnr(to_uint8(t_sr), to_uint8(t_hr))
    assert M.psnr(t_sr, t_hr) == pytest.approx(expected, abs=1e-12)
    assert abs(M.psnr(t_sr, hr) - M.psnr(sr, hr)) < 0.5
    batch_sr, batch_hr = np.stack([sr, hr]), np.stack([hr, hr])
    per = M.psnr(batch_sr, batch_hr, reduction="none")
    assert per[0] == pytest.approx(M.psnr(sr, hr)) and per[1] == math.inf
    s_per = M.ssim(batch_sr, batch_hr, "dic", reduction="none")
    assert M.ssim(batch_sr, batch_hr, "dic") == pytest.approx(np.mean(s_per))
    nchw = torch.stack([t_sr, t_hr])
    assert len(M.ssim(nchw, torch.stack([t_hr, t_hr]), reduction="none")) == 2


def test_bad_inputs(pair):
    sr, hr = pair
    with pytest.raises(ValueError, match="shapes differ"):
        M.psnr(sr, hr[:-1])
    with pytest.raises(ValueError, match="uint8"):
        M.ssim(sr.astype(np.float32), hr)
    with pytest.raises(ValueError, match="unknown protocol 'matlab'"):
        M.psnr(sr, hr, protocol="matlab")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        M.psnr(sr[..., 0], hr[..., 0])
    with pytest.raises(ValueError, match="smaller than"):
        M.ssim(sr[:20, :20], hr[:20, :20], "basicsr")
    with pytest.raises(ValueError, match="reduction"):
        M.psnr(np.stack([sr]), np.stack([hr]), reduction="sum")
    with pytest.raises(ValueError, match="unknown protocol"):
        M.evaluate_pair(sr, hr, protocols=["ctcnet", "nope"])


def test_protocol_table_complete():
    for desc in M.PROTOCOLS.values():
        assert {"Y channel", "border crop (px)", "SSIM window", "source"} <= set(desc)
    assert M.PROTOCOLS["ctcnet"]["border crop (px)"] == 0
    assert M.PROTOCOLS["dic"]["border crop (px)"] == 8


# ---------------------------------------------------------------------------- VIF
# (agreement with sewar and piq: tests/test_metrics_reference.py)
def test_vif_of_an_identical_image_is_one_and_falls_with_distortion(pair):
    sr, hr = pair
    assert M.vif(hr, hr) == pytest.approx(1.0, abs=1e-9)  # noise variance floored at 1e-10
    noisy = np.clip(hr + np.random.default_rng(0).normal(0, 8, hr.shape), 0, 255).astype(np.uint8)
    noisier = np.clip(hr + np.random.default_rng(0).normal(0, 25, hr.shape), 0, 255)
    v = [M.vif(noisy, hr), M.vif(noisier.astype(np.uint8), hr), M.vif(sr, hr)]
    assert 1 > v[0] > v[1] > 0 and 0 < v[2] < 0.5  # x8 bicubic keeps little information


def test_vif_is_not_symmetric_and_exceeds_one_for_added_contrast(pair):
    _, hr = pair
    flat = (128 + 0.5 * (hr.astype(np.float64) - 128)).round().astype(np.uint8)
    assert M.vif(hr, flat) > 1.0 > M.vif(flat, hr)  # more contrast than the reference: > 1


def test_vif_uses_the_protocols_luma_and_crop(pair):
    sr, hr = pair
    v = {p: M.vif(sr, hr, p) for p in M.PROTOCOLS}
    assert len({round(x, 6) for x in v.values()}) == 3
    assert M.vif(sr, hr, "dic") == pytest.approx(
        M.vif(sr[8:-8, 8:-8], hr[8:-8, 8:-8], "dic", crop_border=0), abs=1e-12
    )


def test_vif_of_a_flat_reference_is_nan():
    flat = np.full((64, 64, 3), 90, np.uint8)
    other = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    assert math.isnan(M.vif(other, flat))


def test_vif_batch_and_tensor_inputs(pair):
    sr, hr = pair
    per = M.vif(np.stack([sr, hr]), np.stack([hr, hr]), reduction="none")
    assert per == pytest.approx([M.vif(sr, hr), 1.0])
    t_sr, t_hr = to_tensor(sr), to_tensor(hr)
    from ctcnet.pixels import to_uint8

    assert M.vif(t_sr, t_hr) == pytest.approx(M.vif(to_uint8(t_sr), to_uint8(t_hr)), abs=1e-12)


def test_vif_refuses_images_smaller_than_41_px_with_one_line(pair):
    sr, hr = pair
    assert M.vif(sr[:41, :41], hr[:41, :41]) > 0
    with pytest.raises(ValueError, match="smaller than the 41x41") as err:
        M.vif(sr[:40, :60], hr[:40, :60])
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="after a 8-pixel crop"):
        M.vif(sr[:50, :50], hr[:50, :50], "dic")


# ---------------------------------------------------------------------------- metric names
def test_parse_metrics_keeps_order_and_drops_repeats():
    assert M.parse_metrics("psnr,ssim") == M.DEFAULT_METRICS
    assert M.parse_metrics(" VIF, psnr ,vif,") == ("vif", "psnr")
    assert M.parse_metrics("all") == tuple(M.METRICS) == ("psnr", "ssim", "vif", "lpips")
    assert M.parse_metrics(["lpips"]) == ("lpips",)


@pytest.mark.parametrize(
    "text, message",
    [("psnr,fid", "unknown metric 'fid'; choose from psnr, ssim, vif, lpips"),
     ("", "no metric given"), (" , ", "no metric given"), ("all,psnr", "unknown metric 'all'")],
)
def test_parse_metrics_refuses_unknown_or_empty_lists_with_one_line(text, message):
    with pytest.raises(ValueError, match=message) as err:
        M.parse_metrics(text)
    assert "\n" not in str(err.value)

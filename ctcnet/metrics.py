"""PSNR, SSIM and VIF under the three evaluation protocols met in the face-SR literature; LPIPS.

The paper's table reports four metrics: PSNR, SSIM, VIF and LPIPS. :func:`psnr`, :func:`ssim`
and :func:`vif` score the luma of a protocol (below); :func:`lpips` the whole RGB image with a
learned network (:mod:`ctcnet.lpips`, weights downloaded on first use). :data:`METRICS` lists
them with their direction (LPIPS: lower is better) for :func:`ctcnet.evaluate.evaluate`.

**Which VIF.** :func:`vif` is the *pixel-domain* VIFp of Sheikh & Bovik (IEEE TIP 2006; the
authors' ``vifp_mscale.m``), not the wavelet-domain VIF of that paper's main text; on the
offline test faces the bicubic input scores 0.204 with it and 0.098 with the wavelet-domain
version, against the CTCNet paper's bicubic 0.182 (CelebA) and 0.175 (Helen): the paper's
numbers look like VIFp (``benchmarks/RESULTS.md``, "VIF and LPIPS"). It agrees with
sewar's ``vifp`` to 1e-13 and piq's ``vif_p`` to 1e-9 on the same grey images.

The same image pair scores differently depending on how the luma channel is computed, whether a
border is cropped and which SSIM window is used; the differences (≈0.2 dB, ≈0.02 SSIM on ×8 faces)
are as large as the gaps between published methods, so every number must name its protocol.

Protocols (see :data:`PROTOCOLS`):

``"ctcnet"``
    The evaluation script ``psnr_ssim.py`` of the CTCNet authors (shared with SPARNet):
    ``Y = 16 + RGB · ([65.481, 128.553, 24.966] / 255)`` **truncated** to uint8, no border crop,
    PSNR on the uint8 Y, SSIM as ``skimage.metrics.structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False)`` with data range 255 (11×11 Gaussian window, skimage's
    ``truncate=3.5``; skimage discards the 5-pixel band where the window leaves the image, so the
    result equals a 'valid' SSIM).
``"dic"``
    "PSNR & SSIM in DIC" (junjun-jiang/Face-Hallucination-Benchmark ``eval_psnr_ssim.py``):
    ``Y = RGB · [65.481, 128.553, 24.966] / 255 + 16`` **rounded** to uint8,
    8-pixel border crop, PSNR on the cropped Y, SSIM = skimage's default ``compare_ssim`` with
    ``data_range=255``: a 7×7 uniform window with the *sample* covariance (factor 49/48).
``"basicsr"``
    XPixelGroup/BasicSR ``calculate_psnr/ssim(crop_border=scale, test_y_channel=True)``:
    Y as a float in [16, 235] that is **not rounded** (BasicSR computes it
    from ``img.astype(float32) / 255`` and stores it as float32, which is reproduced here), border
    crop = scale = 8, MATLAB-equivalent SSIM: 11×11 Gaussian σ = 1.5 (``cv2.getGaussianKernel``),
    'valid' filtering, K1 = 0.01, K2 = 0.03, L = 255, population covariance.

All SSIMs are computed here with numpy only (a separable 'valid' correlation); scikit-image and
OpenCV are used only by the tests, as independent references.

PSNR of identical images is ``inf`` (MSE = 0), as in all three reference scripts.

Inputs: ``uint8`` arrays ``(H, W, 3)`` (RGB) or batches ``(N, H, W, 3)``, or floating torch tensors
in [-1, 1] of shape ``(3, H, W)`` / ``(N, 3, H, W)`` that are first converted with
:func:`ctcnet.pixels.to_uint8` (the reference truncating post-processing). For batches,
``reduction="mean"`` (default) returns the mean of the per-image scores (the papers average per
image) and ``reduction="none"`` the list of per-image scores.

Comparing two methods on the same images, with the uncertainty a difference of means hides, is
:func:`ctcnet.stats.paired_bootstrap_ci`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from .lpips import load_lpips
from .pixels import to_uint8

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "PROTOCOLS",
    "MetricInfo",
    "evaluate_pair",
    "lpips",
    "parse_metrics",
    "psnr",
    "ssim",
    "rgb_to_y",
    "vif",
]

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)


@dataclass(frozen=True)
class _Protocol:
    y: str  # "truncate" | "round" | "float32"
    crop: int
    window: str  # "gaussian" | "uniform"
    win_size: int
    sigma: float
    sample_covariance: bool


_SPECS: dict[str, _Protocol] = {
    "ctcnet": _Protocol("truncate", 0, "gaussian", 11, 1.5, False),
    "dic": _Protocol("round", 8, "uniform", 7, 0.0, True),
    "basicsr": _Protocol("float32", 8, "gaussian", 11, 1.5, False),
}

#: Human-readable description of each protocol (e.g. ``pandas.DataFrame(PROTOCOLS).T``).
PROTOCOLS: dict[str, dict[str, Any]] = {
    "ctcnet": {
        "used by": "CTCNet, SPARNet (psnr_ssim.py)",
        "Y channel": "16 + (65.481R + 128.553G + 24.966B)/255, truncated to uint8",
        "border crop (px)": 0,
        "PSNR": "10·log10(255²/MSE) on uint8 Y",
        "SSIM window": "11×11 Gaussian, σ = 1.5 (skimage truncate 3.5)",
        "SSIM covariance": "population (use_sample_covariance=False)",
        "SSIM constants": "K1 0.01, K2 0.03, L 255",
        "source": "the authors' psnr_ssim.py (wsxuzixiang/CTCNet, as in SPARNet)",
    },
    "dic": {
        "used by": "the Face-Hallucination-Benchmark's \"PSNR & SSIM in DIC\" script (eval_psnr_ssim.py)",
        "Y channel": "(65.481R + 128.553G + 24.966B)/255 + 16, rounded to uint8",
        "border crop (px)": 8,
        "PSNR": "10·log10(255²/MSE) on cropped rounded Y",
        "SSIM window": "7×7 uniform (skimage default)",
        "SSIM covariance": "sample (49/48 factor, skimage default)",
        "SSIM constants": "K1 0.01, K2 0.03, L 255",
        "source": "junjun-jiang/Face-Hallucination-Benchmark eval_psnr_ssim.py",
    },
    "basicsr": {
        "used by": "BasicSR-based code (crop_border=scale, test_y_channel=True)",
        "Y channel": "same formula as float32, not rounded",
        "border crop (px)": 8,
        "PSNR": "10·log10(255²/MSE) on cropped float Y",
        "SSIM window": "11×11 Gaussian, σ = 1.5, 'valid' (MATLAB ssim_index)",
        "SSIM covariance": "population",
        "SSIM constants": "K1 0.01, K2 0.03, L 255",
        "source": "XPixelGroup/BasicSR basicsr/metrics/psnr_ssim.py",
    },
}


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------
def _as_uint8_batch(x: Any, name: str) -> tuple[np.ndarray, bool]:
    """Return ``(N, H, W, 3)`` uint8 and whether the input was a batch."""
    if isinstance(x, torch.Tensor):
        if x.ndim not in (3, 4) or x.shape[-3] != 3:
            raise ValueError(
                f"{name}: a tensor must be (3, H, W) or (N, 3, H, W) in [-1, 1], "
                f"got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError(f"{name}: a tensor must be floating point in [-1, 1], got {x.dtype}")
        x = to_uint8(x)
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name}: expected a uint8 numpy array or a torch tensor, got {type(x)}")
    if x.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8 (values 0..255), got {x.dtype}")
    if x.ndim == 3 and x.shape[2] == 3:
        return x[None], False
    if x.ndim == 4 and x.shape[3] == 3:
        return x, True
    raise ValueError(f"{name}: expected shape (H, W, 3) or (N, H, W, 3) RGB, got {x.shape}")


def _check_protocol(protocol: str) -> _Protocol:
    if protocol not in _SPECS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {sorted(_SPECS)}")
    return _SPECS[protocol]


def _pair(sr: Any, hr: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    a, batch_a = _as_uint8_batch(sr, "sr")
    b, batch_b = _as_uint8_batch(hr, "hr")
    if a.shape != b.shape:
        shape_a = a.shape if batch_a else a.shape[1:]
        shape_b = b.shape if batch_b else b.shape[1:]
        raise ValueError(f"sr and hr shapes differ: {shape_a} vs {shape_b}")
    return a, b, batch_a or batch_b


# --------------------------------------------------------------------------------------------
# Luma
# --------------------------------------------------------------------------------------------
def rgb_to_y(img: np.ndarray, protocol: str = "ctcnet") -> np.ndarray:
    """Compute the BT.601 (MATLAB ``rgb2ycbcr``) luma of uint8 RGB images under a protocol.

    Parameters
    ----------
    img : numpy.ndarray
        ``uint8`` array whose last axis is RGB.
    protocol : {"ctcnet", "dic", "basicsr"}
        ``ctcnet``: uint8, truncated; ``dic``: uint8, rounded (half to even, numpy's ``round``);
        ``basicsr``: float64 holding BasicSR's float32 value, not rounded.

    Returns
    -------
    numpy.ndarray
        Y with the last axis removed.
    """
    spec = _check_protocol(protocol)
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.shape[-1:] != (3,):
        raise ValueError("rgb_to_y expects a uint8 array whose last axis has 3 (RGB) channels")
    if spec.y == "truncate":
        return (16.0 + img @ (_Y_WEIGHTS / 255.0)).astype(np.uint8)
    if spec.y == "round":
        return ((img @ _Y_WEIGHTS) / 255.0 + 16.0).round().astype(np.uint8)
    scaled = img.astype(np.float32) / np.float32(255.0)
    y32 = ((scaled @ _Y_WEIGHTS + 16.0) / 255.0).astype(np.float32) * np.float32(255.0)
    return y32.astype(np.float64)


def _y_cropped(batch: np.ndarray, spec: _Protocol, protocol: str, crop: int) -> np.ndarray:
    if crop:
        h, w = batch.shape[1:3]
        if h <= 2 * crop or w <= 2 * crop:
            raise ValueError(f"image of size {h}x{w} is too small for a {crop}-pixel border crop")
        batch = batch[:, crop:-crop, crop:-crop]
    return rgb_to_y(batch, protocol).astype(np.float64)


def _reduce(values: list[float], batched: bool, reduction: str) -> float | list[float]:
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if not batched:
        return values[0]
    if reduction == "none":
        return values
    return float(np.mean(values))


def _crop_for(spec: _Protocol, crop_border: int | None) -> int:
    if crop_border is None:
        return spec.crop
    if isinstance(crop_border, bool) or not isinstance(crop_border, int) or crop_border < 0:
        raise ValueError(f"crop_border must be a non-negative integer, got {crop_border!r}")
    return crop_border


# --------------------------------------------------------------------------------------------
# PSNR
# --------------------------------------------------------------------------------------------
def psnr(
    sr: Any,
    hr: Any,
    protocol: str = "ctcnet",
    reduction: str = "mean",
    crop_border: int | None = None,
) -> float | list[float]:
    """Peak signal-to-noise ratio on the luma channel, ``10·log10(255² / MSE)`` in dB.

    Parameters
    ----------
    sr, hr : numpy.ndarray or torch.Tensor
        Super-resolved and ground-truth images (see the module docstring for accepted forms).
    protocol : {"ctcnet", "dic", "basicsr"}, default "ctcnet"
        Evaluation protocol (:data:`PROTOCOLS`).
    reduction : {"mean", "none"}, default "mean"
        For batches: mean of per-image PSNRs, or the per-image list.
    crop_border : int, optional
        Override the protocol's border crop (0 for ctcnet, 8 for dic and basicsr).

    Returns
    -------
    float or list of float
        PSNR in dB; ``inf`` when the (cropped) luma images are identical.

    Raises
    ------
    ValueError
        On an unknown protocol, wrong dtype/shape, or mismatched shapes.
    """
    spec = _check_protocol(protocol)
    crop = _crop_for(spec, crop_border)
    a, b, batched = _pair(sr, hr)
    ya, yb = _y_cropped(a, spec, protocol, crop), _y_cropped(b, spec, protocol, crop)
    values = []
    for i in range(ya.shape[0]):
        mse = float(np.mean((ya[i] - yb[i]) ** 2))
        values.append(float("inf") if mse == 0.0 else float(10.0 * np.log10(255.0**2 / mse)))
    return _reduce(values, batched, reduction)


# --------------------------------------------------------------------------------------------
# SSIM
# --------------------------------------------------------------------------------------------
def _window_1d(spec: _Protocol) -> np.ndarray:
    if spec.window == "uniform":
        return np.full(spec.win_size, 1.0 / spec.win_size)
    radius = (spec.win_size - 1) // 2  # = int(3.5 * 1.5 + 0.5) = 5, skimage/scipy truncation
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / spec.sigma) ** 2)
    return k / k.sum()


def _filter_valid(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation of the last two axes with ``k ⊗ k``, 'valid' region only."""
    n = k.size
    h, w = img.shape[-2:]
    rows = sum(k[i] * img[..., i : h - n + 1 + i, :] for i in range(n))
    return sum(k[i] * rows[..., :, i : w - n + 1 + i] for i in range(n))


def _ssim_single(x: np.ndarray, y: np.ndarray, spec: _Protocol) -> float:
    k = _window_1d(spec)
    c1 = (0.01 * 255.0) ** 2
    c2 = (0.03 * 255.0) ** 2
    np_ = spec.win_size**2
    cov_norm = np_ / (np_ - 1.0) if spec.sample_covariance else 1.0
    ux, uy = _filter_valid(x, k), _filter_valid(y, k)
    uxx, uyy, uxy = _filter_valid(x * x, k), _filter_valid(y * y, k), _filter_valid(x * y, k)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    num = (2.0 * ux * uy + c1) * (2.0 * vxy + c2)
    den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    return float(np.mean(num / den, dtype=np.float64))


def ssim(
    sr: Any,
    hr: Any,
    protocol: str = "ctcnet",
    reduction: str = "mean",
    crop_border: int | None = None,
) -> float | list[float]:
    """Structural similarity on the luma channel under a protocol.

    Parameters
    ----------
    sr, hr : numpy.ndarray or torch.Tensor
        Super-resolved and ground-truth images (see the module docstring for accepted forms).
    protocol : {"ctcnet", "dic", "basicsr"}, default "ctcnet"
        ``ctcnet``: 11×11 Gaussian σ 1.5, population covariance, on truncated uint8 Y, no crop
        (equals skimage ``gaussian_weights=True, use_sample_covariance=False``). ``dic``: 7×7
        uniform window, sample covariance, on rounded Y cropped by 8 (skimage defaults).
        ``basicsr``: MATLAB-style 11×11 Gaussian 'valid' SSIM on float Y cropped by 8.
    reduction : {"mean", "none"}, default "mean"
        For batches: mean of per-image SSIMs, or the per-image list.
    crop_border : int, optional
        Override the protocol's border crop.

    Returns
    -------
    float or list of float
        SSIM (1.0 for identical images).

    Raises
    ------
    ValueError
        On an unknown protocol, wrong dtype/shape, mismatched shapes, or an image smaller than
        the SSIM window after cropping.
    """
    spec = _check_protocol(protocol)
    crop = _crop_for(spec, crop_border)
    a, b, batched = _pair(sr, hr)
    ya, yb = _y_cropped(a, spec, protocol, crop), _y_cropped(b, spec, protocol, crop)
    h, w = ya.shape[1:3]
    if h < spec.win_size or w < spec.win_size:
        raise ValueError(
            f"image of size {h}x{w} (after a {crop}-pixel crop) is smaller than the "
            f"{spec.win_size}x{spec.win_size} SSIM window of protocol {protocol!r}"
        )
    values = [_ssim_single(ya[i], yb[i], spec) for i in range(ya.shape[0])]
    return _reduce(values, batched, reduction)


# --------------------------------------------------------------------------------------------
# VIF
# --------------------------------------------------------------------------------------------
#: Variance of the "visual noise" that VIF adds to both channels, in squared grey levels of a
#: 0..255 image: the value of Sheikh & Bovik's pixel-domain reference code (``vifp_mscale.m``).
VIF_NOISE_VARIANCE = 2.0
_VIF_EPS = 1e-10  # below this a local variance counts as zero (as in the reference code)
_VIF_SCALES = 4
#: Smallest side VIF accepts: with 'valid' windows of 17, 9, 5 and 3 px and a 2x subsampling
#: between scales, the coarsest scale keeps at least one pixel from 41 px on (as piq requires).
VIF_MIN_SIZE = 41


def _vif_window_1d(n: int) -> np.ndarray:
    """The 1-D factor of MATLAB's ``fspecial('gaussian', n, n / 5)`` (the 2-D window is its
    outer product with itself, already normalised)."""
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    k = np.exp(-0.5 * (x / (n / 5.0)) ** 2)
    return k / k.sum()


def _vif_single(ref: np.ndarray, dist: np.ndarray) -> float:
    """VIFp of one grey image pair (float64 arrays on a 0..255 scale); NaN for a flat reference."""
    num = den = 0.0
    for scale in range(_VIF_SCALES):
        k = _vif_window_1d(2 ** (_VIF_SCALES - scale) + 1)  # 17, 9, 5, 3
        if scale:
            # low-pass with this scale's window, then keep every second pixel
            ref = _filter_valid(ref, k)[::2, ::2]
            dist = _filter_valid(dist, k)[::2, ::2]
        mu_r, mu_d = _filter_valid(ref, k), _filter_valid(dist, k)
        var_r = np.maximum(_filter_valid(ref * ref, k) - mu_r * mu_r, 0.0)
        var_d = np.maximum(_filter_valid(dist * dist, k) - mu_d * mu_d, 0.0)
        cov = _filter_valid(ref * dist, k) - mu_r * mu_d
        # The distortion channel dist = gain * ref + additive noise (variance noise_var), fitted
        # locally; the corner cases follow the reference code in the same order.
        gain = cov / (var_r + _VIF_EPS)
        noise_var = var_d - gain * cov
        flat_ref = var_r < _VIF_EPS
        gain[flat_ref] = 0.0
        noise_var[flat_ref] = var_d[flat_ref]
        var_r[flat_ref] = 0.0
        flat_dist = var_d < _VIF_EPS
        gain[flat_dist] = 0.0
        noise_var[flat_dist] = 0.0
        negative = gain < 0
        noise_var[negative] = var_d[negative]
        gain[negative] = 0.0
        noise_var = np.maximum(noise_var, _VIF_EPS)
        num += float(np.sum(np.log10(1.0 + gain**2 * var_r / (noise_var + VIF_NOISE_VARIANCE))))
        den += float(np.sum(np.log10(1.0 + var_r / VIF_NOISE_VARIANCE)))
    return num / den if den > 0 else float("nan")


def vif(
    sr: Any,
    hr: Any,
    protocol: str = "ctcnet",
    reduction: str = "mean",
    crop_border: int | None = None,
) -> float | list[float]:
    """Visual information fidelity in the pixel domain (VIFp) on the luma channel.

    VIF (Sheikh & Bovik, "Image information and visual quality", IEEE TIP 15(2), 2006) is the
    share of the information a reference image carries to an observer (modelled as Gaussian
    scale mixture signal plus visual noise of variance :data:`VIF_NOISE_VARIANCE`) that survives
    in the distorted image, where the distortion is a local gain plus additive noise. This is the
    *pixel-domain* multi-scale version released by the authors (``vifp_mscale.m``): four scales
    with Gaussian windows of 17, 9, 5 and 3 px (σ = size / 5), 'valid' filtering, 2x subsampling
    after a low-pass between scales, and the information summed over all scales before the
    ratio. It is *not* the wavelet-domain VIF of the paper's main text (steerable pyramid).

    It is computed on the same grey image as :func:`psnr` and :func:`ssim` for ``protocol``: the
    BT.601 luma Y (truncated uint8 for ``ctcnet``, rounded for ``dic``, float for ``basicsr``),
    on a 0..255 scale (the noise variance 2 assumes that scale), after the protocol's border crop.

    Parameters
    ----------
    sr, hr : numpy.ndarray or torch.Tensor
        Distorted (super-resolved) and reference images, as accepted by :func:`psnr`. The order
        matters: VIF is not symmetric.
    protocol : {"ctcnet", "dic", "basicsr"}, default "ctcnet"
        Which luma and border crop (:data:`PROTOCOLS`).
    reduction : {"mean", "none"}, default "mean"
        For batches: mean of per-image scores, or the per-image list.
    crop_border : int, optional
        Override the protocol's border crop.

    Returns
    -------
    float or list of float
        1.0 for identical images, 0 when nothing of the reference survives; above 1 for an image
        of higher contrast than the reference. NaN for a flat reference (it carries no
        information).

    Raises
    ------
    ValueError
        On an unknown protocol, wrong dtype/shape, mismatched shapes, or an image smaller than
        :data:`VIF_MIN_SIZE` after cropping.
    """
    spec = _check_protocol(protocol)
    crop = _crop_for(spec, crop_border)
    a, b, batched = _pair(sr, hr)
    ya, yb = _y_cropped(a, spec, protocol, crop), _y_cropped(b, spec, protocol, crop)
    h, w = ya.shape[1:3]
    if h < VIF_MIN_SIZE or w < VIF_MIN_SIZE:
        raise ValueError(
            f"image of size {h}x{w} (after a {crop}-pixel crop) is smaller than the "
            f"{VIF_MIN_SIZE}x{VIF_MIN_SIZE} that VIF's four scales need"
        )
    values = [_vif_single(yb[i], ya[i]) for i in range(ya.shape[0])]
    return _reduce(values, batched, reduction)


# --------------------------------------------------------------------------------------------
# LPIPS
# --------------------------------------------------------------------------------------------
def lpips(
    sr: Any,
    hr: Any,
    reduction: str = "mean",
    network: Any = None,
    device: Any = None,
    batch_size: int = 32,
) -> float | list[float]:
    """LPIPS distance (Zhang et al. 2018; AlexNet, v0.1 heads) on the RGB images.

    The images are scored as uint8 RGB, like PSNR/SSIM (tensors are first converted with the
    truncating :func:`ctcnet.pixels.to_uint8`), mapped to [-1, 1] as ``v / 127.5 - 1``,
    whole (no protocol crop, no luma). Lower is better; 0 for identical images.

    Parameters
    ----------
    sr, hr : numpy.ndarray or torch.Tensor
        As accepted by :func:`psnr` (the distance is symmetric).
    reduction : {"mean", "none"}, default "mean"
        For batches: mean of per-image distances, or the per-image list.
    network : ctcnet.lpips.LPIPS, optional
        The network; default :func:`ctcnet.lpips.load_lpips` (downloads its weights on first use:
        see :mod:`ctcnet.lpips`).
    device : str or torch.device, optional
        Where to run it (default: where the network's weights are).
    batch_size : int, default 32
        Images per forward pass.

    Returns
    -------
    float or list of float
        The distance(s).
    """
    a, b, batched = _pair(sr, hr)
    if network is None:
        network = load_lpips()
    device = torch.device(device) if device is not None else next(network.parameters()).device
    network = network.to(device)
    values: list[float] = []
    with torch.no_grad():
        for start in range(0, a.shape[0], batch_size):
            pair = [
                torch.from_numpy(np.array(z[start : start + batch_size]))  # a writable copy
                .to(device)
                .permute(0, 3, 1, 2)
                .float()
                / 127.5
                - 1.0
                for z in (a, b)
            ]
            values.extend(network(*pair).double().cpu().tolist())
    return _reduce(values, batched, reduction)


class MetricInfo(NamedTuple):
    """What a metric measures and how to read it."""

    label: str  # column title
    higher_is_better: bool
    decimals: int  # shown in summaries
    description: str


#: The metrics :func:`ctcnet.evaluate.evaluate` and ``ctcnet eval --metrics`` know.
METRICS: dict[str, MetricInfo] = {
    "psnr": MetricInfo("PSNR (dB)", True, 3, "peak signal-to-noise ratio on the luma"),
    "ssim": MetricInfo("SSIM", True, 4, "structural similarity on the luma"),
    "vif": MetricInfo("VIF", True, 4, "pixel-domain visual information fidelity (VIFp), luma"),
    "lpips": MetricInfo(
        "LPIPS", False, 4, "learned perceptual distance, AlexNet v0.1 (weights fetched once)"
    ),
}
#: What ``ctcnet eval`` computes unless told otherwise: cheap and offline.
DEFAULT_METRICS = ("psnr", "ssim")


def parse_metrics(names: str | Iterable[str]) -> tuple[str, ...]:
    """Validate a metric list (``"psnr,ssim,vif"``, ``"all"`` or a sequence of names).

    Returns the names in the order given, lower-cased and without repeats. Raises
    ``ValueError`` with one line for an unknown or empty list.
    """
    items = names.split(",") if isinstance(names, str) else list(names)
    wanted = [str(n).strip().lower() for n in items if str(n).strip()]
    if not wanted:
        raise ValueError(f"no metric given; choose from {', '.join(METRICS)} (or all)")
    if wanted == ["all"]:
        return tuple(METRICS)
    unknown = [n for n in wanted if n not in METRICS]
    if unknown:
        raise ValueError(
            f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)} (or all)"
        )
    return tuple(dict.fromkeys(wanted))


def evaluate_pair(
    sr: Any,
    hr: Any,
    protocols: str | Sequence[str] | Iterable[str] = ("ctcnet", "dic", "basicsr"),
    reduction: str = "mean",
) -> dict[str, dict[str, float | list[float]]]:
    """PSNR and SSIM of one pair (or batch) under several protocols.

    Parameters
    ----------
    sr, hr : numpy.ndarray or torch.Tensor
        Images as accepted by :func:`psnr`.
    protocols : str or sequence of str, default all three
        Protocol names.
    reduction : {"mean", "none"}, default "mean"
        Batch reduction, as in :func:`psnr`.

    Returns
    -------
    dict
        ``{protocol: {"psnr": ..., "ssim": ...}}``.
    """
    names = [protocols] if isinstance(protocols, str) else list(protocols)
    if not names:
        raise ValueError("evaluate_pair needs at least one protocol")
    for name in names:
        _check_protocol(name)
    a, b, batched = _pair(sr, hr)  # convert tensors once
    if not batched:
        a, b = a[0], b[0]
    return {
        name: {
            "psnr": psnr(a, b, name, reduction=reduction),
            "ssim": ssim(a, b, name, reduction=reduction),
        }
        for name in names
    }

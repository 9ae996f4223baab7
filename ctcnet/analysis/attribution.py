"""Attribution maps for CTCNet: Local Attribution Maps (LAM) and captum baselines.

LAM (Gu & Dong, "Interpreting Super-Resolution Networks with Local Attribution Maps", CVPR 2021)
asks which *input* pixels an SR network uses to produce the edges inside a small output window:

1. the objective ``D(Y)`` is the summed gradient magnitude of the SR output ``Y`` inside the
   window (finite differences, "interpret features, not pixels");
2. the baseline is a strongly blurred input, and the path from it to the input is a
   **progressive Gaussian blur** ``gamma(a) = G_{sigma (1 - a)} * I`` (not a straight line);
3. the attribution is the path-integrated gradient
   ``sum_i dD(F(gamma_i))/dgamma_i * (gamma_i - gamma_{i-1})`` (a Riemann sum with ``steps``
   points, the same as the LAM code's ``mean_i grad_i * dgamma_i/da``), so that the attributions
   add up to ``D(F(I)) - D(F(baseline))`` (completeness, as for integrated gradients);
4. the Diffusion Index ``DI = (1 - Gini(|map|)) x 100`` measures how spread out the map is.

The CTCNet input is the 16x16 LR face bicubic-upsampled to 128x128. With ``space="lr"`` LAM is
computed with respect to the LR image, through :class:`BicubicUpsample` (a differentiable
re-implementation of PIL's bicubic resize); with ``space="hr"`` with respect to the 128x128 input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "pil_bicubic_matrix",
    "BicubicUpsample",
    "gaussian_kernel",
    "gaussian_blur",
    "window_objective",
    "gini",
    "diffusion_index",
    "LAMResult",
    "lam",
    "WindowObjective",
    "captum_attributions",
]


# --------------------------------------------------------------------------------------------
# A differentiable PIL-style bicubic upsampler
# --------------------------------------------------------------------------------------------


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    return np.where(
        x < 1,
        ((a + 2) * x - (a + 3)) * x * x + 1,
        np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0),
    )


def pil_bicubic_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """The ``out_size x in_size`` matrix of PIL's bicubic resampling along one axis.

    Follows PIL's ``precompute_coeffs`` (``libImaging/Resample.c``): Keys cubic with
    ``a = -0.5``, support ``2 * max(in/out, 1)`` (widened when down-scaling), output pixel centre
    ``(i + 0.5) * in/out``, taps outside the image dropped and the remaining weights renormalised
    to sum 1. Applied to float images this equals PIL's ``"F"``-mode resize; for 8-bit images PIL
    additionally quantises the weights to 22-bit fixed point and rounds/clips the result to
    ``0..255`` (differences of at most one grey level).
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    m = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        taps = np.arange(lo, hi)
        weights = _cubic((taps - center + 0.5) / filterscale)
        if weights.sum() != 0:
            weights = weights / weights.sum()
        m[i, lo:hi] = weights
    return torch.from_numpy(m).float()


class BicubicUpsample(nn.Module):
    """Differentiable, PIL-compatible bicubic resize ``(N, C, h, w) -> (N, C, s*h, s*w)``:
    ``out = A_h @ x @ A_w^T`` with the matrices of :func:`pil_bicubic_matrix`.

    ``torch.nn.functional.interpolate(mode="bicubic")`` differs from PIL (``a = -0.75`` and
    border replication), which is why the project's degradation (PIL) is re-implemented here.
    """

    def __init__(self, scale: int = 8) -> None:
        super().__init__()
        self.scale = scale
        self._cache: dict[tuple[int, int], torch.Tensor] = {}

    def _matrix(self, n: int, like: torch.Tensor) -> torch.Tensor:
        key = (n, n * self.scale)
        if key not in self._cache:
            self._cache[key] = pil_bicubic_matrix(n, n * self.scale)
        return self._cache[key].to(like.device, like.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ah = self._matrix(x.shape[-2], x)
        aw = self._matrix(x.shape[-1], x)
        return ah @ x @ aw.transpose(0, 1)


# --------------------------------------------------------------------------------------------
# LAM building blocks
# --------------------------------------------------------------------------------------------


def gaussian_kernel(sigma: float, size: int) -> torch.Tensor:
    """Normalised isotropic 2-D Gaussian ``size x size`` (``size`` odd); ``sigma = 0`` gives the
    identity (a centred delta), as needed for the end point of the LAM path."""
    if size % 2 == 0:
        raise ValueError("kernel size must be odd")
    k = torch.zeros(size, size, dtype=torch.float64)
    if sigma <= 0:
        k[size // 2, size // 2] = 1.0
        return k
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def gaussian_blur(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Blur ``x`` (``(C, H, W)``) with each of ``kernels`` (``(K, k, k)``): ``(K, C, H, W)``.
    Reflect padding (OpenCV's default ``BORDER_REFLECT_101``, used by the LAM code)."""
    c = x.shape[0]
    k = kernels.shape[-1]
    pad = k // 2
    padded = F.pad(x[None].double(), (pad, pad, pad, pad), mode="reflect")  # (1, C, H+2p, W+2p)
    weight = kernels[:, None].double()  # (K, 1, k, k)
    out = F.conv2d(padded.transpose(0, 1), weight)  # (C, K, H, W)
    return out.transpose(0, 1).to(x.dtype).reshape(len(kernels), c, *x.shape[-2:])


def window_objective(
    y: torch.Tensor, window: tuple[int, int, int], kind: str = "grad", eps: float = 1e-8
) -> torch.Tensor:
    """LAM's scalar objective per sample, shape ``(N,)``.

    ``kind="grad"`` (LAM's ``attr_grad``): ``sum_{c, p in window} sqrt(dh^2 + dw^2 + eps)`` with
    forward differences ``dh = Y[p] - Y[p + e_h]``, ``dw = Y[p] - Y[p + e_w]``; ``eps`` keeps the
    gradient finite where the output is flat (the LAM code zeroes the resulting NaNs instead).
    ``kind="sum"`` (LAM's ``attr_id``): the plain sum of the window.

    ``window = (top, left, size)`` in output pixels.
    """
    top, left, size = window
    if kind == "sum":
        return y[:, :, top : top + size, left : left + size].sum(dim=(1, 2, 3))
    if kind != "grad":
        raise ValueError(f"kind must be 'grad' or 'sum', got {kind!r}")
    dh = y[:, :, :-1, :-1] - y[:, :, 1:, :-1]
    dw = y[:, :, :-1, :-1] - y[:, :, :-1, 1:]
    mag = torch.sqrt(dh**2 + dw**2 + eps)
    return mag[:, :, top : top + size, left : left + size].sum(dim=(1, 2, 3))


def gini(x, corrected: bool = False) -> float:
    """Gini coefficient of the values of ``x`` (0 = all equal, -> 1 = all mass in one entry).

    Follows the LAM code (``utils.gini``): values are shifted to be non-negative, ``1e-7`` is
    added, and ``G = sum_i (2i - n - 1) x_(i) / (n sum x)`` over the sorted values. Its maximum
    is ``(n - 1) / n`` (one non-zero entry). ``corrected=True`` multiplies by ``n / (n - 1)`` and
    adds ``1e-7`` only to an all-zero input, so that a one-hot input gives exactly 1.
    """
    a = np.asarray(x, dtype=np.float64).ravel().copy()
    n = a.size
    if n < 2:
        return 0.0
    if a.min() < 0:
        a -= a.min()
    if not corrected or a.sum() == 0:
        a += 1e-7
    a.sort()
    index = np.arange(1, n + 1)
    g = float(np.sum((2 * index - n - 1) * a) / (n * np.sum(a)))
    return g * n / (n - 1) if corrected else g


def diffusion_index(attribution_map, corrected: bool = False) -> float:
    """LAM's Diffusion Index ``DI = (1 - Gini(|map|)) x 100`` (Gu & Dong, CVPR 2021).

    100 for a uniform map; for a map with a single non-zero pixel ``100 / n`` with the LAM
    code's Gini (``corrected=False``) or exactly 0 with ``corrected=True``. A larger DI means the
    network uses more input pixels.
    """
    return (1.0 - gini(np.abs(np.asarray(attribution_map)), corrected=corrected)) * 100.0


# --------------------------------------------------------------------------------------------
# LAM
# --------------------------------------------------------------------------------------------


@dataclass
class LAMResult:
    """Result of :func:`lam`.

    Attributes
    ----------
    map : numpy.ndarray
        ``(H, W)`` ``|sum over channels of the attributions|`` divided by its maximum (LAM's
        ``grad_abs_norm``), on the grid of ``space``.
    attributions : numpy.ndarray
        ``(C, H, W)`` signed path-integrated gradients.
    diffusion_index : float
        :func:`diffusion_index` of ``map`` (LAM convention).
    objective_input, objective_baseline : float
        ``D(F(I))`` and ``D(F(baseline))``; completeness: ``attributions.sum()`` approximates
        their difference (Riemann error ``O(1/steps)``).
    window : (top, left, size)
    space : {"lr", "hr"}
    sigmas : numpy.ndarray
        Blur levels of the path points, from ``sigma_max`` to 0.
    """

    map: np.ndarray
    attributions: np.ndarray
    diffusion_index: float
    objective_input: float
    objective_baseline: float
    window: tuple[int, int, int]
    space: str
    sigmas: np.ndarray

    @property
    def completeness_gap(self) -> float:
        """``sum(attributions) - (D(F(I)) - D(F(baseline)))``."""
        return float(self.attributions.sum() - (self.objective_input - self.objective_baseline))


def lam(
    model: nn.Module,
    image: torch.Tensor,
    window: tuple[int, int, int],
    steps: int = 50,
    sigma_max: float | None = None,
    space: str = "lr",
    kernel_size: int | None = None,
    scale: int = 8,
    objective: str = "grad",
    batch_size: int = 10,
    upsampler: nn.Module | None = None,
) -> LAMResult:
    """Local Attribution Map (Gu & Dong, CVPR 2021) of ``model`` for an output ``window``.

    Parameters
    ----------
    model : nn.Module
        An SR network taking the upsampled image (e.g. CTCNet). Put in eval mode for the call
        (path points are batched; BatchNorm in training mode would mix them), then restored.
    image : tensor
        ``space="lr"``: the LR image ``(3, h, w)`` or ``(1, 3, h, w)`` in ``[-1, 1]``; the model
        input is ``upsampler(path point)``. ``space="hr"``: the model input itself (the
        bicubic-upsampled image, e.g. ``(1, 3, 128, 128)``); the path blurs it directly.
    window : (top, left, size)
        Output window, in output pixels.
    steps : int
        Number of path points (LAM's ``fold``; the demo uses 50).
    sigma_max : float, optional
        Blur of the baseline. Default: LAM's 1.2 on the LR grid, ``1.2 * scale`` on the HR grid.
    space : {"lr", "hr"}
    kernel_size : int, optional
        Gaussian kernel side; default ``2 * ceil(3 * sigma_max) + 1`` (9 for sigma 1.2, as in LAM).
    scale : int
        Upsampling factor for ``space="lr"`` (and for the default ``sigma_max`` in ``"hr"``).
    objective : {"grad", "sum"}
        See :func:`window_objective`.
    batch_size : int
        Path points per forward/backward pass.
    upsampler : nn.Module, optional
        Default :class:`BicubicUpsample` ``(scale)`` (PIL-compatible).

    Returns
    -------
    LAMResult

    Notes
    -----
    Path (as in LAM's ``GaussianBlurPath``): ``sigma_i = sigma_max (1 - i/steps)``,
    ``gamma_i = G_{sigma_i} * I`` for ``i = 0..steps`` (``gamma_0`` = baseline, ``gamma_steps = I``).
    Attribution: ``sum_{i=1..steps} grad D(F(gamma_i)) * (gamma_i - gamma_{i-1})``, i.e. the
    gradient at the end of each segment times the segment (LAM's
    ``grad_i * (k_{i+1} - k_i) * fold`` averaged over ``fold``).
    """
    if space not in ("lr", "hr"):
        raise ValueError(f"space must be 'lr' or 'hr', got {space!r}")
    image = image.detach()
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError("lam explains one image; pass a batch of size 1")
        image = image[0]
    if sigma_max is None:
        sigma_max = 1.2 if space == "lr" else 1.2 * scale
    if kernel_size is None:
        kernel_size = 2 * math.ceil(3 * sigma_max) + 1
    max_k = 2 * min(image.shape[-2:]) - 1
    kernel_size = min(kernel_size, max_k if max_k % 2 else max_k - 1)
    device = next(model.parameters()).device if any(True for _ in model.parameters()) else "cpu"
    image = image.to(device=device, dtype=torch.float32)
    if space == "lr":
        upsampler = upsampler if upsampler is not None else BicubicUpsample(scale)
    else:
        upsampler = nn.Identity()

    sigmas = np.linspace(sigma_max, 0.0, steps + 1)
    kernels = torch.stack([gaussian_kernel(float(s), kernel_size) for s in sigmas]).to(device)
    path = gaussian_blur(image, kernels)  # (steps + 1, C, h, w); path[0] baseline, path[-1] ~ I
    path[-1] = image  # sigma = 0 is exactly the input
    deltas = path[1:] - path[:-1]

    was_training = model.training
    model.eval()
    grads = torch.zeros_like(path[1:])
    try:
        for start in range(0, steps, batch_size):
            points = path[1 + start : 1 + start + batch_size].clone().requires_grad_(True)
            value = window_objective(model(upsampler(points)), window, objective)
            (g,) = torch.autograd.grad(value.sum(), points)
            grads[start : start + len(points)] = torch.nan_to_num(g)
        with torch.no_grad():
            ends = torch.stack([path[0], path[-1]])
            f_base, f_input = window_objective(model(upsampler(ends)), window, objective).tolist()
    finally:
        model.train(was_training)

    attributions = (grads * deltas).sum(dim=0)  # (C, h, w)
    summed = attributions.sum(dim=0).abs()
    amap = summed / summed.max() if summed.max() > 0 else summed
    amap_np = amap.double().cpu().numpy()
    return LAMResult(
        map=amap_np,
        attributions=attributions.double().cpu().numpy(),
        diffusion_index=diffusion_index(amap_np),
        objective_input=f_input,
        objective_baseline=f_base,
        window=tuple(window),
        space=space,
        sigmas=sigmas,
    )


# --------------------------------------------------------------------------------------------
# captum comparisons
# --------------------------------------------------------------------------------------------


class WindowObjective(nn.Module):
    """``x -> window_objective(model(x), window)``: one scalar per sample, the form captum's
    attribution methods need for an image-to-image model (no ``target`` required)."""

    def __init__(self, model: nn.Module, window: tuple[int, int, int], kind: str = "grad") -> None:
        super().__init__()
        self.model = model
        self.window = tuple(window)
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return window_objective(self.model(x), self.window, self.kind)


def captum_attributions(
    model: nn.Module,
    x: torch.Tensor,
    window: tuple[int, int, int],
    methods: Sequence[str] = ("ig", "smoothgrad", "occlusion", "gradcam"),
    layer: nn.Module | None = None,
    baseline: torch.Tensor | None = None,
    n_steps: int = 50,
    internal_batch_size: int = 10,
    nt_samples: int = 8,
    stdevs: float = 0.1,
    occlusion_size: int = 16,
    occlusion_stride: int = 8,
    sigma: float = 9.6,
    objective: str = "grad",
) -> dict[str, np.ndarray]:
    """captum attribution maps for the window objective, with respect to the model input ``x``.

    Methods (all plain autograd or perturbation, so safe for CTCNet):

    * ``"ig"``: :class:`captum.attr.IntegratedGradients` (Sundararajan et al., ICML 2017) from a
      Gaussian-blurred baseline (``sigma`` in input pixels) along the **straight line** --
      LAM's "GaussianLinearPath" ablation, not LAM's progressive-blur path;
    * ``"smoothgrad"``: :class:`captum.attr.NoiseTunnel` over :class:`captum.attr.Saliency`
      (Smilkov et al., 2017), ``nt_samples`` noisy copies with std ``stdevs``;
    * ``"occlusion"``: :class:`captum.attr.Occlusion` (Zeiler & Fergus, 2014) with zero patches of
      ``occlusion_size`` and stride ``occlusion_stride``;
    * ``"gradcam"``: :class:`captum.attr.LayerGradCam` (Selvaraju et al., ICCV 2017) on ``layer``
      (default ``model.decoder[2]`` when present), upsampled bilinearly to the input size.

    Hook-based methods (DeepLift, GuidedBackprop, LRP, Deconvolution) are deliberately not
    offered: CTCNet reuses modules within one forward (``resampler.e1_down`` three times,
    ``e3_up2`` twice, each FRM's ``local_mid`` and the FEU local blocks twice), which breaks
    captum's module hooks or makes them silently wrong (captum issues #578, #1104).
    The model is put in eval mode (captum batches inputs; BatchNorm in training mode would mix
    them) and restored afterwards.

    Parameters
    ----------
    model : nn.Module
    x : tensor (1, C, H, W)
        The model input.
    window : (top, left, size)
    methods : sequence of str
    layer : nn.Module, optional
    baseline : tensor, optional
        IG baseline; default a Gaussian blur of ``x``.

    Returns
    -------
    dict
        method -> ``(H, W)`` map ``|sum over channels|`` normalised to max 1 (GradCAM: the signed
        layer map as captum returns it, normalised by its max absolute value).
    """
    from captum.attr import (
        IntegratedGradients,
        LayerAttribution,
        LayerGradCam,
        NoiseTunnel,
        Occlusion,
        Saliency,
    )

    x = x.detach()
    if x.dim() == 3:
        x = x[None]
    was_training = model.training
    model.eval()
    forward = WindowObjective(model, window, objective)
    out: dict[str, np.ndarray] = {}

    def norm(a: torch.Tensor, signed: bool = False) -> np.ndarray:
        a = a.detach().sum(dim=1)[0] if a.dim() == 4 else a.detach()
        a = a if signed else a.abs()
        m = a.abs().max()
        return (a / m if m > 0 else a).double().cpu().numpy()

    try:
        for method in methods:
            if method == "ig":
                if baseline is None:
                    size = min(2 * math.ceil(3 * sigma) + 1, 2 * min(x.shape[-2:]) - 1)
                    size = size if size % 2 else size - 1
                    blurred = gaussian_blur(x[0], gaussian_kernel(sigma, size)[None].to(x.device))
                    base = blurred
                else:
                    base = baseline
                attr = IntegratedGradients(forward).attribute(
                    x, baselines=base, n_steps=n_steps, internal_batch_size=internal_batch_size
                )
                out[method] = norm(attr)
            elif method == "smoothgrad":
                attr = NoiseTunnel(Saliency(forward)).attribute(
                    x, nt_type="smoothgrad", nt_samples=nt_samples,
                    nt_samples_batch_size=internal_batch_size, stdevs=stdevs, abs=False,
                )
                out[method] = norm(attr)
            elif method == "occlusion":
                c = x.shape[1]
                attr = Occlusion(forward).attribute(
                    x,
                    sliding_window_shapes=(c, occlusion_size, occlusion_size),
                    strides=(c, occlusion_stride, occlusion_stride),
                    baselines=0.0,
                    perturbations_per_eval=internal_batch_size,
                )
                out[method] = norm(attr)
            elif method == "gradcam":
                target_layer = layer if layer is not None else model.decoder[2]
                attr = LayerGradCam(forward, target_layer).attribute(x)
                attr = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), "bilinear")
                out[method] = norm(attr[:, 0][0], signed=True)
            else:
                raise ValueError(f"unknown method {method!r}")
    finally:
        model.train(was_training)
    return out

"""Attribution maps for CTCNet: Local Attribution Maps (LAM), Grad-CAM, captum baselines, and
the weight-randomisation sanity check.

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
from dataclasses import dataclass, field

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
    "lam_windows",
    "WindowObjective",
    "GradCAMResult",
    "GradCAMWeightsError",
    "gradcam",
    "default_gradcam_layer",
    "captum_attributions",
    "rank_correlation",
    "map_ssim",
    "pool_map",
    "randomization_groups",
    "randomized_models",
    "SanityCheckResult",
    "sanity_check",
    "detail_windows",
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

    100 for a uniform map; for a map with a single non-zero pixel about ``100 / n`` with the LAM
    code's Gini (``corrected=False``; the ``1e-7`` it adds to every value raises this on large
    maps: 0.39 for 16x16, 0.17 instead of 0.006 for 128x128) or exactly 0 with
    ``corrected=True``. A larger DI means the network uses more input pixels. DIs of maps with
    different numbers of cells are not comparable (see :func:`pool_map`).
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
        their difference (Riemann error ``O(1/steps)`` for ``rule="right"``, ``O(1/steps^2)``
        for ``rule="midpoint"``).
    window : (top, left, size)
    space : {"lr", "hr"}
    sigmas : numpy.ndarray
        Blur levels of the path's grid points, from ``sigma_max`` to 0.
    rule : {"right", "midpoint"}
        Where the gradient of each path segment was evaluated.
    """

    map: np.ndarray
    attributions: np.ndarray
    diffusion_index: float
    objective_input: float
    objective_baseline: float
    window: tuple[int, int, int]
    space: str
    sigmas: np.ndarray
    rule: str = "right"

    @property
    def completeness_gap(self) -> float:
        """``sum(attributions) - (D(F(I)) - D(F(baseline)))``."""
        return float(self.attributions.sum() - (self.objective_input - self.objective_baseline))

    @property
    def completeness_error(self) -> float:
        """:attr:`completeness_gap` relative to ``|D(F(I)) - D(F(baseline))|`` (``inf`` when
        the objective does not change along the path)."""
        change = abs(self.objective_input - self.objective_baseline)
        return self.completeness_gap / change if change > 0 else math.inf


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
    rule: str = "right",
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
        Number of path segments, i.e. of gradient evaluations (LAM's ``fold``; the demo uses 50).
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
    rule : {"right", "midpoint"}
        Quadrature of the path integral. ``"right"`` (LAM's code): the gradient at the end of
        each segment, error ``O(1/steps)``. ``"midpoint"``: the gradient at the path point of the
        segment's middle blur level, error ``O(1/steps^2)`` for the same number of gradients
        (on the shipped model, 8 midpoint steps complete about as well as 32 right steps).

    Returns
    -------
    LAMResult

    Notes
    -----
    Path (as in LAM's ``GaussianBlurPath``): ``sigma_i = sigma_max (1 - i/steps)``,
    ``gamma_i = G_{sigma_i} * I`` for ``i = 0..steps`` (``gamma_0`` = baseline, ``gamma_steps = I``).
    Attribution: ``sum_{i=1..steps} grad D(F(p_i)) * (gamma_i - gamma_{i-1})`` with
    ``p_i = gamma_i`` (``"right"``, LAM's ``grad_i * (k_{i+1} - k_i) * fold`` averaged over
    ``fold``) or ``p_i = G_{(sigma_{i-1} + sigma_i)/2} * I`` (``"midpoint"``).
    :func:`lam_windows` explains several windows of one image with shared forward passes.
    """
    return lam_windows(
        model, image, [window], steps=steps, sigma_max=sigma_max, space=space,
        kernel_size=kernel_size, scale=scale, objective=objective, batch_size=batch_size,
        upsampler=upsampler, rule=rule,
    )[0]


def lam_windows(
    model: nn.Module,
    image: torch.Tensor,
    windows: Sequence[tuple[int, int, int]],
    steps: int = 50,
    sigma_max: float | None = None,
    space: str = "lr",
    kernel_size: int | None = None,
    scale: int = 8,
    objective: str = "grad",
    batch_size: int = 10,
    upsampler: nn.Module | None = None,
    rule: str = "right",
) -> list[LAMResult]:
    """:func:`lam` for several output ``windows`` of the same image, one result per window.

    The path depends only on the image, so each batch of path points goes forward once and
    back once per window (``retain_graph``): ``len(windows)`` maps cost about
    ``1 + 2 len(windows)`` forward-pass equivalents per path point instead of
    ``3 len(windows)``. The parameters are those of :func:`lam`.
    """
    if space not in ("lr", "hr"):
        raise ValueError(f"space must be 'lr' or 'hr', got {space!r}")
    if rule not in ("right", "midpoint"):
        raise ValueError(f"rule must be 'right' or 'midpoint', got {rule!r}")
    windows = [tuple(w) for w in windows]
    if not windows:
        raise ValueError("windows is empty")
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

    def blurred(levels: np.ndarray) -> torch.Tensor:
        kernels = torch.stack([gaussian_kernel(float(s), kernel_size) for s in levels])
        return gaussian_blur(image, kernels.to(device))

    sigmas = np.linspace(sigma_max, 0.0, steps + 1)
    path = blurred(sigmas)  # (steps + 1, C, h, w); path[0] baseline, path[-1] ~ I
    path[-1] = image  # sigma = 0 is exactly the input
    deltas = path[1:] - path[:-1]
    points_all = path[1:] if rule == "right" else blurred((sigmas[1:] + sigmas[:-1]) / 2)

    was_training = model.training
    model.eval()
    grads = torch.zeros((len(windows), *points_all.shape), dtype=points_all.dtype, device=device)
    try:
        for start in range(0, steps, batch_size):
            points = points_all[start : start + batch_size].clone().requires_grad_(True)
            output = model(upsampler(points))
            for k, window in enumerate(windows):
                value = window_objective(output, window, objective)
                (g,) = torch.autograd.grad(
                    value.sum(), points, retain_graph=k < len(windows) - 1
                )
                grads[k, start : start + len(points)] = torch.nan_to_num(g)
            del output
        with torch.no_grad():
            ends = model(upsampler(torch.stack([path[0], path[-1]])))
            objectives = [window_objective(ends, w, objective).tolist() for w in windows]
    finally:
        model.train(was_training)

    results = []
    for k, window in enumerate(windows):
        attributions = (grads[k] * deltas).sum(dim=0)  # (C, h, w)
        summed = attributions.sum(dim=0).abs()
        amap = summed / summed.max() if summed.max() > 0 else summed
        amap_np = amap.double().cpu().numpy()
        f_base, f_input = objectives[k]
        results.append(
            LAMResult(
                map=amap_np,
                attributions=attributions.double().cpu().numpy(),
                diffusion_index=diffusion_index(amap_np),
                objective_input=f_input,
                objective_baseline=f_base,
                window=window,
                space=space,
                sigmas=sigmas,
                rule=rule,
            )
        )
    return results


# --------------------------------------------------------------------------------------------
# Grad-CAM (Selvaraju et al., ICCV 2017) for an output window
# --------------------------------------------------------------------------------------------

#: Grad-CAM's channel weights count as rounding noise below this share of the layer's mean
#: absolute gradient (fp32 rounding leaves about 1e-8; a working layer of the shipped model: 0.65).
GRADCAM_NOISE_FLOOR = 1e-4


class GradCAMWeightsError(ValueError):
    """Grad-CAM's channel weights at the chosen layer are rounding noise (they cancel)."""


@dataclass
class GradCAMResult:
    """Result of :func:`gradcam`.

    Attributes
    ----------
    map : numpy.ndarray
        ``(H, W)`` ``ReLU(sum_k alpha_k A_k)`` upsampled bilinearly to the input size and divided
        by its maximum (all zeros when no position has positive evidence).
    weights : numpy.ndarray
        ``(K,)`` the channel weights ``alpha_k``: the spatial mean of ``dD/dA_k``.
    weight_to_gradient : float
        ``max_k |alpha_k| / mean |dD/dA|``: how much of the gradient survives the spatial
        average. Near 1e-8 in fp32 the weights are rounding noise (see :class:`GradCAMWeightsError`).
    positive_fraction : float
        Share of the layer's positions where ``sum_k alpha_k A_k > 0`` (what the ReLU keeps).
    layer : str
    """

    map: np.ndarray
    weights: np.ndarray
    weight_to_gradient: float
    positive_fraction: float
    layer: str


def default_gradcam_layer(model: nn.Module) -> str:
    """The default Grad-CAM layer of a :class:`ctcnet.model.CTCNet`, from :meth:`~ctcnet.model.CTCNet.units`:
    the second-to-last LGCM of the decoder (half resolution in the paper's layout).

    Why not the last one: after the last decoder LGCM only the output convolution follows, which
    is linear, and LAM's objective is a sum of pixel differences, whose gradient sums to zero
    over the pixels of every channel. The spatial mean of the gradient, Grad-CAM's channel
    weight, is then zero up to rounding at that layer. One stage earlier the gradient has passed
    through the last LGCM's non-linear layers and no longer cancels.
    """
    units = getattr(model, "units", None)
    if units is None:
        raise ValueError(f"{type(model).__name__} has no units(): pass Grad-CAM's layer by name")
    decoder = [u.path for u in units() if u.stage == "decoder" and u.paper_name == "LGCM"]
    if len(decoder) < 2:
        raise ValueError("the model's decoder has fewer than two LGCMs: pass Grad-CAM's layer by name")
    return decoder[-2]


def gradcam(
    model: nn.Module,
    x: torch.Tensor,
    window: tuple[int, int, int],
    layer: str | None = None,
    objective: str = "grad",
    check: bool = True,
) -> GradCAMResult:
    """Grad-CAM (Selvaraju et al., ICCV 2017) of an output ``window`` of an SR network.

    With ``A_k`` the ``k``-th channel of ``layer``'s output and ``D`` the window objective
    (:func:`window_objective`), ``alpha_k = mean_positions dD/dA_k`` and the map is
    ``ReLU(sum_k alpha_k A_k)``: the positions where the channels that increase ``D`` are
    active. The ReLU keeps positive evidence only, as in the paper; the map is non-negative.

    Parameters
    ----------
    model : nn.Module
        Put in eval mode for the call, then restored.
    x : tensor (1, C, H, W)
        The model input.
    window : (top, left, size)
    layer : str, optional
        Module path (``get_submodule``); default :func:`default_gradcam_layer`.
    objective : {"grad", "sum"}
    check : bool, default True
        Raise :class:`GradCAMWeightsError` when ``weight_to_gradient`` is below
        :data:`GRADCAM_NOISE_FLOOR`: the weights then carry no information (e.g. the last
        decoder LGCM of CTCNet with the ``"grad"`` objective, where they are zero analytically).

    Returns
    -------
    GradCAMResult
    """
    x = x.detach()
    x = x[None] if x.dim() == 3 else x
    if x.shape[0] != 1:
        raise ValueError("gradcam explains one image; pass a batch of size 1")
    layer = layer if layer is not None else default_gradcam_layer(model)
    module = model.get_submodule(layer)
    captured: list[torch.Tensor] = []
    hook = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    was_training = model.training
    model.eval()
    try:
        output = model(x)
    finally:
        hook.remove()
        model.train(was_training)
    if len(captured) != 1:
        raise ValueError(f"layer {layer!r} ran {len(captured)} times in one forward pass; "
                         "Grad-CAM needs a layer that runs once")
    features = captured[0]
    (grad,) = torch.autograd.grad(window_objective(output, window, objective).sum(), features)
    weights = grad.mean(dim=(2, 3))[0]  # (K,)
    ratio = float(weights.abs().max() / grad.abs().mean()) if grad.abs().mean() > 0 else 0.0
    if check and ratio < GRADCAM_NOISE_FLOOR:
        raise GradCAMWeightsError(
            f"Grad-CAM's channel weights at {layer!r} are rounding noise (max|alpha|/mean|dD/dA| "
            f"= {ratio:.1e}): the objective's gradient cancels over that layer; use an earlier layer")
    with torch.no_grad():
        cam = (weights[:, None, None] * features[0]).sum(dim=0)
        positive = float((cam > 0).double().mean())
        cam = F.interpolate(torch.relu(cam)[None, None], size=tuple(x.shape[-2:]), mode="bilinear",
                            align_corners=False)[0, 0]
        peak = cam.max()
        cam = cam / peak if peak > 0 else cam
    return GradCAMResult(map=cam.double().cpu().numpy(), weights=weights.detach().double().cpu().numpy(),
                         weight_to_gradient=ratio, positive_fraction=positive, layer=layer)


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
    layer: str | None = None,
    baseline: torch.Tensor | None = None,
    n_steps: int = 50,
    internal_batch_size: int = 10,
    nt_samples: int = 8,
    stdevs: float = 0.1,
    occlusion_size: int = 16,
    occlusion_stride: int = 8,
    sigma: float = 9.6,
    objective: str = "grad",
    completeness: dict | None = None,
) -> dict[str, np.ndarray]:
    """captum attribution maps (and Grad-CAM) for the window objective, with respect to the model
    input ``x``.

    Methods (all plain autograd or perturbation, so safe for CTCNet):

    * ``"ig"``: :class:`captum.attr.IntegratedGradients` (Sundararajan et al., ICML 2017) from a
      Gaussian-blurred baseline (``sigma`` in input pixels) along the **straight line** --
      LAM's "GaussianLinearPath" ablation, not LAM's progressive-blur path;
    * ``"smoothgrad"``: :class:`captum.attr.NoiseTunnel` over :class:`captum.attr.Saliency`
      (Smilkov et al., 2017), ``nt_samples`` noisy copies with std ``stdevs``;
    * ``"occlusion"``: :class:`captum.attr.Occlusion` (Zeiler & Fergus, 2014) with zero patches of
      ``occlusion_size`` and stride ``occlusion_stride``;
    * ``"gradcam"``: :func:`gradcam` (Selvaraju et al., ICCV 2017, with its ReLU) on ``layer``
      (default :func:`default_gradcam_layer`), upsampled bilinearly to the input size; it raises
      :class:`GradCAMWeightsError` where its channel weights cancel.

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
    layer : str, optional
        Grad-CAM's layer (a module path); default :func:`default_gradcam_layer`.
    baseline : tensor, optional
        IG baseline; default a Gaussian blur of ``x``.
    completeness : dict, optional
        If given, receives ``{"ig": relative completeness error}`` of integrated gradients:
        ``(sum of attributions - (D(x) - D(baseline))) / |D(x) - D(baseline)|``, the error of
        captum's quadrature with ``n_steps`` points (check it before trusting the map).

    Returns
    -------
    dict
        method -> ``(H, W)`` non-negative map normalised to max 1: ``|sum over channels|`` of the
        attributions, or Grad-CAM's map.
    """
    from captum.attr import (  # the analysis extra; import ctcnet alone does not need it
        IntegratedGradients,
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

    def norm(a: torch.Tensor) -> np.ndarray:
        a = a.detach().sum(dim=1)[0].abs()
        m = a.max()
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
                attr, delta = IntegratedGradients(forward).attribute(
                    x, baselines=base, n_steps=n_steps, internal_batch_size=internal_batch_size,
                    return_convergence_delta=True,
                )
                out[method] = norm(attr)
                if completeness is not None:  # captum's delta: sum(attr) - (D(x) - D(base))
                    change = float(attr.sum()) - float(delta.sum())
                    completeness["ig"] = (float(delta.sum()) / abs(change) if change != 0
                                          else math.inf)
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
                out[method] = gradcam(model, x, window, layer=layer, objective=objective).map
            else:
                raise ValueError(f"unknown method {method!r}")
    finally:
        model.train(was_training)
    return out


# --------------------------------------------------------------------------------------------
# Comparing maps, and the weight-randomisation sanity check (Adebayo et al., NeurIPS 2018)
# --------------------------------------------------------------------------------------------


def _ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``a`` (flat), ties sharing their average rank."""
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = np.arange(1, a.size + 1)
    # average the ranks of tied runs
    starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])
    ends = np.r_[starts[1:], a.size]
    for s, e in zip(starts, ends):
        if e - s > 1:
            ranks[order[s:e]] = (s + 1 + e) / 2.0
    return ranks


def _non_negative(a, name: str) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    if (x < 0).any():
        raise ValueError(f"{name} compares non-negative maps (|attributions|, or Grad-CAM after its "
                         "ReLU); this one has negative values: decide what the sign means first")
    return x


def rank_correlation(a, b) -> float:
    """Spearman rank correlation of two non-negative maps over all entries (same shape), ties
    given their average rank, as ``scipy.stats.spearmanr``. 0 when either map is constant.

    Adebayo et al. (2018) compare maps with and without the sign. Every map of this module is
    non-negative (``|sum over channels|``, or Grad-CAM after its ReLU), and a signed map is
    refused: ranking ``|map|`` would count negative evidence as use, which is a choice the caller
    should make and state.
    """
    x = _non_negative(a, "rank_correlation").ravel()
    y = _non_negative(b, "rank_correlation").ravel()
    if x.shape != y.shape:
        raise ValueError(f"maps differ in size: {np.shape(a)} vs {np.shape(b)}")
    rx, ry = _ranks(x), _ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denom = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else 0.0


def map_ssim(a, b, win_size: int = 7) -> float:
    """SSIM (Wang et al., 2004) of two non-negative ``(H, W)`` maps after dividing each by its
    maximum, so both lie in ``[0, 1]`` (``data_range = 1``); signed maps are refused, as in
    :func:`rank_correlation`.

    Uniform ``win_size x win_size`` windows over the valid region, sample covariances,
    ``K1 = 0.01``, ``K2 = 0.03``: the defaults of ``skimage.metrics.structural_similarity``,
    whose value this equals. ``win_size`` shrinks (odd) for maps smaller than 7 pixels.
    """
    x = _non_negative(a, "map_ssim")
    y = _non_negative(b, "map_ssim")
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"need two maps of the same (H, W) shape, got {x.shape} and {y.shape}")
    x = x / x.max() if x.max() > 0 else x
    y = y / y.max() if y.max() > 0 else y
    w = min(win_size, *x.shape)
    w = w if w % 2 else w - 1
    if w < 1:
        raise ValueError("maps too small for SSIM")
    view = np.lib.stride_tricks.sliding_window_view
    n = w * w
    px, py = view(x, (w, w)), view(y, (w, w))
    mx, my = px.mean(axis=(-2, -1)), py.mean(axis=(-2, -1))
    cov = n / (n - 1) if n > 1 else 1.0
    vx = (px**2).mean(axis=(-2, -1)) - mx**2
    vy = (py**2).mean(axis=(-2, -1)) - my**2
    vxy = (px * py).mean(axis=(-2, -1)) - mx * my
    vx, vy, vxy = vx * cov, vy * cov, vxy * cov
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def pool_map(attribution_map, factor: int) -> np.ndarray:
    """Sum ``|map|`` over ``factor x factor`` blocks: ``(H, W) -> (H/factor, W/factor)``.

    Puts maps of different resolutions on one grid before their Diffusion Indices are
    compared (e.g. a 128x128 input-space map onto the 16x16 LR grid with ``factor=8``): the
    smallest DI of a map with ``n`` cells is about ``100 / n`` (:func:`diffusion_index`), so DIs
    of maps with different numbers of cells are not comparable.
    """
    m = np.abs(np.asarray(attribution_map, dtype=np.float64))
    h, w = m.shape
    if h % factor or w % factor:
        raise ValueError(f"map {m.shape} is not divisible into {factor}x{factor} blocks")
    return m.reshape(h // factor, factor, w // factor, factor).sum(axis=(1, 3))


def randomization_groups(model: nn.Module) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The cascade of the sanity check, output side first: ``(label, module paths)`` per group.

    For a :class:`ctcnet.model.CTCNet` the groups follow the stages of
    :meth:`~ctcnet.model.CTCNet.units` (so an ablated or resized config needs no change here):
    the output convolution (``tail``), the decoder (upsamplings, MFFUs with their resamplers,
    LGCMs), the bottleneck (FRMs), then the encoder (its LGCMs and downsamplings) with the head.
    Any other model: one group per top-level child, the last registered first.
    """
    units = getattr(model, "units", None)
    if units is None:
        return tuple((name, (name,)) for name, _ in reversed(list(model.named_children())))
    stages: dict[str, list[str]] = {}
    for unit in units():
        stages.setdefault(unit.stage, []).append(unit.path)
    return (
        ("output conv", tuple(stages["tail"])),
        ("decoder", tuple(stages["decoder"])),
        ("bottleneck", tuple(stages["bottleneck"])),
        ("encoder", tuple(stages["encoder"] + stages["head"])),
    )


def _new_like(model: nn.Module, seed: int) -> nn.Module:
    """A freshly initialised model of the same architecture (constructor seeded), on the
    model's device. Built from ``type(model)(model.config)`` when the model has a config (much
    faster than ``copy.deepcopy``), else a deep copy with every ``reset_parameters()`` called."""
    import copy

    device = next(iter(model.parameters())).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = getattr(model, "config", None)
        if config is not None:
            try:
                return type(model)(config).to(device)
            except TypeError:
                pass
        fresh = copy.deepcopy(model)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        return fresh


def _copy_of(model: nn.Module) -> nn.Module:
    """An independent copy of ``model`` (weights, buffers, train/eval mode)."""
    copy_ = _new_like(model, seed=0)
    copy_.load_state_dict(model.state_dict())
    return copy_.train(model.training)


def randomized_models(
    model: nn.Module,
    groups: Sequence[tuple[str, Sequence[str]]] | None = None,
    mode: str = "cascading",
    seed: int = 0,
) -> list[tuple[str, nn.Module]]:
    """The models of a weight-randomisation sanity check (Adebayo et al., NeurIPS 2018).

    Returns ``[("trained", model), (label_1, m_1), ...]``. ``mode="cascading"``: ``m_k`` has
    the weights *and buffers* of groups ``1..k`` replaced by those of a freshly initialised
    model of the same architecture (seeded by ``seed``), top group first, so the last model is
    fully random. ``mode="independent"``: ``m_k`` re-initialises group ``k`` only. ``groups``
    are ``(label, module paths)``, top first; default :func:`randomization_groups`. The copies
    live on the model's device; ``model``
    itself is not changed.
    """
    if mode not in ("cascading", "independent"):
        raise ValueError(f"mode must be 'cascading' or 'independent', got {mode!r}")
    groups = randomization_groups(model) if groups is None else groups
    modules = dict(model.named_modules())
    for label, names in groups:
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(f"group {label!r}: the model has no module {missing}")
    fresh = _new_like(model, seed)
    out: list[tuple[str, nn.Module]] = [("trained", model)]
    for k in range(len(groups)):
        chosen = groups[: k + 1] if mode == "cascading" else groups[k : k + 1]
        copy_k = _copy_of(model)
        for _, names in chosen:
            for name in names:
                copy_k.get_submodule(name).load_state_dict(fresh.get_submodule(name).state_dict())
        label = groups[k][0]
        out.append((f"+ {label}" if mode == "cascading" and k > 0 else label, copy_k))
    return out


@dataclass
class SanityCheckResult:
    """Result of :func:`sanity_check` for one image and window.

    Attributes
    ----------
    stages : list of str
        ``"trained"`` then the randomisation steps (``"+ label"`` = cumulative).
    maps : dict
        method -> one ``(H, W)`` map per stage.
    spearman, ssim : dict
        method -> ``numpy.ndarray`` per stage: :func:`rank_correlation` and :func:`map_ssim`
        of the stage's map with the trained model's (1 for stage 0).
    completeness : dict
        ``"lam"`` and ``"ig"`` (those computed) -> per stage, the relative completeness error of
        the path integral at the step count used (:attr:`LAMResult.completeness_error`, and the
        same quantity for integrated gradients).
    gradcam_weight_to_gradient : numpy.ndarray
        Per stage, :attr:`GradCAMResult.weight_to_gradient` (empty without ``"gradcam"``).
    steps : dict
        ``"lam"`` and ``"ig"`` -> per stage, the number of path steps of the map kept (more than
        asked where ``completeness_tolerance`` made :func:`sanity_check` refine it).
    """

    stages: list[str]
    maps: dict[str, list[np.ndarray]]
    spearman: dict[str, np.ndarray]
    ssim: dict[str, np.ndarray]
    completeness: dict[str, np.ndarray]
    gradcam_weight_to_gradient: np.ndarray
    steps: dict[str, np.ndarray] = field(default_factory=dict)


def sanity_check(
    model: nn.Module,
    lr: torch.Tensor,
    window: tuple[int, int, int],
    methods: Sequence[str] = ("lam", "ig", "smoothgrad", "occlusion", "gradcam"),
    groups: Sequence[tuple[str, Sequence[str]]] | None = None,
    mode: str = "cascading",
    seed: int = 0,
    x: torch.Tensor | None = None,
    lam_steps: int = 8,
    lam_rule: str = "midpoint",
    gradcam_layer: str | None = None,
    scale: int = 8,
    batch_size: int = 8,
    completeness_tolerance: float | None = None,
    max_steps: int = 64,
    **captum_kwargs,
) -> SanityCheckResult:
    """Model-parameter randomisation test (Adebayo et al., "Sanity Checks for Saliency Maps",
    NeurIPS 2018) of attribution methods for one output ``window``.

    Each method explains the window objective of the trained model and of the models of
    :func:`randomized_models` (``groups``, ``mode``, ``seed``); each map is compared with the
    trained model's by :func:`rank_correlation` and :func:`map_ssim`. A method whose maps stay
    similar while the weights that produce the output are destroyed does not explain *the
    model*: it fails the check.

    Parameters
    ----------
    model : nn.Module
    lr : tensor ``(1, 3, h, w)`` or ``(3, h, w)``
        The LR image (LAM works on it, through :class:`BicubicUpsample`).
    window : (top, left, size)
    methods : sequence of str
        ``"lam"`` (:func:`lam` in LR space, ``lam_steps`` steps, ``lam_rule``) and the methods
        of :func:`captum_attributions`, which work on the model input ``x``.
    x : tensor, optional
        The model input; default ``BicubicUpsample(scale)(lr)``.
    gradcam_layer : str, optional
        Module path of Grad-CAM's layer, looked up in every randomised copy; default
        :func:`default_gradcam_layer` of the model.
    **captum_kwargs
        Passed to :func:`captum_attributions` (``n_steps``, ``nt_samples``,
        ``occlusion_size``, ...). SmoothGrad's noise is drawn from ``seed`` at every stage, so
        the stages differ by their weights only.
    completeness_tolerance : float, optional
        If given, a LAM or IG map whose relative completeness error exceeds it is computed again
        with twice the steps, until it is within the tolerance or ``max_steps`` would be passed;
        the similarities then compare the refined maps (steps per map in ``result.steps``). A
        map still outside the tolerance is kept, with its error reported.
    max_steps : int, default 64
    """
    lr = lr.detach()
    lr = lr[None] if lr.dim() == 3 else lr
    if x is None:
        with torch.no_grad():
            x = BicubicUpsample(scale)(lr)
    x = x.detach()
    x = x[None] if x.dim() == 3 else x
    models = randomized_models(model, groups=groups, mode=mode, seed=seed)
    stages = [label for label, _ in models]
    maps: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    completeness: dict[str, list[float]] = {m: [] for m in ("lam", "ig") if m in methods}
    weight_ratios: list[float] = []
    captum_methods = tuple(m for m in methods if m not in ("lam", "gradcam"))
    layer = gradcam_layer
    if layer is None and "gradcam" in methods:
        layer = default_gradcam_layer(model)
    steps_used: dict[str, list[int]] = {m: [] for m in completeness}

    def refine(error: float, steps: int) -> bool:
        return (completeness_tolerance is not None and abs(error) > completeness_tolerance
                and steps * 2 <= max_steps)

    for _, stage_model in models:
        if "lam" in methods:
            steps = lam_steps
            result = lam(stage_model, lr, window, steps=steps, rule=lam_rule, scale=scale,
                         batch_size=batch_size)
            while refine(result.completeness_error, steps):
                steps *= 2
                result = lam(stage_model, lr, window, steps=steps, rule=lam_rule, scale=scale,
                             batch_size=batch_size)
            maps["lam"].append(result.map)
            completeness["lam"].append(result.completeness_error)
            steps_used["lam"].append(steps)
        if captum_methods:
            found_completeness: dict = {}
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                found = captum_attributions(stage_model, x, window, methods=captum_methods,
                                            internal_batch_size=batch_size,
                                            completeness=found_completeness, **captum_kwargs)
            if "ig" in found_completeness:
                steps = captum_kwargs.get("n_steps", 50)
                while refine(found_completeness["ig"], steps):
                    steps *= 2
                    found["ig"] = captum_attributions(
                        stage_model, x, window, methods=("ig",), internal_batch_size=batch_size,
                        completeness=found_completeness, **{**captum_kwargs, "n_steps": steps},
                    )["ig"]
                completeness["ig"].append(found_completeness["ig"])
                steps_used["ig"].append(steps)
            for m in captum_methods:
                maps[m].append(found[m])
        if "gradcam" in methods:
            cam = gradcam(stage_model, x, window, layer=layer,
                          objective=captum_kwargs.get("objective", "grad"))
            maps["gradcam"].append(cam.map)
            weight_ratios.append(cam.weight_to_gradient)
    spearman = {m: np.array([rank_correlation(maps[m][0], v) for v in maps[m]]) for m in methods}
    ssim_ = {m: np.array([map_ssim(maps[m][0], v) for v in maps[m]]) for m in methods}
    return SanityCheckResult(stages=stages, maps=maps, spearman=spearman, ssim=ssim_,
                             completeness={m: np.array(v) for m, v in completeness.items()},
                             gradcam_weight_to_gradient=np.array(weight_ratios),
                             steps={m: np.array(v) for m, v in steps_used.items()})


def detail_windows(
    image: torch.Tensor, n: int = 8, size: int = 16, margin: int = 16
) -> list[tuple[int, int, int]]:
    """The ``n`` windows of a ``size``-pixel grid (inside a ``margin``-pixel border) with the
    most detail, i.e. the largest :func:`window_objective` (``"grad"``) of ``image``
    (``(1, C, H, W)`` or ``(C, H, W)``, e.g. the HR face), most detailed first.

    LAM explains windows with structure (edges, texture); choosing them on the HR image keeps
    the choice independent of the model being explained. Windows do not overlap.
    """
    image = image.detach()
    image = image[None] if image.dim() == 3 else image
    h, w = image.shape[-2:]
    candidates = [(top, left, size)
                  for top in range(margin, h - margin - size + 1, size)
                  for left in range(margin, w - margin - size + 1, size)]
    if len(candidates) < n:
        raise ValueError(f"only {len(candidates)} windows fit; asked for {n}")
    scores = [float(window_objective(image, c)[0]) for c in candidates]
    order = np.argsort(scores)[::-1][:n]
    return [candidates[i] for i in order]

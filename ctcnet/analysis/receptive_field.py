"""Receptive fields of CTCNet: theoretical (kernel/stride arithmetic) and effective (gradients).

* :func:`theoretical_receptive_field` runs the model's own forward pass on the meta device and
  propagates the usual receptive-field recurrence (Araujo, Norris & Sim, "Computing receptive
  fields of convolutional neural networks", Distill 2019) through every operator it calls, so
  it follows whatever the model does (another config, an ablation, a new module) with no rule
  per class. It reports the reach of the *local* path; the true receptive field is the whole
  image as soon as one global operator runs (every channel attention's global average pool and
  every MDTA, whose ``C x C`` attention is built from inner products over all pixels), which the
  ``global_context`` column marks.
* :func:`effective_receptive_field` measures the effective receptive field of Luo, Li, Urtasun &
  Zemel ("Understanding the effective receptive field in deep convolutional neural networks",
  NeurIPS 2016): the mean absolute gradient of one output pixel with respect to the input.
* :func:`erf_maps` keeps one such map per input and per output pixel (:class:`ERFMaps`), for the
  spread of the ERF over faces, paired comparisons of models on the same faces
  (:func:`radius_summary`; :func:`ctcnet.stats.difference_verdict` words its intervals) and
  pixels on facial regions (:func:`ctcnet.face_regions.region_pixels`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..model import PRESETS, CTCNet, CTCNetConfig
from ..stats import paired_bootstrap_ci

__all__ = [
    "theoretical_receptive_field",
    "trace_receptive_fields",
    "ReceptiveField",
    "ERFResult",
    "effective_receptive_field",
    "erf_radius",
    "ERFMaps",
    "erf_maps",
    "radius_summary",
]


# --------------------------------------------------------------------------------------------
# Theoretical receptive field: (size, jump) carried through the real forward pass
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceptiveField:
    """Theoretical receptive field of one tensor of a forward pass.

    Attributes
    ----------
    size : side, in input pixels, of the square of input pixels that one position of this
        tensor can depend on through local operators (convolutions, pools, resizes).
    jump : input pixels between neighbouring positions of this tensor (1 / its scale).
    global_context : True once a global operator (a mean, normalisation or product over all
        pixels) lies on some path to this tensor: the true receptive field is then the whole
        image. A global operator does not change ``size``: it is reported by this flag only, so
        that ``size`` keeps measuring how far the local path reaches.
    spatial : the tensor's dimensions that index pixels (``(2, 3)`` for ``N x C x H x W``;
        reshapes and permutations move them, e.g. MDTA's ``N x heads x C/heads x HW`` has
        ``(3,)``). An operator that mixes values along one of them is global.
    """

    size: Fraction
    jump: Fraction
    global_context: bool = False
    spatial: tuple[int, ...] = (2, 3)

    def local(self, taps: int, jump_factor: Fraction, tap_spacing: Fraction | None = None,
              spatial: tuple[int, ...] | None = None) -> ReceptiveField:
        """After an operator whose output position reads ``taps`` input positions per axis,
        ``tap_spacing`` input jumps apart (default 1), and whose jump is ``jump_factor`` times
        the input's: ``size += (taps - 1) * spacing * jump``, ``jump *= jump_factor``."""
        spacing = Fraction(1) if tap_spacing is None else tap_spacing
        return replace(self, size=self.size + (taps - 1) * spacing * self.jump,
                       jump=self.jump * jump_factor,
                       spatial=self.spatial if spatial is None else spatial)

    def globalised(self) -> ReceptiveField:
        return replace(self, global_context=True)


def _merge(fields: Sequence[ReceptiveField], spatial: tuple[int, ...]) -> ReceptiveField:
    """Several inputs combined position by position (sum, product, concatenation): the largest
    reach, the finest jump, global if any input is."""
    return ReceptiveField(max(f.size for f in fields), min(f.jump for f in fields),
                          any(f.global_context for f in fields), spatial)


class ReceptiveFieldError(TypeError):
    """An operator of the forward pass for which no receptive-field rule exists."""


def _arg(args: Sequence, kwargs: dict, index: int, name: str, default=None):
    return args[index] if len(args) > index else kwargs.get(name, default)


def _square(value, what: str) -> int:
    """One int from an int or a per-axis pair; the recurrence here is for square windows."""
    if isinstance(value, (tuple, list, torch.Size)):
        if len(set(value)) != 1:
            raise ReceptiveFieldError(f"{what} {tuple(value)} is not the same on both axes")
        value = value[0]
    return int(value)


def _dim(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


def _image_input(x: torch.Tensor, r: ReceptiveField, name: str) -> None:
    if r.spatial != (x.ndim - 2, x.ndim - 1):
        raise ReceptiveFieldError(f"{name} applied to a tensor whose pixel dims are {r.spatial}")


def _conv(args, kwargs, out, fields):
    x, weight = args[0], args[1]
    r = fields[0][1]
    _image_input(x, r, "conv2d")
    k = _square(weight.shape[-2:], "kernel")
    stride = _square(_arg(args, kwargs, 3, "stride", 1), "stride")
    dilation = _square(_arg(args, kwargs, 5, "dilation", 1), "dilation")
    return r.local(k, Fraction(stride), tap_spacing=Fraction(dilation))


def _conv_transpose(args, kwargs, out, fields):
    x, weight = args[0], args[1]
    r = fields[0][1]
    _image_input(x, r, "conv_transpose2d")
    k = _square(weight.shape[-2:], "kernel")
    stride = _square(_arg(args, kwargs, 3, "stride", 1), "stride")
    if _square(_arg(args, kwargs, 7, "dilation", 1), "dilation") != 1:
        raise ReceptiveFieldError("dilated transposed convolutions are not supported")
    # each output of a k x k stride-s transposed conv receives ceil(k / s) inputs per axis
    return r.local(math.ceil(k / stride), Fraction(1, stride))


def _pool(args, kwargs, out, fields):
    x, r = args[0], fields[0][1]
    _image_input(x, r, "pooling")
    k = _square(_arg(args, kwargs, 1, "kernel_size"), "kernel")
    stride = _arg(args, kwargs, 2, "stride", None)
    stride = k if stride is None or stride == [] or stride == () else _square(stride, "stride")
    dilation = _square(kwargs.get("dilation", 1), "dilation")
    return r.local(k, Fraction(stride), tap_spacing=Fraction(dilation))


def _adaptive_pool(args, kwargs, out, fields):
    x, r = args[0], fields[0][1]
    _image_input(x, r, "adaptive pooling")
    if tuple(out.shape[-2:]) == tuple(x.shape[-2:]):
        return r
    if all(s == 1 for s in out.shape[-2:]):
        return r.globalised()  # one value per channel from all pixels (channel attention)
    raise ReceptiveFieldError("adaptive pooling to a size other than 1 or the input size")


_RESIZE_TAPS = {"nearest": 1, "nearest-exact": 1, "linear": 2, "bilinear": 2, "bicubic": 4}


def _interpolate(args, kwargs, out, fields):
    x, r = args[0], fields[0][1]
    _image_input(x, r, "interpolate")
    mode = _arg(args, kwargs, 3, "mode", "nearest")
    if mode not in _RESIZE_TAPS:
        raise ReceptiveFieldError(f"interpolate mode {mode!r} is not supported")
    ratios = {Fraction(int(i), int(o)) for i, o in zip(x.shape[-2:], out.shape[-2:])}
    if len(ratios) != 1:
        raise ReceptiveFieldError("interpolate with different factors on the two axes")
    return r.local(_RESIZE_TAPS[mode], ratios.pop())


def _pixel_shuffle(args, kwargs, out, fields):
    r = fields[0][1]
    _image_input(args[0], r, "pixel_shuffle")
    return r.local(1, Fraction(1, int(_arg(args, kwargs, 1, "upscale_factor"))))


def _pixel_unshuffle(args, kwargs, out, fields):
    r = fields[0][1]
    _image_input(args[0], r, "pixel_unshuffle")
    factor = int(_arg(args, kwargs, 1, "downscale_factor"))
    return r.local(factor, Fraction(factor))


def _aligned(out: torch.Tensor, fields) -> tuple[int, ...]:
    """Pixel dims of an element-wise result: broadcasting aligns dims from the right."""
    dims = set()
    for t, r in fields:
        dims.update(d + out.ndim - t.ndim for d in r.spatial)
    return tuple(sorted(dims))


def _elementwise(args, kwargs, out, fields):
    return _merge([r for _, r in fields], _aligned(out, fields))


def _batch_norm(args, kwargs, out, fields):
    r = _elementwise(args, kwargs, out, fields)
    # batch statistics (training mode) are means over all pixels of the batch
    return r.globalised() if _arg(args, kwargs, 5, "training", False) else r


def _global_norm(args, kwargs, out, fields):
    return _elementwise(args, kwargs, out, fields).globalised()  # instance / group norm


def _mixing(dims: Iterable[int], fields, out, args, kwargs, keep: bool = True):
    r = _elementwise(args, kwargs, out, fields)
    dims = {_dim(d, args[0].ndim) for d in dims}
    if dims & set(fields[0][1].spatial):
        r = r.globalised()
    if not keep:  # reduced dims disappear: shift the pixel dims after them
        r = replace(r, spatial=tuple(d - sum(e < d for e in dims) for d in r.spatial
                                     if d not in dims))
    return r


def _softmax(args, kwargs, out, fields):
    return _mixing([_arg(args, kwargs, 1, "dim")], fields, out, args, kwargs)


def _normalize(args, kwargs, out, fields):
    return _mixing([_arg(args, kwargs, 2, "dim", 1)], fields, out, args, kwargs)


def _layer_norm(args, kwargs, out, fields):
    shape = _arg(args, kwargs, 1, "normalized_shape")
    count = 1 if isinstance(shape, int) else len(shape)
    ndim = args[0].ndim
    return _mixing(range(ndim - count, ndim), fields, out, args, kwargs)


def _reduction(args, kwargs, out, fields):
    dim = _arg(args, kwargs, 1, "dim", None)
    ndim = args[0].ndim
    dims = range(ndim) if dim is None else ([dim] if isinstance(dim, int) else list(dim))
    keep = bool(_arg(args, kwargs, 2, "keepdim", False))
    return _mixing(dims, fields, out, args, kwargs, keep=keep)


def _cat(args, kwargs, out, fields):
    return _merge([r for _, r in fields], _aligned(out, fields))


def _stack(args, kwargs, out, fields):
    dim = _dim(_arg(args, kwargs, 1, "dim", 0), out.ndim)
    spatial = tuple(sorted({d + (d >= dim) for _, r in fields for d in r.spatial}))
    return _merge([r for _, r in fields], spatial)


def _split(args, kwargs, out, fields):
    return [fields[0][1]] * len(out)  # chunk / split: every piece keeps the input's field


def _regroup(source: Sequence[int], target: Sequence[int], spatial: Iterable[int]):
    """Pixel dims after a reshape from ``source`` to ``target``: the target dims that share a
    group of equal products with a source pixel dim (``N, C, H, W -> N, h, C/h, HW`` maps
    ``H, W`` to ``HW``)."""
    spatial, result = set(spatial), set()
    i = j = 0
    while i < len(source) and j < len(target):
        group_in, group_out = [i], [j]
        size_in, size_out = source[i], target[j]
        i, j = i + 1, j + 1
        while size_in != size_out:
            if size_in < size_out and i < len(source):
                group_in.append(i)
                size_in, i = size_in * source[i], i + 1
            elif size_out < size_in and j < len(target):
                group_out.append(j)
                size_out, j = size_out * target[j], j + 1
            else:
                raise ReceptiveFieldError(f"cannot follow a reshape {tuple(source)} -> "
                                          f"{tuple(target)}")
        if spatial & set(group_in):
            result.update(group_out)
    return tuple(sorted(result))


def _reshape(args, kwargs, out, fields):
    x, r = args[0], fields[0][1]
    return replace(r, spatial=_regroup(x.shape, out.shape, r.spatial))


def _permute(args, kwargs, out, fields):
    x, r = args[0], fields[0][1]
    order = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else args[1:]
    order = [_dim(d, x.ndim) for d in (order or kwargs["dims"])]
    return replace(r, spatial=tuple(k for k, d in enumerate(order) if d in r.spatial))


def _transpose(args, kwargs, out, fields):
    x, r = args[0], fields[0][1]
    a, b = (_dim(d, x.ndim) for d in (args[1], args[2]))
    swap = {a: b, b: a}
    return replace(r, spatial=tuple(sorted(swap.get(d, d) for d in r.spatial)))


def _matmul(args, kwargs, out, fields, swapped: bool = False):
    a, b = (args[1], args[0]) if swapped else (args[0], args[1])
    if a.ndim < 2 or b.ndim < 2:
        raise ReceptiveFieldError("matmul of vectors is not supported")
    by_id = {id(t): r for t, r in fields}
    spatial, global_context = set(), False
    # a: (..., m, k) @ b: (..., k, n) -> (..., m, n); summing over a pixel dim is global
    for t, contracted, kept in ((a, a.ndim - 1, a.ndim - 2), (b, b.ndim - 2, b.ndim - 1)):
        r = by_id.get(id(t))
        if r is None:
            continue
        global_context |= contracted in r.spatial
        for d in r.spatial:
            if d == kept:
                spatial.add(out.ndim - (t.ndim - d))
            elif d < t.ndim - 2:
                spatial.add(d + out.ndim - t.ndim)
    r = _merge([r for _, r in fields], tuple(sorted(spatial)))
    return r.globalised() if global_context else r


_PASS_THROUGH = {
    "pad", "relu", "relu_", "prelu", "leaky_relu", "leaky_relu_", "sigmoid", "tanh", "gelu",
    "silu", "elu", "selu", "softplus", "hardtanh", "hardswish", "hardsigmoid", "mish", "dropout",
    "dropout2d", "neg", "__neg__", "abs", "exp", "log", "sqrt", "rsqrt", "square", "clamp",
    "clip", "clone", "contiguous", "to", "float", "double", "half", "bfloat16", "type_as",
    "detach", "requires_grad_", "__get__",
}
_ELEMENTWISE = {
    "add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__", "__rsub__",
    "__isub__", "mul", "mul_", "__mul__", "__rmul__", "__imul__", "div", "div_", "__truediv__",
    "__rtruediv__", "__itruediv__", "pow", "__pow__", "maximum", "minimum", "where", "lerp",
    "addcmul",
}
_RULES: dict[str, Callable] = {
    "conv2d": _conv,
    "conv_transpose2d": _conv_transpose,
    "avg_pool2d": _pool,
    "max_pool2d": _pool,
    "_max_pool2d": _pool,
    "adaptive_avg_pool2d": _adaptive_pool,
    "adaptive_max_pool2d": _adaptive_pool,
    "_adaptive_max_pool2d": _adaptive_pool,
    "interpolate": _interpolate,
    "pixel_shuffle": _pixel_shuffle,
    "pixel_unshuffle": _pixel_unshuffle,
    "batch_norm": _batch_norm,
    "instance_norm": _global_norm,
    "group_norm": _global_norm,
    "layer_norm": _layer_norm,
    "softmax": _softmax,
    "log_softmax": _softmax,
    "normalize": _normalize,
    "sum": _reduction,
    "mean": _reduction,
    "amax": _reduction,
    "amin": _reduction,
    "var": _reduction,
    "std": _reduction,
    "logsumexp": _reduction,
    "cat": _cat,
    "concat": _cat,
    "concatenate": _cat,
    "stack": _stack,
    "chunk": _split,
    "split": _split,
    "tensor_split": _split,
    "reshape": _reshape,
    "view": _reshape,
    "flatten": _reshape,
    "unflatten": _reshape,
    "squeeze": _reshape,
    "unsqueeze": _reshape,
    "permute": _permute,
    "transpose": _transpose,
    "swapaxes": _transpose,
    "matmul": _matmul,
    "__matmul__": _matmul,
    "bmm": _matmul,
    "__rmatmul__": lambda *a: _matmul(*a, swapped=True),
}
_RULES.update({name: (lambda args, kwargs, out, fields: fields[0][1]) for name in _PASS_THROUGH})
_RULES.update({name: _elementwise for name in _ELEMENTWISE})


def tensors_in(value) -> list[torch.Tensor]:
    """The tensors in ``value`` (a tensor, or lists / tuples / dicts of them), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors_in(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_in(v)]
    return []


class _ReceptiveFieldMode(TorchFunctionMode):
    """Carries a :class:`ReceptiveField` alongside every tensor of a forward pass.

    The fields live in a side table keyed by ``id(tensor)``; the table also holds the tensor
    itself, so that an id cannot be reused by another tensor while the pass runs (on the meta
    device this costs no memory). Tensors that do not derive from the input (parameters,
    constants) have no field and do not affect the result. An operator that receives a tensor
    with a field and has no rule raises :class:`ReceptiveFieldError`, so a new operator in the
    model cannot be skipped silently.
    """

    def __init__(self) -> None:
        super().__init__()
        self.table: dict[int, tuple[torch.Tensor, ReceptiveField]] = {}

    def field(self, t: torch.Tensor) -> ReceptiveField | None:
        entry = self.table.get(id(t))
        return entry[1] if entry is not None and entry[0] is t else None

    def set_field(self, t: torch.Tensor, r: ReceptiveField) -> None:
        self.table[id(t)] = (t, r)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outputs = tensors_in(out)
        if not outputs:
            return out
        fields = [(t, r) for t in tensors_in((args, kwargs)) if (r := self.field(t)) is not None]
        if not fields:
            return out
        name = getattr(func, "__name__", repr(func))
        rule = _RULES.get(name)
        if rule is None:
            raise ReceptiveFieldError(f"no receptive-field rule for the operator {name!r}")
        result = rule(args, kwargs, out, fields)
        results = result if isinstance(result, list) else [result] * len(outputs)
        for t, r in zip(outputs, results):
            self.set_field(t, r)
        return out


def trace_receptive_fields(
    module: nn.Module, x: torch.Tensor, watch: Iterable[tuple[str, nn.Module]] = ()
) -> tuple[dict[str, ReceptiveField], ReceptiveField]:
    """Run ``module(x)`` and propagate receptive fields through every operator it calls.

    ``x`` (``N x C x H x W``; use the meta device to skip the arithmetic) starts with
    ``size = jump = 1``. Rules, per axis (square windows only):

    * convolution (kernel ``k``, stride ``s``, dilation ``d``) and pooling:
      ``size += (k - 1) d jump``, ``jump *= s`` (zero padding and strided-grid alignment are
      ignored, so ``size`` is an upper bound);
    * transposed convolution: each output receives ``ceil(k / s)`` inputs, ``jump /= s``;
    * resize (``F.interpolate``): nearest 1 tap, bilinear 2, bicubic 4, ``jump`` scaled by
      input size / output size; ``pixel_shuffle`` / ``pixel_unshuffle`` likewise;
    * element-wise operators and concatenation: the largest ``size`` over the inputs;
    * reshapes and permutations move the pixel dims (:attr:`ReceptiveField.spatial`);
    * an operator that mixes values along a pixel dim -- adaptive pooling to one value, a
      softmax / normalisation / reduction over pixels, a matrix product that sums over pixels
      (MDTA's ``q k^T``), batch statistics -- marks the result ``global_context`` and leaves
      ``size`` as it was (see :class:`ReceptiveField`).

    Returns
    -------
    (dict, ReceptiveField)
        The field of the output of every ``(name, module)`` in ``watch`` (its last call, for a
        module called several times; modules never called are absent) and of ``module(x)``.
    """
    mode = _ReceptiveFieldMode()
    seen: dict[str, ReceptiveField] = {}

    def recorder(name: str) -> Callable:
        def hook(_module, _inputs, output) -> None:
            r = mode.field(output) if isinstance(output, torch.Tensor) else None
            if r is not None:
                seen[name] = r

        return hook

    handles = [m.register_forward_hook(recorder(name)) for name, m in watch]
    mode.set_field(x, ReceptiveField(Fraction(1), Fraction(1), False, (x.ndim - 2, x.ndim - 1)))
    try:
        with torch.no_grad(), mode:
            out = module(x)
    finally:
        for h in handles:
            h.remove()
    final = mode.field(out)
    if final is None:
        raise ReceptiveFieldError("the output does not depend on the input")
    return seen, final


def _meta_model(model_or_config: CTCNet | CTCNetConfig | str) -> nn.Module:
    if isinstance(model_or_config, str):
        if model_or_config not in PRESETS:
            raise ValueError(f"unknown preset {model_or_config!r}; choose one of {sorted(PRESETS)}")
        model_or_config = PRESETS[model_or_config]
    if isinstance(model_or_config, CTCNetConfig):
        with torch.device("meta"):
            return CTCNet(model_or_config).eval()
    if not hasattr(model_or_config, "units"):
        raise TypeError(f"expected a CTCNet, a CTCNetConfig or a preset name, got "
                        f"{type(model_or_config).__name__}")
    return copy.deepcopy(model_or_config).to("meta").eval()


def theoretical_receptive_field(
    model_or_config: CTCNet | CTCNetConfig | str, size: int | None = None
) -> pd.DataFrame:
    """Theoretical receptive field at the output of every unit of :meth:`CTCNet.units`.

    The model's own forward pass runs on the meta device under :func:`trace_receptive_fields`,
    which applies the recurrence ``r_out = r_in + (k - 1) j_in``, ``j_out = j_in s``
    (Araujo et al., Distill 2019) to every convolution, transposed convolution, pool and resize
    it calls, and takes the maximum over the branches that are added or concatenated (residual
    skips, hourglass levels, MFFU inputs). Nothing here knows CTCNet's classes: a config with
    other depths, an ablation or a new module is followed as it runs.

    Global operators are reported, not counted: every channel attention (global average pool)
    and every MDTA (a ``C x C`` attention from inner products over all pixels) makes each
    output depend on every input pixel, so the **true receptive field is the whole image**
    from the first local block on; the column ``global_context`` marks where that has happened,
    and ``rf`` stays the reach of the *local* path (an upper bound: padding and the alignment
    of strided grids are ignored).

    Parameters
    ----------
    model_or_config : CTCNet, CTCNetConfig or preset name
    size : int, optional
        Side of the traced input. Default: the smallest power of two that the model accepts,
        so that every stride-2 step and resize is exact; the result does not depend on it then.

    Returns
    -------
    pandas.DataFrame
        One row per unit whose forward runs, in forward order (``head``, ``encoder.0``,
        ``downsample.0``, ..., ``bottleneck.0``, ..., ``upsample.0``, ``fusion.0``,
        ``decoder.0``, ..., ``tail``), with ``unit`` (module path), ``module`` (paper name),
        ``stage``, ``scale`` (feature-map resolution relative to the input, e.g. 0.125, from
        the traced jump), ``jump`` (input pixels per feature pixel), ``rf`` (side of the square
        theoretical receptive field in input pixels) and ``global_context``.
    """
    model = _meta_model(model_or_config)
    if size is None:
        size = 1 << max(3, (model.min_input_size - 1).bit_length())
    x = torch.zeros(1, model.config.in_channels, size, size, device="meta")
    units = model.units()
    fields, _ = trace_receptive_fields(model, x, [(u.path, u.module) for u in units])
    rows = [
        {"unit": u.path, "module": u.paper_name, "stage": u.stage,
         "scale": float(1 / fields[u.path].jump), "jump": float(fields[u.path].jump),
         "rf": float(fields[u.path].size), "global_context": fields[u.path].global_context}
        for u in units
        if u.path in fields
    ]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Effective receptive field
# --------------------------------------------------------------------------------------------


@dataclass
class ERFResult:
    """Effective receptive field of one output pixel.

    Attributes
    ----------
    map : numpy.ndarray
        ``(H, W)`` mean over inputs of ``|d y_p / d x|`` summed over input channels, normalised to
        sum 1 (``y_p`` = output pixel ``p`` summed over output channels).
    pixel : (int, int)
        The output pixel ``p`` (row, column).
    radii : dict
        ``{0.5: r50, 0.9: r90, 0.99: r99, 1.0: support radius}``: the smallest Chebyshev radius
        (half side of a square centred at ``pixel``) holding that fraction of the mass.
    nonzero_fraction : float
        Fraction of input pixels with a non-zero mean gradient.
    n_inputs : int
    residual : bool
        Whether the gradient is of the residual branch ``output - input``.
    """

    map: np.ndarray
    pixel: tuple[int, int]
    radii: dict[float, float]
    nonzero_fraction: float
    n_inputs: int
    residual: bool


def erf_radius(
    erf_map: np.ndarray, fraction: float, center: tuple[int, int] | None = None,
    metric: str = "chebyshev",
) -> float:
    """Smallest radius around ``center`` whose disc holds ``fraction`` of the map's mass.

    Parameters
    ----------
    erf_map : array (H, W)
        Non-negative map (e.g. :attr:`ERFResult.map`).
    fraction : float in (0, 1]
        ``1.0`` gives the support radius: the largest distance of a non-zero pixel.
    center : (row, col), optional
        Default: the map centre ``(H // 2, W // 2)``.
    metric : {"chebyshev", "euclidean"}
        ``"chebyshev"``: ``max(|dy|, |dx|)``, the disc is a ``(2r+1) x (2r+1)`` square (natural
        for convolution kernels: three 3x3 convs give radius 3); ``"euclidean"``:
        ``sqrt(dy^2 + dx^2)``.

    Returns
    -------
    float
    """
    m = np.abs(np.asarray(erf_map, dtype=np.float64))
    if m.ndim != 2:
        raise ValueError(f"erf_map must be 2-D, got shape {m.shape}")
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    h, w = m.shape
    cy, cx = center if center is not None else (h // 2, w // 2)
    yy, xx = np.mgrid[0:h, 0:w]
    dy, dx = np.abs(yy - cy), np.abs(xx - cx)
    if metric == "chebyshev":
        dist = np.maximum(dy, dx).astype(np.float64)
    elif metric == "euclidean":
        dist = np.sqrt(dy**2 + dx**2)
    else:
        raise ValueError(f"metric must be 'chebyshev' or 'euclidean', got {metric!r}")
    total = m.sum()
    if total == 0:
        return 0.0
    if fraction >= 1:
        return float(dist[m > 0].max())
    order = np.argsort(dist, axis=None, kind="stable")
    d_sorted, cum = dist.ravel()[order], np.cumsum(m.ravel()[order])
    index = int(np.searchsorted(cum, fraction * total * (1 - 1e-12)))
    return float(d_sorted[min(index, d_sorted.size - 1)])


def effective_receptive_field(
    model: nn.Module,
    n_inputs: int = 16,
    size: int = 128,
    residual: bool = True,
    pixel: tuple[int, int] | None = None,
    generator: torch.Generator | None = None,
    inputs: torch.Tensor | None = None,
    batch_size: int | None = None,
    channels: int | None = None,
) -> ERFResult:
    """Effective receptive field (Luo et al., NeurIPS 2016) of one output pixel.

    For every input ``x`` the output pixel ``p`` summed over output channels,
    ``y_p = sum_c f(x)[c, p]``, is back-propagated to the input; the map is
    ``mean_x sum_c' |d y_p / d x[c', :, :]|``, normalised to sum 1.

    With ``residual=True`` (default) ``f(x) = model(x) - x``: CTCNet ends with a global skip
    ``output = input + body(input)``, whose identity term would put a spike at ``p`` and hide
    the body's ERF.

    The model is put in eval mode for the measurement (BatchNorm in training mode would couple
    the samples of a batch) and restored afterwards. Samples are independent in eval mode, so
    one backward pass of ``sum_n y_p(x_n)`` gives every ``d y_p(x_n) / d x_n`` at once; inputs are
    processed in batches of ``batch_size`` (default: all at once).

    Parameters
    ----------
    model : nn.Module
        Maps ``(N, C, H, W)`` to ``(N, C', H, W)``.
    n_inputs : int
        Number of random inputs, uniform in ``[-1, 1]`` (ignored when ``inputs`` is given).
    size : int
        Input side (ignored when ``inputs`` is given).
    residual : bool
    pixel : (row, col), optional
        Output pixel, default the centre ``(size // 2, size // 2)``.
    generator : torch.Generator, optional
        For reproducible random inputs.
    inputs : tensor (N, C, H, W), optional
        E.g. face images in ``[-1, 1]`` instead of noise.
    batch_size : int, optional
    channels : int, optional
        Input channels for random inputs; default ``model.config.in_channels`` or 3.

    Returns
    -------
    ERFResult
        Radii are Chebyshev radii around ``pixel`` (see :func:`erf_radius`).
    """
    device = next(model.parameters()).device if any(True for _ in model.parameters()) else "cpu"
    if inputs is None:
        if channels is None:
            channels = getattr(getattr(model, "config", None), "in_channels", 3)
        inputs = torch.rand(n_inputs, channels, size, size, generator=generator) * 2 - 1
    inputs = inputs.to(device=device, dtype=torch.float32)
    n, _, h, w = inputs.shape
    py, px = pixel if pixel is not None else (h // 2, w // 2)
    batch_size = batch_size or n
    was_training = model.training
    model.eval()
    total = torch.zeros(h, w, dtype=torch.float64)
    try:
        for start in range(0, n, batch_size):
            x = inputs[start : start + batch_size].clone().requires_grad_(True)
            out = model(x)
            if residual:
                if out.shape != x.shape:
                    raise ValueError("residual=True needs output and input of the same shape")
                out = out - x
            (grad,) = torch.autograd.grad(out[:, :, py, px].sum(), x)
            total += grad.abs().sum(dim=1).sum(dim=0).double().cpu()
    finally:
        model.train(was_training)
    mean = (total / n).numpy()
    nonzero = float((mean > 0).mean())
    normalised = mean / mean.sum() if mean.sum() > 0 else mean
    radii = {f: erf_radius(normalised, f, (py, px)) for f in (0.5, 0.9, 0.99, 1.0)}
    return ERFResult(normalised, (py, px), radii, nonzero, n, residual)


# --------------------------------------------------------------------------------------------
# Effective receptive fields per input: spread over faces, several output pixels, regions
# --------------------------------------------------------------------------------------------


@dataclass
class ERFMaps:
    """Effective receptive fields of one or more output pixels, kept input by input.

    Luo et al. define the ERF as a mean over inputs; keeping one map per input gives its spread
    (how much the reach changes from one face to the next) and lets two models be compared on
    the same faces, pair by pair.

    Attributes
    ----------
    maps : numpy.ndarray
        ``(P, N, H, W)`` float64: for output pixel ``p`` and input ``x_n``, ``sum_c' |d y_p / d
        x_n[c', :, :]|`` with ``y_p`` the output pixel summed over output channels. Not
        normalised: the mean over ``N`` is Luo et al.'s ERF up to a constant.
    pixels : numpy.ndarray
        ``(P, N, 2)`` int: the output pixel ``(row, col)`` of every map.
    residual : bool
        Whether the gradient is of the residual branch ``output - input``.
    """

    maps: np.ndarray
    pixels: np.ndarray
    residual: bool

    def radii(self, fraction: float, window: int | None = None) -> np.ndarray:
        """Chebyshev radius holding ``fraction`` of each map's mass, shape ``(P, N)``.

        ``window``: count only the mass inside the ``(2 window + 1)``-pixel square centred on
        the map's pixel (the square must lie inside the image). Pixels at different places then
        have their reach measured on the same support; without it, a pixel near a border loses
        the part of its field beyond the border, which can only make its radii smaller.
        """
        p, n, h, w = self.maps.shape
        out = np.empty((p, n))
        for i in range(p):
            for j in range(n):
                m = self.maps[i, j]
                cy, cx = (int(v) for v in self.pixels[i, j])
                if window is not None:
                    if not (window <= cy < h - window and window <= cx < w - window):
                        raise ValueError(f"the window of radius {window} around pixel "
                                         f"{(cy, cx)} leaves the {h}x{w} image")
                    m = m[cy - window: cy + window + 1, cx - window: cx + window + 1]
                    cy = cx = window
                out[i, j] = erf_radius(m, fraction, (cy, cx))
        return out

    def mean_result(self, index: int = 0) -> ERFResult:
        """Luo et al.'s ERF of output pixel ``index``: the mean map over the inputs, normalised
        to sum 1, as :func:`effective_receptive_field` returns it. The pixel must be the same for
        every input."""
        pix = np.asarray(self.pixels[index])
        if not (pix == pix[0]).all():
            raise ValueError("the inputs' maps are centred on different pixels: no common mean")
        py, px = (int(v) for v in pix[0])
        mean = self.maps[index].mean(axis=0)
        total = mean.sum()
        normalised = mean / total if total > 0 else mean
        radii = {f: erf_radius(normalised, f, (py, px)) for f in (0.5, 0.9, 0.99, 1.0)}
        return ERFResult(normalised, (py, px), radii, float((mean > 0).mean()),
                         self.maps.shape[1], self.residual)


def _pixel_array(pixels, n: int, h: int, w: int) -> np.ndarray:
    """``(P, N, 2)`` ints from None (the centre), one ``(row, col)``, ``P`` of them shared by every
    input, or a ``(P, N, 2)`` array of one pixel per input."""
    if pixels is None:
        pixels = [(h // 2, w // 2)]
    arr = np.asarray(pixels)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim == 2:
        arr = np.broadcast_to(arr[:, None, :], (arr.shape[0], n, arr.shape[-1]))
    if arr.ndim != 3 or arr.shape[1:] != (n, 2):
        raise ValueError(f"pixels must be (row, col), (P, 2) or (P, {n}, 2), got shape "
                         f"{np.asarray(pixels).shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.allclose(arr, np.round(arr)):
            raise ValueError("pixels must be integer (row, col) positions")
    arr = np.round(arr).astype(np.int64)
    if (arr[..., 0] < 0).any() or (arr[..., 0] >= h).any() or (arr[..., 1] < 0).any() or (
            arr[..., 1] >= w).any():
        raise ValueError(f"a pixel lies outside the {h}x{w} output")
    return arr


def erf_maps(
    model: nn.Module,
    inputs: torch.Tensor,
    pixels=None,
    residual: bool = True,
    batch_size: int = 4,
) -> ERFMaps:
    """Per-input effective receptive fields of one or more output pixels (Luo et al., 2016).

    For every input ``x_n`` and every output pixel ``p``, ``y_p = sum_c f(x_n)[c, p]`` is
    back-propagated to ``x_n`` and ``sum_c' |d y_p / d x_n|`` is kept, without averaging over the
    inputs (:func:`effective_receptive_field` keeps only the mean). One forward pass per batch
    serves all the pixels: each further pixel costs one backward pass. Gradients of the
    parameters are not needed and are switched off for the measurement; the model's
    ``requires_grad`` flags and train/eval mode are restored afterwards.

    Parameters
    ----------
    model : nn.Module
        Maps ``(N, C, H, W)`` to ``(N, C', H, W)``; measured in eval mode.
    inputs : tensor (N, C, H, W)
        E.g. the bicubic-upsampled LR faces the model reads, in ``[-1, 1]``.
    pixels : optional
        ``None`` (the centre), one ``(row, col)``, a ``(P, 2)`` list shared by every input, or a
        ``(P, N, 2)`` array with one pixel per input (e.g. a landmark of each face, see
        :func:`ctcnet.face_regions.region_pixels`).
    residual : bool, default True
        Measure ``f(x) = model(x) - x``: CTCNet's global skip would otherwise put a spike at ``p``.
    batch_size : int, default 4

    Returns
    -------
    ERFMaps
    """
    device = next(iter(model.parameters()), torch.empty(0)).device
    inputs = inputs.detach().to(device=device, dtype=torch.float32)
    n, _, h, w = inputs.shape
    pix = _pixel_array(pixels, n, h, w)
    maps = np.zeros((pix.shape[0], n, h, w))
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            x = inputs[start:stop].clone().requires_grad_(True)
            out = model(x)
            if residual:
                if out.shape != x.shape:
                    raise ValueError("residual=True needs output and input of the same shape")
                out = out - x
            rows = torch.arange(stop - start, device=device)
            for k in range(pix.shape[0]):
                py = torch.as_tensor(pix[k, start:stop, 0], device=device)
                px = torch.as_tensor(pix[k, start:stop, 1], device=device)
                target = out[rows, :, py, px].sum()  # (batch, C) -> one scalar; samples independent
                (grad,) = torch.autograd.grad(target, x, retain_graph=k < pix.shape[0] - 1)
                maps[k, start:stop] = grad.abs().sum(dim=1).double().cpu().numpy()
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)
    return ERFMaps(maps, pix, residual)


def radius_summary(radii: dict[str, Sequence[float]], ci: float = 0.95, n_boot: int = 10_000,
                   seed: int = 0) -> pd.DataFrame:
    """Mean, standard deviation and bootstrap interval of per-input radii, one row per entry.

    Parameters
    ----------
    radii : dict
        ``{name: per-input radii}`` (e.g. a row of :meth:`ERFMaps.radii`).
    ci, n_boot, seed
        As in :func:`ctcnet.stats.paired_bootstrap_ci` (a percentile bootstrap of the mean
        over inputs; with fewer than about 20 inputs it is somewhat too narrow).

    Returns
    -------
    pandas.DataFrame
        Columns ``name``, ``n``, ``mean``, ``sd`` (over inputs, ``ddof=1``), ``low``, ``high``.
    """
    rows = []
    for name, values in radii.items():
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 1 or v.size < 2:
            raise ValueError(f"{name!r}: need a 1-D sequence of at least two radii")
        mean, low, high = paired_bootstrap_ci(v, np.zeros_like(v), n_boot=n_boot, ci=ci, seed=seed)
        rows.append({"name": name, "n": int(v.size), "mean": mean, "sd": float(v.std(ddof=1)),
                     "low": low, "high": high})
    return pd.DataFrame(rows)

"""Cost of CTCNet: parameters, FLOPs under three counting conventions, scaling and timing.

Why three conventions? Papers quote "FLOPs" computed by different tools, and on CTCNet the tools
disagree by 1.6x (``benchmarks/flop_counters.md`` runs all of them):

* :func:`count_flops` is the ground truth used in this project: PyTorch's
  :class:`torch.utils.flop_counter.FlopCounterMode` intercepts every ATen operator and counts
  **FLOPs = 2 x multiply-accumulates (MACs)** for convolutions (transposed ones included) and
  matrix products. Element-wise work (activations, normalisation, softmax) counts 0.
  Official CTCNet at ``1x3x128x128``: 59,950,977,280 FLOPs = 29.98 GMAC.
* :func:`fvcore_style_macs` re-implements the convention of fvcore 0.1.5's
  ``FlopCountAnalysis`` (Meta Research): **MACs** (fvcore calls them "flops") for convolutions
  and matrix products, plus small rules for BatchNorm, adaptive average pooling and
  up-sampling. 30.01 G.
* :func:`thop_style_flops` re-implements the convention of THOP 0.1.1 (``thop``, L. Zhu,
  "pytorch-OpCounter"): forward hooks on ``nn.Module`` types only. It misses everything done
  functionally (``q @ k^T``, ``F.interpolate``, the custom LayerNorm) but counts a
  ``ConvTranspose2d`` on its *output* grid, which is ``stride^2 = 4x`` too much. 47.23 G MAC,
  close to the ~47 G quoted in the CTCNet paper (Gao et al., IEEE TIP 2023).

Both re-implementations are written from the documented rules of those tools, not copied; the
versions whose conventions they follow are :data:`FVCORE_CONVENTION` and :data:`THOP_CONVENTION`.
The script ``benchmarks/flop_counters.py`` compares them with the real packages on the official
model, and a development test (``tests/test_analysis.py``, skipped when the packages are absent)
on ``tiny``, to catch drift of either side.

Every table here is grouped by :meth:`ctcnet.model.CTCNet.units`, the model's own list of the
boxes of the paper's Fig. 2: whatever lies outside every unit is reported as ``other``, never
dropped.

Cost also depends on the input size: :func:`scaling_table` counts FLOPs per size (and optionally
measures latency and memory), and :func:`mdta_flops` / :func:`spatial_attention_flops` give the
closed forms behind the "transposed attention is linear in the number of pixels" argument of
Restormer (Zamir et al., CVPR 2022), whose MDTA CTCNet uses.
"""

from __future__ import annotations

import copy
import os
import resource
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "FVCORE_CONVENTION",
    "THOP_CONVENTION",
    "paper_group",
    "count_params",
    "count_flops",
    "flops_by_module",
    "ConventionCount",
    "thop_style_flops",
    "fvcore_style_macs",
    "compare_conventions",
    "conv_macs",
    "conv_transpose_macs",
    "mdta_flops",
    "spatial_attention_flops",
    "scaling_table",
    "profile_modules",
]

#: fvcore release whose ``FlopCountAnalysis`` handles :func:`fvcore_style_macs` follows.
FVCORE_CONVENTION = "fvcore 0.1.5"
#: THOP release whose ``thop.profile`` rules :func:`thop_style_flops` follows.
THOP_CONVENTION = "thop 0.1.1"

#: Row label for whatever lies outside every unit of ``model.units()``.
OTHER = "other"
#: Module classes that only hold others: no row of their own in the per-type tables.
_CONTAINERS = (nn.ModuleList, nn.Sequential, nn.Identity)


# --------------------------------------------------------------------------------------------
# Grouping by the model's own units
# --------------------------------------------------------------------------------------------


def _units(model: nn.Module, parts: bool) -> list:
    """``model.units(parts=...)`` for a CTCNet; no units for any other model (everything is
    then grouped under ``other`` by its first path component)."""
    units = getattr(model, "units", None)
    return list(units(parts=parts)) if callable(units) else []


def _owner(path: str, units_by_path: dict) -> object | None:
    """The unit whose path is ``path`` or a prefix of it (units are disjoint), else None."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        unit = units_by_path.get(".".join(parts[:end]))
        if unit is not None:
            return unit
    return None


def paper_group(unit) -> tuple[str, str]:
    """``(module, part)`` row label of one :class:`ctcnet.model.PaperUnit` in the cost tables:
    ``(paper_name, part)``, e.g. ``("LGCM", "FSAU")``, ``("MFFU", "resamplers")``,
    ``("Downsampling", "")``; the head and tail convolutions share the row group
    ``("head+tail", "head")`` / ``("head+tail", "tail")``: they are the units that are a bare
    convolution rather than a paper module (``Conv kxk`` in :meth:`ctcnet.model.CTCNet.units`),
    named by their stage."""
    if isinstance(unit.module, nn.Conv2d) and not unit.part:
        return "head+tail", unit.stage
    return unit.paper_name, unit.part


def _with_total(df: pd.DataFrame, value_columns: Sequence[str], label_column: str) -> pd.DataFrame:
    total = {c: df[c].sum() for c in value_columns}
    total[label_column] = "total"
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)


def count_params(model: nn.Module, by: str = "paper") -> pd.DataFrame:
    """Parameter counts grouped by paper module (``by="paper"``) or top-level unit (``"module"``).

    Parameters
    ----------
    model : nn.Module
        Normally a :class:`ctcnet.model.CTCNet`; for other models every parameter is grouped
        under ``other`` by its first path component.
    by : {"paper", "module"}
        ``"paper"``: one row per ``(module, part)`` of the units of ``model.units(parts=True)``
        (:func:`paper_group`: LGCM split into FSAU / Transformer blocks / local blocks, FRM,
        MFFU split into fusion convs / resamplers / CA, Downsampling, Upsampling, head+tail).
        ``"module"``: one row per unit of ``model.units()`` (``head``, ``encoder.0``, ...,
        ``tail``). A parameter outside every unit gets a row ``("other", <first path
        component>)``; there is none in any CTCNet (a test checks).

    Returns
    -------
    pandas.DataFrame
        Columns ``module, part, params, share`` (``by="paper"``) or ``module, type, params,
        share``; the last row is ``total`` and equals ``sum(p.numel() for p in
        model.parameters())`` (shared parameters counted once).
    """
    if by not in ("paper", "module"):
        raise ValueError(f"by must be 'paper' or 'module', got {by!r}")
    units = {u.path: u for u in _units(model, parts=by == "paper")}
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for name, p in model.named_parameters():
        unit = _owner(name, units)
        if unit is None:
            key = (OTHER, name.split(".")[0]) if by == "paper" else (name.split(".")[0], "")
        else:
            key = paper_group(unit) if by == "paper" else (unit.path, "")
        counts[key] += p.numel()
    if by == "paper":
        rows = [{"module": m, "part": part, "params": n} for (m, part), n in counts.items()]
        df = pd.DataFrame(rows, columns=["module", "part", "params"])
    else:
        rows = [
            {"module": m, "type": type(model.get_submodule(m)).__name__, "params": n}
            for (m, _), n in counts.items()
        ]
        df = pd.DataFrame(rows, columns=["module", "type", "params"])
    total = sum(p.numel() for p in model.parameters())
    df["share"] = df["params"] / max(total, 1)
    return _with_total(df, ["params", "share"], "module")


# --------------------------------------------------------------------------------------------
# FlopCounterMode (ground truth: FLOPs = 2 x MACs)
# --------------------------------------------------------------------------------------------


def _meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` on the meta device (shapes only, no memory, no arithmetic)."""
    return copy.deepcopy(model).to(device="meta").eval()


def _prepare(model: nn.Module, input_shape: Sequence[int], device) -> tuple[nn.Module, torch.Tensor]:
    device = torch.device("meta" if device is None else device)
    if device.type == "meta":
        model = _meta_copy(model)
    x = torch.zeros(tuple(input_shape), device=device)
    return model, x


def _flop_counter(model: nn.Module, input_shape: Sequence[int], device) -> FlopCounterMode:
    model, x = _prepare(model, input_shape, device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter


def count_flops(model: nn.Module, input_shape: Sequence[int], device=None) -> int:
    """Forward FLOPs (``2 x`` MACs) of ``model`` on one input of ``input_shape``.

    Counted with :class:`torch.utils.flop_counter.FlopCounterMode`, which sees every ATen
    operator: convolutions (FLOPs ``2 * N * Cout * Hout * Wout * Cin/groups * kh * kw``; a
    transposed convolution is counted on its *input* grid, as it should be), ``mm``/``bmm``/
    ``addmm`` and attention kernels. Element-wise ops and normalisations count 0.

    Parameters
    ----------
    model : nn.Module
    input_shape : sequence of int
        E.g. ``(1, 3, 128, 128)``.
    device : torch.device or str, optional
        Default ``"meta"``: a meta-device copy of the model is run, so no memory is allocated
        and no arithmetic is done (the official model at 128x128 counts in ~2 s).

    Returns
    -------
    int
        Official CTCNet at ``(1, 3, 128, 128)``: 59,950,977,280 (= 29.98 GMAC).
    """
    return int(_flop_counter(model, input_shape, device).get_total_flops())


def _aggregate(per_path: dict[str, float], units: Iterable[str]) -> dict[str, float]:
    """Sum a dict keyed by (leaf) module path into the given disjoint unit prefixes."""
    out = {u: 0.0 for u in units}
    for path, value in per_path.items():
        for u in out:
            if path == u or path.startswith(u + "."):
                out[u] += value
                break
    return out


def flops_by_module(
    model: nn.Module, input_shape: Sequence[int], depth: int = 1, by: str = "module", device=None
) -> pd.DataFrame:
    """FlopCounterMode FLOPs per module (inclusive of sub-modules).

    Parameters
    ----------
    model, input_shape, device
        As in :func:`count_flops`.
    depth : int
        With ``by="module"``: 1 = the units of ``model.units()`` (``head``, ``encoder.0``, ...,
        ``tail``), 2 = their children (``encoder.0.fsau``, ...), and so on.
    by : {"module", "paper", "type"}
        ``"paper"`` groups the units of ``model.units(parts=True)`` with :func:`paper_group`
        (LGCM/FSAU, LGCM/Transformer blocks, ..., MFFU/resamplers, ...); ``"type"`` sums the
        called modules of each class that have children (``LGCM``, ``FSAU``,
        ``TransformerBlock``, ``MDTA``, ...; containers excluded), the classes whose time
        :func:`profile_modules` reports at ``level == "type"``. Classes nest, so ``"type"``
        rows overlap: their shares do not add up to one, and the ``total`` row is the whole
        forward, not their sum. ``depth`` is ignored for both.

    Returns
    -------
    pandas.DataFrame
        Columns ``module`` (and ``part`` for ``"paper"``), ``flops``, ``macs`` (= flops/2),
        ``share``; last row ``total``. A module called several times (``resampler.e1_down``
        thrice, FRM ``local_mid`` twice) carries the sum of all its calls. If the rows do not
        add up to the total (ops outside every unit), an ``other`` row holds the difference;
        there is none in any CTCNet (a test checks). ``"type"``: rows sorted by FLOPs, no
        ``other`` row.
    """
    counter = _flop_counter(model, input_shape, device)
    total = int(counter.get_total_flops())
    per_path: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        if key == "Global" or "." not in key:
            continue
        per_path[key.split(".", 1)[1]] = int(sum(ops.values()))

    def inclusive(path: str) -> int:
        # FlopCounterMode keys only modules whose forward ran; a module used through methods
        # (the resampler) has only its children's keys, so recurse into them.
        if path in per_path:
            return per_path[path]
        module = model.get_submodule(path)
        return sum(inclusive(f"{path}.{child}") for child, _ in module.named_children())

    if by == "type":
        by_type: dict[str, int] = defaultdict(int)
        for path, module in model.named_modules():
            if not path or isinstance(module, _CONTAINERS) or path not in per_path:
                continue  # only called modules have a key
            if any(True for _ in module.children()):
                by_type[type(module).__name__] += per_path[path]
        df = pd.DataFrame([{"module": k, "flops": v} for k, v in by_type.items()],
                          columns=["module", "flops"])
        df = df.sort_values("flops", ascending=False, ignore_index=True)
        df = pd.concat([df, pd.DataFrame([{"module": "total", "flops": total}])],
                       ignore_index=True)
        df["macs"] = df["flops"] // 2
        df["share"] = df["flops"] / max(total, 1)
        return df
    if by == "paper":
        groups: dict[tuple[str, str], int] = defaultdict(int)
        for unit in _units(model, parts=True):
            groups[paper_group(unit)] += inclusive(unit.path)
        rows = [{"module": m, "part": p, "flops": v} for (m, p), v in groups.items()]
        columns = ["module", "part", "flops"]
    elif by == "module":
        if depth < 1:
            raise ValueError("depth must be >= 1")
        units = {u.path: u for u in _units(model, parts=False)}
        rows = []
        for path, module in model.named_modules():
            unit = _owner(path, units) if path else None
            if unit is None:
                continue
            extra = path[len(unit.path) :].lstrip(".")
            level = 1 + (len(extra.split(".")) if extra else 0)
            is_leaf = not any(True for _ in module.children())
            if level == depth or (level < depth and is_leaf):
                value = inclusive(path)
                if value:
                    rows.append({"module": path, "flops": value})
        columns = ["module", "flops"]
    else:
        raise ValueError(f"by must be 'module', 'paper' or 'type', got {by!r}")
    df = pd.DataFrame(rows, columns=columns)
    missing = total - int(df["flops"].sum())
    if missing:
        df = pd.concat([df, pd.DataFrame([{"module": OTHER, "flops": missing}])])
        df = df.reset_index(drop=True)
    df["macs"] = df["flops"] // 2
    df["share"] = df["flops"] / max(total, 1)
    return _with_total(df, ["flops", "macs", "share"], "module")


# --------------------------------------------------------------------------------------------
# Re-implemented conventions: thop (module hooks) and fvcore (MACs of traced ops)
# --------------------------------------------------------------------------------------------


@dataclass
class ConventionCount:
    """Result of :func:`thop_style_flops` / :func:`fvcore_style_macs`.

    Attributes
    ----------
    total : int
        The tool's headline number (MACs, whatever the tool calls it).
    by_module : dict
        Leaf module path -> count (summed over calls of reused modules).
    by_kind : dict
        Operator kind (``"conv"``, ``"conv_transpose"``, ``"matmul"``, ``"batch_norm"``, ...) ->
        count.
    params : int or None
        thop's parameter total (parameters of *called* modules that have a rule); None for fvcore.
    """

    total: int
    by_module: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    params: int | None = None

    def __int__(self) -> int:
        return self.total

    def per_unit(self, units: Iterable[str]) -> dict[str, float]:
        """Counts summed into the given disjoint module-path prefixes."""
        return _aggregate(self.by_module, units)


def conv_macs(module: nn.Conv2d, out_shape: Sequence[int]) -> int:
    """True MACs of a (grouped) 2-D convolution producing ``out_shape`` (no bias):
    ``N * Cout * Hout * Wout * (Cin/groups) * kh * kw``."""
    n, c_out, h, w = out_shape
    kh, kw = module.kernel_size
    return n * c_out * h * w * (module.in_channels // module.groups) * kh * kw


def conv_transpose_macs(module: nn.ConvTranspose2d, in_shape: Sequence[int]) -> int:
    """True MACs of a transposed convolution applied to ``in_shape`` (no bias): every *input*
    pixel is multiplied with the whole ``Cin x Cout/groups x kh x kw`` kernel, so
    ``N * Hin * Win * Cin * (Cout/groups) * kh * kw``."""
    n, c_in, h, w = in_shape
    kh, kw = module.kernel_size
    return n * h * w * c_in * (module.out_channels // module.groups) * kh * kw


def _thop_rule(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[str, int] | None:
    """thop 0.1.1's rule for an exact module type, or None when thop has no rule (it then
    counts 0 ops and 0 parameters for that module)."""
    kind = type(module)
    if kind in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                nn.ConvTranspose3d):
        # thop: output elements x (input channels / groups) x kernel elements, for plain AND
        # transposed convolutions. For a transposed conv of stride s that is s^2 too much.
        name = "conv_transpose" if "Transpose" in kind.__name__ else "conv"
        kernel = module.weight.shape[2:].numel()
        return name, y.numel() * (x.shape[1] // module.groups) * kernel
    if kind in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.InstanceNorm1d,
                nn.InstanceNorm2d, nn.InstanceNorm3d):
        affine = getattr(module, "affine", False) or getattr(module, "elementwise_affine", False)
        return "norm", 2 * x.numel() * (2 if affine else 1)
    if kind is nn.PReLU:
        # counted only in eval mode (thop's profile switches the model to eval)
        return "prelu", 0 if module.training else x.numel()
    if kind is nn.Linear:
        return "linear", module.in_features * y.numel()
    if kind in (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d):
        return "pool", y.numel()
    if kind in (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d):
        window = 1
        for a, b in zip(x.shape[2:], y.shape[2:]):
            window *= a / b
        return "pool", int((window + 1) * y.numel())
    if kind in (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Dropout, nn.ZeroPad2d, nn.MaxPool1d,
                nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                nn.AdaptiveMaxPool3d):
        return "zero", 0
    if kind in (nn.Upsample, nn.UpsamplingBilinear2d, nn.UpsamplingNearest2d):
        per = {"nearest": 0, "linear": 5, "bilinear": 11, "bicubic": 259}.get(module.mode, 0)
        return "upsample", per * y.numel()
    return None


def thop_style_flops(model: nn.Module, input_shape: Sequence[int], device=None) -> ConventionCount:
    """Count "MACs" and parameters the way THOP 0.1.1 (``thop.profile``) does.

    THOP registers a forward hook on every module whose *exact type* has a rule and sums what the
    hooks report; the model is put in eval mode. Rules re-implemented here:

    * ``Conv*d`` **and** ``ConvTranspose*d``: ``output elements x Cin/groups x kernel elements``
      (no bias). For a transposed convolution this uses the output grid, i.e. ``stride^2`` times
      the true MACs (:func:`conv_transpose_macs`); this is fixed only in ``ultralytics-thop``
      2.0.16 (2025).
    * ``BatchNorm``/``LayerNorm``/``InstanceNorm`` modules: ``2 x elements``, ``x2`` if affine.
    * ``PReLU``: one op per element (eval mode only). ``ReLU``, ``LeakyReLU``, pools-max: 0.
    * ``Linear``: ``in_features x output elements``; avg pools and ``nn.Upsample`` small rules.
    * Anything without a rule, and **everything done functionally** inside a module's
      ``forward`` (``q @ k^T``, ``attn @ v``, ``F.interpolate``, ``F.gelu``, the custom
      :class:`~ctcnet.model.LayerNorm2d`), counts 0.

    Parameters are counted thop's way too: the parameters of each *called* module that has a rule
    (so ``nn.Parameter`` scalars owned by container modules, LayerNorm2d weights and MDTA
    temperatures are missed).

    Parameters
    ----------
    model : nn.Module
    input_shape : sequence of int
    device : optional, default ``"meta"`` (see :func:`count_flops`).

    Returns
    -------
    ConventionCount
        Official CTCNet at ``(1, 3, 128, 128)``: 47,218,648,192 and 22,397,147 parameters, as
        the real thop 0.1.1 reports (``benchmarks/flop_counters.md``); on the authors' code it
        reports 47,226,812,768, because their pools are modules that thop hooks.
    """
    model, x = _prepare(model, input_shape, device)
    model.eval()
    by_module: dict[str, int] = defaultdict(int)
    by_kind: dict[str, int] = defaultdict(int)
    counted_params: dict[str, int] = {}
    handles = []

    def hook_for(name: str) -> Callable:
        def hook(module, inputs, output):
            rule = _thop_rule(module, inputs[0], output)
            if rule is None:
                return
            kind, ops = rule
            by_module[name] += int(ops)
            by_kind[kind] += int(ops)
            counted_params[name] = sum(p.numel() for p in module.parameters())

        return hook

    for name, module in model.named_modules():
        handles.append(module.register_forward_hook(hook_for(name)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return ConventionCount(
        total=sum(by_kind.values()),
        by_module=dict(by_module),
        by_kind=dict(by_kind),
        params=sum(counted_params.values()),
    )


def _shape(t) -> tuple[int, ...]:
    return tuple(t.shape)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _fvcore_rule(func, args, kwargs, out) -> tuple[str, int] | None:
    """fvcore 0.1.5's per-operator handle, keyed on the torch-level function."""
    name = getattr(func, "__name__", "")
    if func in (torch.conv2d, torch.conv1d, torch.conv3d):
        x, w = args[0], args[1]
        # batch x prod(weight shape) x output spatial size; bias ignored
        return "conv", x.shape[0] * w.numel() * _numel(_shape(out)[2:])
    if func in (torch.conv_transpose1d, torch.conv_transpose2d, torch.conv_transpose3d):
        x, w = args[0], args[1]
        # transposed: on the *input* spatial size (correct since fvcore PR #80)
        return "conv_transpose", x.shape[0] * w.numel() * _numel(_shape(x)[2:])
    if name in ("matmul", "__matmul__", "bmm", "mm", "__rmatmul__"):
        a, b = (args[1], args[0]) if name == "__rmatmul__" else (args[0], args[1])
        return "matmul", _numel(_shape(a)) * b.shape[-1]
    if name == "addmm":
        a, b = args[1], args[2]
        return "matmul", _numel(_shape(a)) * b.shape[-1]
    if func is F.linear:
        x, w = args[0], args[1]
        return "matmul", _numel(_shape(x)) * w.shape[0]
    if func is F.batch_norm:
        x = args[0]
        weight = args[3] if len(args) > 3 else kwargs.get("weight")
        training = args[5] if len(args) > 5 else kwargs.get("training", False)
        if training:
            return "batch_norm", x.numel() * (5 if weight is not None else 4)
        return "batch_norm", x.numel() * (2 if weight is not None else 1)
    if func in (F.layer_norm, F.group_norm):
        return "norm", args[0].numel() * 5
    if func is F.instance_norm:
        return "norm", args[0].numel() * 5
    if func is F.interpolate:
        mode = args[3] if len(args) > 3 else kwargs.get("mode", "nearest")
        per = {"nearest": 1, "bilinear": 4}.get(mode)
        if per is None:
            return None
        return f"upsample_{mode}", per * out.numel()
    if func is F.adaptive_avg_pool2d:
        return "adaptive_avg_pool2d", args[0].numel()
    if func is F.grid_sample:
        return "grid_sample", 4 * out.numel()
    return None


class _FvcoreMode(TorchFunctionMode):
    """Counts torch-level calls with :func:`_fvcore_rule`, attributing them to the innermost
    running module (``stack`` is maintained by forward pre/post hooks)."""

    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.by_module: dict[str, int] = defaultdict(int)
        self.by_kind: dict[str, int] = defaultdict(int)
        self.skipped: dict[str, int] = defaultdict(int)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        rule = _fvcore_rule(func, args, kwargs, out)
        if rule is not None and rule[1]:
            kind, ops = rule
            self.by_module[self.stack[-1] if self.stack else ""] += int(ops)
            self.by_kind[kind] += int(ops)
        return out


def fvcore_style_macs(model: nn.Module, input_shape: Sequence[int], device=None) -> ConventionCount:
    """Count MACs the way fvcore 0.1.5's ``FlopCountAnalysis`` does (it calls them "flops":
    "we count one fused multiply-add as one flop").

    fvcore traces the model with TorchScript and applies a handle per ``aten::`` op. This
    re-implementation intercepts the same torch-level calls with a
    :class:`torch.overrides.TorchFunctionMode` and applies the same handles:

    * convolution: ``N x prod(weight.shape) x output spatial size``; transposed convolution on the
      *input* spatial size (the correct count); bias ignored;
    * ``matmul``/``bmm``/``mm``/``addmm``/``linear``: ``prod(A.shape) x B.shape[-1]`` (this is
      where the MDTA products ``q k^T`` and ``A v`` are counted);
    * ``batch_norm``: ``2 x elements`` in eval mode with affine (``5 x`` in training mode);
    * ``F.interpolate``: nearest ``1 x`` output elements, bilinear ``4 x``;
    * ``adaptive_avg_pool2d``: ``1 x`` input elements;
    * everything else (element-wise ops, PReLU, softmax, GELU, padding, ``F.normalize``, the
      custom LayerNorm's mean/var, ``avg_pool2d``) is skipped, as fvcore skips it with a warning.

    Parameters
    ----------
    model : nn.Module
    input_shape : sequence of int
    device : optional, default ``"meta"`` (see :func:`count_flops`).

    Returns
    -------
    ConventionCount
        Official CTCNet at ``(1, 3, 128, 128)``: 30,094,903,424, the number of the real fvcore
        0.1.5 (``benchmarks/flop_counters.md``); 30,005,774,464 without the fused layer norm,
        which the authors' code computes by hand (fvcore then skips it).
    """
    model, x = _prepare(model, input_shape, device)
    stack: list[str] = []
    handles = []

    def enter(name: str) -> Callable:
        def hook(module, inputs) -> None:
            stack.append(name)

        return hook

    def leave(module, inputs, output) -> None:
        stack.pop()

    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(enter(name)))
        handles.append(module.register_forward_hook(leave))
    mode = _FvcoreMode(stack)
    try:
        with torch.no_grad(), mode:
            model(x)
    finally:
        for h in handles:
            h.remove()
    return ConventionCount(
        total=sum(mode.by_kind.values()), by_module=dict(mode.by_module), by_kind=dict(mode.by_kind)
    )


def compare_conventions(model: nn.Module, input_shape: Sequence[int]) -> pd.DataFrame:
    """One table that explains why the tools disagree: per paper-level unit, the true MACs
    (FlopCounterMode / 2), the fvcore-style MACs and the thop-style "MACs", in GMAC.

    Returns
    -------
    pandas.DataFrame
        Columns ``module, part, flopcounter_gmac, fvcore_gmac, thop_gmac, thop_over_true``, one
        row per ``(module, part)`` of ``model.units(parts=True)``, an ``other`` row only if some
        count lies outside every unit; last row ``total``.
    """
    true = flops_by_module(model, input_shape, by="paper")
    true = true[true["module"] != "total"]
    units = _units(model, parts=True)
    paths = [u.path for u in units]
    counts = {"fvcore_gmac": fvcore_style_macs(model, input_shape),
              "thop_gmac": thop_style_flops(model, input_shape)}
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for _, r in true.iterrows():
        part = r.get("part", "")
        rows[(r["module"], part if isinstance(part, str) else "")] = {
            "flopcounter_gmac": r["macs"] / 1e9}
    for column, count in counts.items():
        per_unit = count.per_unit(paths)
        for unit in units:
            row = rows.setdefault(paper_group(unit), {"flopcounter_gmac": 0.0})
            row[column] = row.get(column, 0.0) + per_unit[unit.path] / 1e9
        outside = count.total - sum(per_unit.values())
        if outside:
            row = rows.setdefault((OTHER, ""), {"flopcounter_gmac": 0.0})
            row[column] = row.get(column, 0.0) + outside / 1e9
    df = pd.DataFrame([{"module": m, "part": p, **v} for (m, p), v in rows.items()])
    df = df.fillna(0.0)
    df = _with_total(df, ["flopcounter_gmac", "fvcore_gmac", "thop_gmac"], "module")
    df["thop_over_true"] = df["thop_gmac"] / df["flopcounter_gmac"].where(
        df["flopcounter_gmac"] > 0
    )
    return df


# --------------------------------------------------------------------------------------------
# Closed forms: transposed (channel) attention vs spatial attention
# --------------------------------------------------------------------------------------------


def mdta_flops(width: int, heads: int, h: int, w: int, projections: bool = True) -> int:
    """FLOPs (``2 x`` MACs) of one MDTA (Restormer, Zamir et al. CVPR 2022) on ``width x h x w``.

    Per head, ``q`` and ``k`` are ``(C/heads) x HW``: ``q k^T`` and ``A v`` cost
    ``(C/heads)^2 HW`` MACs each, i.e. ``2 C^2 HW / heads`` MACs over all heads -- **linear in
    HW**. With ``projections`` the 1x1 ``C -> 3C`` conv (``3 C^2 HW``), the 3x3 depth-wise conv
    on ``3C`` channels (``27 C HW``) and the 1x1 output conv (``C^2 HW``) are added; this is
    exactly what :class:`~torch.utils.flop_counter.FlopCounterMode` counts for
    :class:`ctcnet.model.MDTA` (normalisation and softmax are not counted).
    """
    hw = h * w
    macs = 2 * width * width * hw // heads
    if projections:
        macs += 3 * width * width * hw + 27 * width * hw + width * width * hw
    return 2 * macs


def spatial_attention_flops(width: int, heads: int, h: int, w: int, projections: bool = True) -> int:
    """FLOPs (``2 x`` MACs) of standard multi-head self-attention over the ``HW`` pixels as
    tokens of dimension ``C`` (ViT / SwinIR without windows), for comparison with
    :func:`mdta_flops`.

    ``Q K^T`` is ``HW x HW`` per head with inner dimension ``C/heads``: ``(HW)^2 C`` MACs over all
    heads, and ``A V`` the same, so ``2 (HW)^2 C`` MACs -- **quadratic in HW** and independent of
    the number of heads. With ``projections``: the ``C -> 3C`` and ``C -> C`` linear maps
    (``4 C^2 HW``).
    """
    hw = h * w
    macs = 2 * hw * hw * width
    if projections:
        macs += 4 * width * width * hw
    del heads  # the total does not depend on it
    return 2 * macs


# --------------------------------------------------------------------------------------------
# Scaling with input size, measured latency / memory, per-module timing
# --------------------------------------------------------------------------------------------


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


class _PeakRSS:
    """Samples the process's resident set size every ``interval`` s (Linux ``/proc``) and reports
    the peak increase over the value at entry; falls back to ``ru_maxrss`` elsewhere."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            value = _rss_bytes()
            if value is not None:
                self.peak = max(self.peak, value)
            time.sleep(self.interval)

    def __enter__(self) -> _PeakRSS:
        self.start = _rss_bytes()
        if self.start is None:  # not Linux: kilobytes on Linux, bytes on macOS
            self.start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.peak = self.start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def increase_bytes(self) -> int:
        return max(0, self.peak - self.start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def scaling_table(
    model: nn.Module,
    sizes: Sequence[int] = (72, 96, 128, 160, 192, 224, 256),
    batch: int = 1,
    measure: bool = False,
    repeats: int = 3,
    device=None,
) -> pd.DataFrame:
    """FLOPs (and optionally measured latency and memory) against the input size.

    Counting and measuring are separate: counting runs on the meta device and is exact;
    measuring (``measure=True``) runs the real model ``repeats`` times under ``torch.no_grad``
    after one warm-up and reports the median wall time and the peak memory increase
    (CUDA: ``torch.cuda.max_memory_allocated``; CPU: peak resident set size sampled from
    ``/proc/self/statm``, so it includes allocator caching and is only indicative).

    Parameters
    ----------
    model : nn.Module
        A CTCNet (``min_input_size``/``size_multiple`` are checked when present).
    sizes : sequence of int
        Square input sides.
    batch : int
    measure : bool
    repeats : int
    device : torch.device or str, optional
        Where to measure; default: the model's device.

    Returns
    -------
    pandas.DataFrame
        ``size, pixels, gflops, gmacs, mflops_per_pixel`` and, when measured, ``latency_s``,
        ``peak_mem_mib``.
    """
    multiple = getattr(model, "size_multiple", 1)
    smallest = getattr(model, "min_input_size", 1)
    channels = getattr(getattr(model, "config", None), "in_channels", 3)
    rows = []
    for size in sizes:
        if size % multiple or size < smallest:
            raise ValueError(
                f"size {size} invalid: must be a multiple of {multiple} and >= {smallest}"
            )
        shape = (batch, channels, size, size)
        flops = count_flops(model, shape)
        row = {
            "size": size,
            "pixels": size * size,
            "gflops": flops / 1e9,
            "gmacs": flops / 2e9,
            "mflops_per_pixel": flops / (batch * size * size) / 1e6,
        }
        if measure:
            row.update(_measure(model, shape, repeats, device))
        rows.append(row)
    return pd.DataFrame(rows)


def _measure(model: nn.Module, shape, repeats: int, device) -> dict[str, float]:
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(device).eval()
    x = torch.rand(shape, device=device) * 2 - 1
    with torch.no_grad():
        model(x)  # warm-up
        _sync(device)
        times = []
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        with _PeakRSS() as rss:
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                _sync(device)
                times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = rss.increase_bytes
    return {"latency_s": statistics.median(times), "peak_mem_mib": peak / 2**20}


def profile_modules(
    model: nn.Module, x: torch.Tensor, device=None, repeats: int = 3, warmup: int = 1
) -> pd.DataFrame:
    """Wall time per top-level unit and per module type, from forward pre/post hooks.

    Each hook reads :func:`time.perf_counter` (after ``torch.cuda.synchronize`` on CUDA, which
    serialises the GPU and makes the totals slightly pessimistic). Times are inclusive of
    sub-modules and averaged over ``repeats`` forward passes (after ``warmup``) under
    ``torch.no_grad``; a module called several times per forward sums its calls.

    Returns
    -------
    pandas.DataFrame
        Columns ``level`` (``"unit"``: top-level units, which are disjoint and add up to about
        the forward time; ``"type"``: paper module classes such as ``LGCM``, ``FSAU``,
        ``TransformerBlock``, ``MDTA``, ``LocalBlock``, ``FRM``, ``MFFU``, which nest and overlap),
        ``module``, ``calls`` (per forward), ``ms`` (per forward), ``share`` (of the forward
        time); the last row (``level="total"``) is the whole forward.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(device).eval()
    x = x.to(device)
    units = {u.path for u in _units(model, parts=False)}
    units = units or {name for name, _ in model.named_children()}
    times: dict[tuple[str, str], float] = defaultdict(float)
    calls: dict[tuple[str, str], int] = defaultdict(int)
    starts: dict[str, list[float]] = defaultdict(list)
    recording = [False]
    handles = []
    skip_types = _CONTAINERS

    def pre(name):
        def hook(module, inputs):
            _sync(device)
            starts[name].append(time.perf_counter())

        return hook

    def post(name, keys):
        def hook(module, inputs, output):
            _sync(device)
            elapsed = time.perf_counter() - starts[name].pop()
            if recording[0]:
                for key in keys:
                    times[key] += elapsed
                    calls[key] += 1

        return hook

    for name, module in model.named_modules():
        if not name or isinstance(module, skip_types):
            continue
        is_leaf = not any(True for _ in module.children())
        if is_leaf and name not in units:
            continue  # leaf layers (convs, norms) would only add hook overhead
        keys = [] if is_leaf else [("type", type(module).__name__)]
        if name in units:
            keys.append(("unit", name))
        handles.append(module.register_forward_pre_hook(pre(name)))
        handles.append(module.register_forward_hook(post(name, keys)))
    totals = []
    try:
        with torch.no_grad():
            for i in range(warmup + repeats):
                recording[0] = i >= warmup
                _sync(device)
                start = time.perf_counter()
                model(x)
                _sync(device)
                if recording[0]:
                    totals.append(time.perf_counter() - start)
    finally:
        for h in handles:
            h.remove()
    forward_ms = 1e3 * sum(totals) / len(totals)
    rows = [
        {
            "level": level,
            "module": name,
            "calls": calls[(level, name)] // repeats,
            "ms": 1e3 * t / repeats,
            "share": 1e3 * t / repeats / forward_ms,
        }
        for (level, name), t in times.items()
    ]
    df = pd.DataFrame(rows).sort_values(["level", "ms"], ascending=[False, False])
    total = {"level": "total", "module": "forward", "calls": 1, "ms": forward_ms, "share": 1.0}
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)

"""Schematics of one module, drawn from what its forward pass does (chapters 3 to 8).

:func:`trace_block` runs the module's ``forward`` once, on a shape-only copy (PyTorch's ``meta``
device: no memory, no arithmetic, the module itself untouched), and records what happens at the
module's own level: every call of a sub-module (a box) and every tensor operation written in the
``forward`` itself (a node: ``+``, ``×``, concatenation, sigmoid, softmax, matrix product, split,
pooling, resizing, ...). Reshapes, transposes and paddings only rearrange a tensor; they become
notes on the arrows. Multiplications by a learnable parameter of the module (the scalars of the
residual unit, MDTA's temperature) become their own small nodes, named after the parameter.
:func:`draw_block` lays that graph out in layers -- left to right, top to bottom, or for an
encoder-decoder (the network, the hourglass) as a U -- with the longest chain of the forward pass
on one straight line and every skip connection routed around the boxes (the layout lives in
:mod:`ctcnet.course._dataflow`), and draws it with matplotlib.

Because the drawing is the record of one forward pass, it cannot drift from the code: a module
that the ``forward`` stops calling disappears from the drawing, a new operation appears in it.
Box labels are the classes' paper names (the ``paper_name`` that :meth:`ctcnet.model.CTCNet.units`
reports too), or for PyTorch layers their kind and size (``Conv 3×3``, ``16→8 ch``), with the
attribute name in the code underneath, so that a box can be found in ``ctcnet/model.py``.

Example (chapter 3)::

    from ctcnet.course.book import trained_model
    from ctcnet.course.schematic import draw_block

    model = trained_model()
    draw_block(model.encoder[0].local_in, network=model)   # the local block, shapes from the net

The modules of the other chapters: ``model.encoder[0].local_in.unit1`` (RU) and
``.local_in.attention`` (CA); ``model.encoder[0].fsau`` and its ``.hourglass`` (chapter 4);
``model.encoder[2].transformer[0]`` with its ``.attn`` (MDTA) and ``.ffn`` (GDFN) (chapter 5);
``model.encoder[1]`` (LGCM, chapter 6); ``model.bottleneck[0]`` (FRM) with its ``.feu`` and
``model.fusion[0]`` (MFFU) (chapter 7); ``model`` itself (chapter 8).
"""

from __future__ import annotations

import copy
import inspect
import itertools
from collections.abc import Iterable, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle
from matplotlib.path import Path
from torch import nn
from torch.overrides import TorchFunctionMode

from ..analysis.receptive_field import tensors_in
from ..model import (
    FSAU,
    GDFN,
    LGCM,
    MDTA,
    ChannelAttention,
    CTCNet,
    Downsample,
    Hourglass,
    HourglassConv,
    LayerNorm2d,
    TransformerBlock,
    Upsample,
)
from ._dataflow import (
    CIRCLE,
    FONT,
    SKIP_COLOURS,
    BlockEdge,
    BlockGraph,
    BlockNode,
    arrange,
    group_frames,
    junctions,
    line_pitch,
    place_labels,
    text_size,
)

__all__ = ["BlockNode", "BlockEdge", "BlockGraph", "trace_block", "draw_block", "paper_name",
           "SYMBOLS"]


# --------------------------------------------------------------------------------------------
# Tracing
# --------------------------------------------------------------------------------------------

#: Operations that only rearrange a tensor's elements (or copy them): drawn as a note on the
#: arrow, not as a node. The value is the note.
_REARRANGE = {
    "reshape": "reshape", "view": "reshape", "flatten": "reshape", "unflatten": "reshape",
    "permute": "permute", "transpose": "transpose", "t": "transpose", "contiguous": "",
    "unsqueeze": "reshape", "squeeze": "reshape", "expand": "expand", "expand_as": "expand",
    "clone": "", "to": "", "float": "", "type_as": "", "detach": "",
}
#: Element-wise arithmetic drawn as a circle.
_ARITHMETIC = {
    "add": "+", "__add__": "+", "__radd__": "+", "add_": "+", "__iadd__": "+",
    "sub": "−", "__sub__": "−", "__rsub__": "−", "rsub": "−",
    "mul": "×", "__mul__": "×", "__rmul__": "×", "mul_": "×", "__imul__": "×",
    "div": "÷", "__truediv__": "÷", "true_divide": "÷",
    "matmul": "@", "__matmul__": "@", "bmm": "@",
}
#: Other operations, with their label (a circle where the label is one symbol).
_NAMED = {
    "cat": "c", "concat": "c", "concatenate": "c", "stack": "stack", "sigmoid": "σ",
    "softmax": "softmax", "relu": "ReLU", "relu_": "ReLU", "gelu": "GELU", "tanh": "tanh",
    "leaky_relu": "LeakyReLU", "normalize": "L2 normalise", "layer_norm": "LayerNorm",
    "avg_pool2d": "avg pool", "max_pool2d": "max pool", "adaptive_avg_pool2d": "avg pool",
    "interpolate": "resize", "chunk": "split", "split": "split", "tensor_split": "split",
    "unbind": "split", "exp": "exp", "sum": "sum", "mean": "mean",
}
#: What the circle symbols mean, for the legend.
SYMBOLS = {"+": "add", "−": "subtract", "×": "multiply element-wise", "÷": "divide",
           "@": "matrix product", "c": "concatenate channels", "σ": "sigmoid"}


def _function_name(func) -> str:
    name = getattr(func, "__name__", "")
    if name == "__get__":  # attribute getters of Tensor (x.shape, x.T, ...)
        name = getattr(getattr(func, "__self__", None), "__name__", name)
    return name


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


class _Recorder(TorchFunctionMode):
    """Records the data flow of one forward pass of ``root`` at ``root``'s own level.

    Module hooks on every descendant tell when a sub-module call starts and ends; while one
    runs (``depth > 0``) nothing inside it is recorded. Tensor operations seen at depth 0 (this
    mode sees every torch function and Tensor method) become op nodes or, for rearrangements,
    notes on the arrows. Every tensor is identified by ``id``; all of them are kept alive until
    the end so that no id is reused.
    """

    def __init__(self, root: nn.Module, expand: set[int]) -> None:
        super().__init__()
        self.root = root
        self.expand = expand
        self.paths = {id(m): name for name, m in root.named_modules()}
        self.params = {id(p): name for name, p in root.named_parameters()}
        self.nodes: list[dict] = []
        self.edges: list[dict] = []
        self.producer: dict[int, tuple[int, str]] = {}  # id(tensor) -> (node, note so far)
        self.keep: list = []
        self.depth = 0
        self.stack: list[tuple[str, int]] = []  # per hooked call: ("node" | "skip" | "group", node)
        self.groups: list[str] = []
        self.calls: dict[int, int] = {}

    # -- bookkeeping ---------------------------------------------------------------------------
    def node(self, kind: str, **info) -> int:
        self.nodes.append({"kind": kind, "group": self.groups[-1] if self.groups else "", **info})
        return len(self.nodes) - 1

    def connect(self, inputs: Iterable[torch.Tensor], target: int, ordered: bool = False,
                roles: Sequence[str] | None = None) -> bool:
        """Edges from the producers of ``inputs`` to ``target``; False if none is known. With
        ``ordered`` (a concatenation), each edge's note says its place: ``1st``, ``2nd``, ...;
        with ``roles``, the k-th edge's note says ``roles[k]`` (``+``/``−`` for a subtraction)."""
        known = False
        for k, t in enumerate(inputs):
            source = self.producer.get(id(t))
            if source is None:
                continue
            node, note = source
            if ordered:
                note = ", ".join(n for n in (note, _ordinal(k + 1)) if n)
            elif roles is not None and k < len(roles):
                note = ", ".join(n for n in (note, roles[k]) if n)
            self.edges.append({"source": node, "target": target, "note": note,
                               "shape": _shape(t)})
            known = True
        return known

    def produce(self, outputs: Sequence[torch.Tensor], node: int) -> None:
        many = len(outputs) > 1
        for k, t in enumerate(outputs):
            self.producer[id(t)] = (node, f"[{k}]" if many else "")
            self.keep.append(t)
        if outputs:
            self.nodes[node]["shape"] = _shape(outputs[0])

    # -- tensor operations ----------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth == 0:
            self.record(func, args, kwargs, out)
        return out

    def record(self, func, args, kwargs, out) -> None:
        outputs = tensors_in(out)
        if not outputs:
            return
        name = _function_name(func)
        inputs = tensors_in(args) + tensors_in(kwargs)
        tracked = [t for t in inputs if id(t) in self.producer]
        params = [self.params[id(t)] for t in inputs if id(t) in self.params]
        if not tracked:
            return  # a constant made inside forward, or a parameter used alone: no data flow
        if name in _REARRANGE or name == "pad":
            if len(tracked) == 1 and len(outputs) == 1:
                node, note = self.producer[id(tracked[0])]
                extra = _REARRANGE.get(name, "") if name != "pad" else _pad_note(args, kwargs)
                notes = [n for n in (note, extra) if n]
                if notes and len(notes) > 1 and notes[-1] == notes[-2]:
                    notes.pop()
                self.producer[id(outputs[0])] = (node, ", ".join(notes))
                self.keep.append(outputs[0])
                return
        label, symbol, detail = _describe_op(name, args, kwargs, outputs, params)
        node = self.node("op", name=label, symbol=symbol, detail=detail)
        roles = _SIGNED[name] if name in _SIGNED and len(tracked) == 2 else None  # a − b
        self.connect(tracked, node, ordered=name in _ORDERED and len(tracked) > 1, roles=roles)
        self.produce(outputs, node)

    # -- module calls ---------------------------------------------------------------------------
    def before(self, module: nn.Module, args, kwargs) -> None:
        if self.depth > 0:
            self.stack.append(("skip", -1))
            self.depth += 1
            return
        if id(module) in self.expand:
            self.stack.append(("group", -1))
            self.groups.append(self.paths[id(module)])
            return
        if isinstance(module, nn.Identity):  # hook taps (map_tap, attention_tap): no data flow
            self.stack.append(("skip", -1))
            self.depth += 1
            return
        self.calls[id(module)] = self.calls.get(id(module), 0) + 1
        node = self.node("module", path=self.paths[id(module)], call=self.calls[id(module)],
                         module=module, in_shapes=[_shape(t) for t in tensors_in((args, kwargs))])
        self.connect(tensors_in((args, kwargs)), node)
        self.stack.append(("node", node))
        self.depth += 1

    def after(self, module: nn.Module, output) -> None:
        role, node = self.stack.pop()
        if role == "group":
            self.groups.pop()
            return
        self.depth -= 1
        if role == "node":
            self.produce(tensors_in(output), node)


#: Operations whose inputs' order matters (and is written on the arrows).
_ORDERED = {"cat", "concat", "concatenate", "stack"}
#: Subtractions: the notes on the arrows of the first and the second argument (``+`` for the
#: tensor subtracted from, ``−`` for the one subtracted); ``rsub(a, b)`` is ``b − a``.
_SIGNED = {"sub": ("+", "−"), "__sub__": ("+", "−"), "__rsub__": ("−", "+"),
           "rsub": ("−", "+")}


def _ordinal(k: int) -> str:
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(k if k < 20 else k % 10, "th")
    return f"{k}{suffix}"


def _pad_note(args, kwargs) -> str:
    pad = kwargs.get("pad", args[1] if len(args) > 1 else ())
    mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
    sizes = sorted(set(int(p) for p in pad))
    amount = str(sizes[0]) if len(sizes) == 1 else ",".join(str(int(p)) for p in pad)
    return f"pad {amount} ({mode})"


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _describe_op(name: str, args, kwargs, outputs, params) -> tuple[str, str, str]:
    """(label, symbol, detail) of a tensor operation."""
    if name in _ARITHMETIC:
        symbol = _ARITHMETIC[name]
        scalars = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        if params:  # a learnable factor of the module: name it
            return f"{symbol} {', '.join(params)}", "", ""
        if scalars:
            return f"{symbol} {_number(scalars[0])}", "", ""
        return symbol, symbol, ""
    label = _NAMED.get(name, name)
    out = outputs[0]
    if name == "leaky_relu":
        slope = kwargs.get("negative_slope", args[1] if len(args) > 1 else 0.01)
        return f"LeakyReLU {_number(slope)}", "", ""
    if name in ("chunk", "split", "tensor_split", "unbind"):
        return f"split in {len(outputs)}", "", ""
    if name == "adaptive_avg_pool2d":
        size = out.shape[-2:]
        return ("global avg pool" if tuple(size) == (1, 1) else "avg pool"), "", ""
    if name in ("avg_pool2d", "max_pool2d"):
        k = kwargs.get("kernel_size", args[1] if len(args) > 1 else "")
        k = k if isinstance(k, int) else (k[0] if k else "")
        return f"{label} {k}×{k}", "", ""
    if name == "interpolate":
        mode = kwargs.get("mode", args[3] if len(args) > 3 else "nearest")
        factor = kwargs.get("scale_factor", args[2] if len(args) > 2 else None)
        if factor is not None:
            return f"{mode} ×{_number(factor)}", "", ""
        h, w = out.shape[-2:]
        return f"{mode} to {h}×{w}", "", ""
    if name == "softmax":
        return "softmax", "", "rows" if kwargs.get("dim", args[1] if len(args) > 1 else -1) in (
            -1, out.dim() - 1) else ""
    if len(label) == 1:
        return label, label, ""
    return label, "", ""


# --------------------------------------------------------------------------------------------
# Labels of module boxes
# --------------------------------------------------------------------------------------------


def paper_name(module: nn.Module) -> str:
    """The name a box shows: the class's ``paper_name`` (the name
    :meth:`ctcnet.model.CTCNet.units` reports), ``"Conv k×k"`` / ``"ConvT k×k"`` for PyTorch
    convolutions, ``"N × name"`` for a ``Sequential`` of N modules of one class, else the class
    name."""
    if isinstance(module, nn.Sequential) and len(module):
        names = {paper_name(m) for m in module}
        inner = paper_name(module[0])
        return f"{len(module)} × {inner}" if len(names) == 1 else "Sequential"
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        kh, kw = module.kernel_size
        depthwise = module.groups > 1 and module.groups == module.in_channels
        kind = "ConvT" if isinstance(module, nn.ConvTranspose2d) else "Conv"
        return f"{'DW ' if depthwise else ''}{kind} {kh}×{kw}"
    name = getattr(type(module), "paper_name", None)
    if name:
        return name
    return {"BatchNorm2d": "BatchNorm"}.get(type(module).__name__, type(module).__name__)


def _short_name(module: nn.Module) -> str:
    """A name to write as a function, ``NAME(x)``: the paper name if it is one word."""
    name = paper_name(module)
    return name if " " not in name else type(module).__name__


def _channels(in_shapes: list[tuple[int, ...]], out_shape: tuple[int, ...]) -> str:
    if not in_shapes or not out_shape or len(out_shape) < 2:
        return ""
    c_in = [s[1] for s in in_shapes if len(s) >= 2]
    c_out = out_shape[1]
    if len(c_in) == 1 and c_in[0] == c_out:
        return f"{c_out} ch"
    return f"{'+'.join(str(c) for c in c_in)}→{c_out} ch"


def _resolution(in_shapes: list[tuple[int, ...]], out_shape: tuple[int, ...]) -> str:
    if not in_shapes or len(out_shape) != 4 or len(in_shapes[0]) != 4:
        return ""
    h_in, h_out = in_shapes[0][2], out_shape[2]
    if h_out * 1.5 <= h_in:  # (a padded input is a little larger: not a resampling)
        return f"↓{round(h_in / h_out)}"
    if h_out >= 1.5 * h_in:
        return f"↑{round(h_out / h_in)}"
    return ""


def _module_detail(module: nn.Module, in_shapes, out_shape) -> str:
    """Hyper-parameters of a box: channels in→out, resolution change, and what the class has
    that the shapes do not show (hourglass depth, heads, hidden widths)."""
    parts = []
    if isinstance(module, nn.Sequential) and len(module):
        parts.append(_channels(in_shapes, out_shape))
        if isinstance(module[0], TransformerBlock):
            parts.append(f"{module[0].attn.heads} head{'s' * (module[0].attn.heads > 1)}")
    elif isinstance(module, (nn.PReLU, nn.BatchNorm2d, LayerNorm2d, nn.ReLU, nn.GELU)):
        pass
    else:
        parts.append(_channels(in_shapes, out_shape))
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and module.stride[0] > 1:
            parts.append(f"stride {module.stride[0]}")
    if not (isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and module.stride[0] > 1):
        parts.append(_resolution(in_shapes, out_shape))
    if isinstance(module, Hourglass):
        parts.append(f"depth {len(module.skips)}")
    elif isinstance(module, FSAU):
        parts.append(f"hourglass depth {len(module.hourglass.skips)}")
    elif isinstance(module, (MDTA, TransformerBlock)):
        heads = module.heads if isinstance(module, MDTA) else module.attn.heads
        parts.append(f"{heads} head{'s' * (heads > 1)}")
    elif isinstance(module, GDFN):
        parts.append(f"hidden {module.proj_out.in_channels}")
    elif isinstance(module, ChannelAttention):
        parts.append(f"squeeze to {module.squeeze.out_channels}")
    elif isinstance(module, LGCM) and module.transformer is not None:
        parts.append(f"{len(module.transformer)} × TB")
    return " · ".join(p for p in parts if p)


# --------------------------------------------------------------------------------------------
# trace_block
# --------------------------------------------------------------------------------------------


def _meta_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose parameters and buffers live on the meta device (no data is
    copied), with no hooks: tracing runs on it and leaves ``module`` exactly as it was."""
    memo = {}
    for t in itertools.chain(module.parameters(), module.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, t.requires_grad) if isinstance(t, nn.Parameter) else meta
    probe = copy.deepcopy(module, memo)
    for m in probe.modules():
        for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                      "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs",
                      "_forward_hooks_always_called", "_backward_pre_hooks"):
            if isinstance(getattr(m, hooks, None), dict):
                getattr(m, hooks).clear()
    return probe.eval()


def _dtype(module: nn.Module) -> torch.dtype:
    """The floating dtype of ``module``'s weights (an input must match it), float32 if none."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


def _as_meta(value, dtype: torch.dtype = torch.float32):
    """Shapes (tuples of ints, made ``dtype``) and tensors -> meta tensors; lists / tuples of
    them kept."""
    if isinstance(value, torch.Tensor):
        return torch.empty(value.shape, dtype=value.dtype if value.is_floating_point()
                           else dtype, device="meta")
    if isinstance(value, (tuple, list, torch.Size)) and value and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return torch.empty(tuple(value), dtype=dtype, device="meta")
    if isinstance(value, (tuple, list)):
        return [_as_meta(v, dtype) for v in value]
    raise ValueError(f"inputs must be tensors, shapes (tuples of ints) or lists of them; got "
                     f"{type(value).__name__}")


def _inputs_in(network: nn.Module, module: nn.Module, size: int) -> tuple:
    """The arguments ``module`` receives at its first call in a forward pass of ``network`` on a
    ``1 x C x size x size`` input (as meta tensors)."""
    path = next((name for name, m in network.named_modules() if m is module), None)
    if path is None:
        raise ValueError(f"the {type(module).__name__} to draw is not a sub-module of network")
    first = _first_inputs(network, size)
    if path not in first:
        raise ValueError(f"the {type(module).__name__} to draw is not called by network's forward")
    return _as_meta(first[path], _dtype(network))


#: The first-call input shapes of every sub-module of the last few networks traced, keyed by
#: (id, size, structure), so that drawing several modules of one network runs it once.
_FIRST_INPUTS: dict[tuple, dict[str, tuple]] = {}


def _first_inputs(network: nn.Module, size: int) -> dict[str, tuple]:
    """``path -> args`` (as shapes; lists kept) of every sub-module's first call in one forward
    pass of ``network`` on a ``1 x C x size x size`` input, run on a meta copy."""
    structure = tuple((name, type(m).__name__, tuple(tuple(p.shape) for p in
                                                     m.parameters(recurse=False)))
                      for name, m in network.named_modules())
    key = (id(network), size, hash(structure))
    if key in _FIRST_INPUTS:
        return _FIRST_INPUTS[key]
    probe = _meta_copy(network)
    paths = {id(m): name for name, m in probe.named_modules()}
    seen: dict[str, tuple] = {}

    def shapes(value):
        if isinstance(value, torch.Tensor):
            return tuple(value.shape)
        return [shapes(v) for v in value] if isinstance(value, (list, tuple)) else value

    def grab(m, args):
        seen.setdefault(paths[id(m)], tuple(shapes(a) for a in args))

    handles = [m.register_forward_pre_hook(grab) for m in probe.modules()]
    try:
        channels = getattr(getattr(network, "config", None), "in_channels", 3)
        with torch.no_grad():
            probe(torch.empty(1, channels, size, size, dtype=_dtype(probe), device="meta"))
    finally:
        for h in handles:
            h.remove()
    while len(_FIRST_INPUTS) >= 4:
        _FIRST_INPUTS.pop(next(iter(_FIRST_INPUTS)))
    _FIRST_INPUTS[key] = seen
    return seen


def _guess_inputs(module: nn.Module, size: int) -> tuple:
    """One ``1 x C x size x size`` input, ``C`` the input width of the module's first conv;
    only for a ``forward`` that takes one tensor (an MFFU takes a list whose widths only the
    network knows)."""
    params = [p for p in inspect.signature(module.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_tensor = len(params) == 1 and params[0].annotation in (
        inspect.Parameter.empty, torch.Tensor, "torch.Tensor", "Tensor")
    conv = next((m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))),
                None)
    if conv is None or not takes_tensor:
        raise ValueError(f"cannot tell the input width of a {type(module).__name__}: pass "
                         "network= (the CTCNet that holds it) or inputs=")
    return (torch.empty(1, conv.in_channels, size, size, dtype=_dtype(module), device="meta"),)


def _resolve(module: nn.Module, items) -> set[int]:
    """ids of the sub-modules to expand (given as modules or paths inside ``module``)."""
    if items is None:
        return set()
    if isinstance(items, (str, nn.Module)):
        items = [items]
    ids = set()
    for item in items:
        if isinstance(item, str):
            try:
                item = module.get_submodule(item)
            except AttributeError:
                raise ValueError(f"expand: {type(module).__name__} has no sub-module "
                                 f"{item!r}") from None
        if not any(m is item for m in module.modules()) or item is module:
            raise ValueError(f"expand: the {type(item).__name__} is not a sub-module of the "
                             f"{type(module).__name__} being drawn")
        ids.add(id(item))
    return ids


def trace_block(module: nn.Module, inputs=None, *, network: nn.Module | None = None,
                size: int = 128, expand=None) -> BlockGraph:
    """The data flow of one forward pass of ``module`` at its own level, as a :class:`BlockGraph`.

    Parameters
    ----------
    module : the module to trace (any ``nn.Module``; every paper module of :mod:`ctcnet.model`
        and a whole :class:`~ctcnet.model.CTCNet`).
    inputs : the positional arguments of ``module.forward``, as tensors (only their shapes and
        dtypes are used) or shapes such as ``(1, 16, 32, 32)``; a list argument (the MFFU's) as a
        list of them. Default: taken from ``network`` if given, else ``1 x 3 x size x size`` for a
        CTCNet, else one ``1 x C x (size/4) x (size/4)`` tensor with ``C`` the input width of the
        module's first convolution.
    network : a model that contains ``module``: its inputs are then those ``module`` receives at
        its first call in ``network`` on a ``size x size`` image, so shapes are the real ones.
    size : the image side (for a CTCNet or ``network``); a quarter of it for a lone module.
    expand : sub-modules (objects, or paths inside ``module``) to open: their own calls and
        operations are drawn in place of their box, framed and labelled with their name.

    The trace runs on a copy of ``module`` on the meta device: no arithmetic, no memory, and
    ``module`` (its parameters, buffers, hooks, training flag) is not touched. Raises a one-line
    ``ValueError`` for inputs that are not tensors or shapes, a ``network`` that does not hold
    ``module``, or an ``expand`` entry that is not one of ``module``'s sub-modules.
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"trace_block draws an nn.Module, got {type(module).__name__}")
    expanded = _resolve(module, expand)
    if inputs is not None:
        one_shape = isinstance(inputs, (tuple, list)) and all(isinstance(v, int) for v in inputs)
        given = (inputs,) if one_shape or not isinstance(inputs, (tuple, list)) else inputs
        args = tuple(_as_meta(v, _dtype(module)) for v in given)
    elif isinstance(module, CTCNet):
        args = (torch.empty(1, module.config.in_channels, size, size, dtype=_dtype(module),
                            device="meta"),)
    elif network is not None:
        args = _inputs_in(network, module, size)
    else:
        args = _guess_inputs(module, max(size // 4, 1))

    probe = _meta_copy(module)
    paths = {name: m for name, m in module.named_modules()}
    probe_expand = {id(probe.get_submodule(name)) for name, m in paths.items()
                    if id(m) in expanded}
    recorder = _Recorder(probe, probe_expand)

    # inputs: one node per tensor argument, named after forward's parameters
    names = [p.name for p in inspect.signature(probe.forward).parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for k, arg in enumerate(args):
        name = names[k] if k < len(names) else f"arg{k}"
        tensors = tensors_in(arg)
        for j, t in enumerate(tensors):
            label = f"{name}[{j}]" if isinstance(arg, (list, tuple)) else name
            node = recorder.node("input", name=label)
            recorder.produce([t], node)
    handles = []
    for m in probe.modules():
        if m is probe:
            continue
        handles.append(m.register_forward_pre_hook(recorder.before, with_kwargs=True))
        handles.append(m.register_forward_hook(
            lambda mod, a, out: recorder.after(mod, out)))
    try:
        with torch.no_grad(), recorder:
            output = probe(*args)
    finally:
        for h in handles:
            h.remove()
    outs = tensors_in(output)
    arg_names = ", ".join(names[: len(args)])
    for k, t in enumerate(outs):
        label = f"{_short_name(module)}({arg_names})" + (f"[{k}]" if len(outs) > 1 else "")
        node = recorder.node("output", name=label)
        recorder.connect([t], node)
        recorder.nodes[node]["shape"] = _shape(t)

    return _finish(module, recorder)


def _finish(module: nn.Module, recorder: _Recorder) -> BlockGraph:
    """Turn the recorder's raw lists into a :class:`BlockGraph`: drop operations whose result
    never reaches an output, number the calls of shared modules, describe the boxes."""
    raw, edges = recorder.nodes, recorder.edges
    alive = {i for i, n in enumerate(raw) if n["kind"] == "output"}
    changed = True
    while changed:
        changed = False
        for e in edges:
            if e["target"] in alive and e["source"] not in alive:
                alive.add(e["source"])
                changed = True
    keep = [i for i, n in enumerate(raw)
            if i in alive or n["kind"] in ("input", "module")]
    new_index = {old: new for new, old in enumerate(keep)}
    totals: dict[str, int] = {}
    for i in keep:
        if raw[i]["kind"] == "module":
            totals[raw[i]["path"]] = totals.get(raw[i]["path"], 0) + 1
    originals = dict(module.named_modules())
    nodes = []
    for i in keep:
        n = raw[i]
        info = dict(index=new_index[i], kind=n["kind"], name=n.get("name", ""),
                    detail=n.get("detail", ""), symbol=n.get("symbol", ""), group=n["group"],
                    shape=n.get("shape", ()))
        if n["kind"] == "module":
            original = originals[n["path"]]
            info.update(name=paper_name(original), path=n["path"],
                        call=n["call"] if totals[n["path"]] > 1 else 0,
                        detail=_module_detail(original, n["in_shapes"], n.get("shape", ())))
        nodes.append(BlockNode(**info))
    graph_edges = [BlockEdge(new_index[e["source"]], new_index[e["target"]], e["note"],
                             e["shape"])
                   for e in edges if e["source"] in new_index and e["target"] in new_index]
    name = paper_name(module)
    title = name if name == type(module).__name__ else f"{name} ({type(module).__name__})"
    groups = {path: f"{paper_name(originals[path])} ({path})"
              for path in dict.fromkeys(n.group for n in nodes if n.group)}
    return BlockGraph(title, nodes, graph_edges, groups)


# --------------------------------------------------------------------------------------------
# draw_block
# --------------------------------------------------------------------------------------------

_SKIP_TEXT = "from the left column to the right (a colour per source)"
#: The box colours' names, in legend order.
_CATEGORY_NAMES = ("convolution", "resampling", "norm / activation", "attention",
                   "composite block", "operation")
_COLOURS = {"convolution": "#d6e6f5", "resampling": "#e4d9f0", "norm / activation": "#fcefc7",
            "attention": "#f8d3d1", "composite block": "#d7ecd2", "operation": "#ececec",
            "group": "#fafafa"}


def _category(module: nn.Module) -> str:
    """The colour class of a box: convolution, resampling (anything that changes the
    resolution), norm / activation, attention, or a composite block."""
    if isinstance(module, nn.Sequential) and len(module):
        return _category(module[0])
    if isinstance(module, (ChannelAttention, FSAU, MDTA, Hourglass)):
        return "attention"
    if isinstance(module, (nn.PReLU, nn.ReLU, nn.GELU, nn.BatchNorm2d, LayerNorm2d)):
        return "norm / activation"
    if isinstance(module, HourglassConv):
        return "resampling" if module.upsample or module.conv.stride[0] > 1 else "convolution"
    if isinstance(module, nn.ConvTranspose2d) or (isinstance(module, nn.Conv2d)
                                                   and module.stride[0] > 1):
        return "resampling"
    if isinstance(module, nn.Conv2d):
        return "convolution"
    if isinstance(module, (Downsample, Upsample)):
        return "resampling"
    return "composite block"


def draw_block(module: nn.Module, inputs=None, *, network: nn.Module | None = None,
               size: int = 128, expand=None, shapes: bool = False, direction: str = "auto",
               title: str | None = None, legend: bool = True, dpi: float | None = None):
    """Draw the schematic of ``module`` from its own forward pass; returns the figure.

    Boxes are the sub-module calls of one forward pass (a shared module once per call, marked
    ``call k``), circles the arithmetic written in ``forward`` (``+``, ``−``, ``×``, ``c``
    concatenation, ``σ``, ``@`` matrix product), grey pills the other operations (pooling,
    resizing, softmax, split, the learnable scalars ``× name``), arrows the tensors; notes on
    the arrows say what was only rearranged (``reshape``, ``transpose``, ``pad``) and, after a
    split, which part flows (``[0]``, ``[1]``, ...). The longest chain is drawn on one straight
    line; the other branches and the skip connections run around the boxes. Each box shows its
    paper name, its hyper-parameters and its attribute in the code; box colours tell
    convolutions, resampling, norms and activations, attention and composite blocks apart (a
    legend under the drawing says which colours and symbols it uses).

    Parameters
    ----------
    module, inputs, network, size, expand : as for :func:`trace_block` (``network=`` gives the
        real shapes inside a model: ``draw_block(model.encoder[0].fsau, network=model)``).
    shapes : write the tensor shape ``C×H×W`` (batch left out) on the arrows.
    direction : ``"LR"`` (left to right), ``"TB"`` (top to bottom), ``"U"`` (an
        encoder-decoder as a U: down the left, up the right, skips across; falls back to
        ``"TB"`` for a module whose longest chain does not fall and rise in resolution by 4× or
        more), or ``"auto"``: ``"LR"`` when that is at most 9 inches wide (a book page), else
        ``"U"`` (without ``expand``) or ``"TB"``.
    title : the title above the drawing; default the module's paper name and class.
    legend : add the lines that explain the colours and symbols used.
    dpi : the figure's resolution (pixels per inch; default matplotlib's), which sets the size
        of the image a notebook shows: a larger ``dpi`` magnifies a tall, narrow drawing whose
        text would otherwise look small on screen.

    Returns a matplotlib ``Figure``, already closed in pyplot: a notebook shows it once when it
    is the cell's last value, ``fig.savefig(path, dpi=...)`` writes it, and it needs no
    ``plt.close``. Text sizes are fixed in points and the figure is sized to the
    drawing (one axis unit is one inch), so every schematic has the same type size whatever its
    extent. Raises ``ValueError`` (one
    line) for an unknown ``direction`` and for the bad inputs :func:`trace_block` refuses.
    """

    if direction not in ("LR", "TB", "U", "auto"):
        raise ValueError(f"direction must be 'LR', 'TB', 'U' or 'auto', got {direction!r}")
    graph = trace_block(module, inputs, network=network, size=size, expand=expand)
    items, routes, vertical = arrange(graph, shapes, direction)

    def xy(u: float, v: float) -> tuple[float, float]:
        return (v, -u) if vertical else (u, -v)

    frames = group_frames(graph, items, xy)
    frame_lines = [edge for _, _, (a, b, c, d) in frames
                   for edge in ((a, b, c, b), (a, d, c, d), (a, b, a, d), (c, b, c, d))]
    labels = place_labels(items, routes, xy, frame_lines, frames)

    # extent of everything (boxes, lines, labels, frames) in figure inches
    rects = [(x - w / 2, y - h / 2, x + w / 2, y + h / 2) for x, y, w, h, *_ in labels]
    rects += [rect for _, _, rect in frames]
    for item in items.values():
        if item.style != "dummy":
            x, y = xy(item.u, item.v)
            rects.append((x - item.width / 2, y - item.height / 2, x + item.width / 2,
                          y + item.height / 2))
    for route in routes:
        rects += [xy(*p) * 2 for p in route.points]
    margin = 0.15
    x0, x1 = min(r[0] for r in rects) - margin, max(r[2] for r in rects) + margin
    y0, y1 = min(r[1] for r in rects) - margin, max(r[3] for r in rects) + margin
    title = graph.title if title is None else title
    title_h = 0.32 if title else 0.0
    categories = []
    for n in graph.nodes:
        if n.kind == "module":
            categories.append(_category(module.get_submodule(n.path)))
        elif n.kind == "op" and not n.symbol:
            categories.append("operation")
    symbols = [s for s in SYMBOLS if any(n.symbol == s for n in graph.nodes)]
    skips = any(route.colour != "#333333" for route in routes)
    rows = _legend_rows(categories, symbols, max(x1 - x0 - 0.2, 3.0), skips) if legend else []
    x1 = max(x1, x0 + 0.2 + max((sum(e[2] + 0.18 for e in row) for row in rows), default=0.0))
    if title:
        x1 = max(x1, x0 + 0.3 + text_size(title, 10, "bold")[0])
    legend_h = 0.1 + 0.2 * len(rows) if rows else 0.0
    fig = plt.figure(figsize=(x1 - x0, y1 - y0 + title_h + legend_h), dpi=dpi)
    # closed in pyplot (it stays drawable): a notebook shows the returned figure once, not also
    # when the cell ends, and nothing stays open
    plt.close(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0 - legend_h, y1 + title_h)
    ax.set_axis_off()

    for _, _, (a, b, c, d) in frames:
        ax.add_patch(Rectangle((a, b), c - a, d - b, facecolor=_COLOURS["group"],
                               edgecolor="#888888", lw=0.8, ls="--", zorder=0.5))
    for route in routes:
        ax.add_patch(FancyArrowPatch(path=Path([xy(*p) for p in route.points]),
                                     arrowstyle="-|>", mutation_scale=7, lw=0.8,
                                     color=route.colour, shrinkA=0, shrinkB=0, zorder=1))
    for x, y, _, _, text, kind in labels:
        ax.text(x, y, text, ha="center", va="center", fontsize=FONT[kind],
                style="italic" if kind == "note" else "normal",
                family="monospace" if kind == "path" else "sans-serif",
                color={"note": "#7f3f00", "shape": "#1f4e79"}.get(kind, "#555555"), zorder=5)
    for (u, v), colour in junctions(routes):
        ax.add_patch(Circle(xy(u, v), 0.025, color=colour, zorder=2))

    for item in items.values():
        if item.style == "dummy":
            continue
        x, y = xy(item.u, item.v)
        corner = (x - item.width / 2, y - item.height / 2)
        if item.style == "box":
            colour = _COLOURS[_category(module.get_submodule(item.node.path))]
            ax.add_patch(FancyBboxPatch(corner, item.width, item.height,
                                        boxstyle="round,pad=0,rounding_size=0.05",
                                        facecolor=colour, edgecolor="#222222", lw=0.8, zorder=3))
        elif item.style == "pill":
            ax.add_patch(FancyBboxPatch(corner, item.width, item.height,
                                        boxstyle="round,pad=0,rounding_size=0.08",
                                        facecolor=_COLOURS["operation"], edgecolor="#666666", lw=0.6,
                                        zorder=3))
        elif item.style == "circle":
            ax.add_patch(Circle((x, y), CIRCLE, facecolor="white", edgecolor="#222222", lw=0.8,
                                zorder=3))
        elif item.style == "bar":
            ax.add_patch(FancyBboxPatch(corner, item.width, item.height,
                                        boxstyle="round,pad=0,rounding_size=0.1",
                                        facecolor="white", edgecolor="#222222", lw=0.8, zorder=3))
        heights = [line_pitch(size_) for _, size_, _, _, _ in item.lines]
        top = y + sum(heights) / 2
        for (text, fontsize, weight, family, colour), h in zip(item.lines, heights):
            ax.text(x, top - h / 2, text, ha="center",
                    va="center_baseline" if item.style in ("circle", "bar") else "center",
                    fontsize=fontsize, weight=weight, family=family, color=colour, zorder=4)
            top -= h

    if title:
        ax.text(x0 + 0.1, y1 + title_h - 0.08, title, ha="left", va="top", fontsize=10,
                weight="bold")
    if rows:
        _legend(ax, x0 + 0.1, y0 - 0.12, rows)
    return fig


def _legend_rows(categories: list[str], symbols: list[str], width: float, skips: bool = False
                 ) -> list[list[tuple[str, str, float]]]:
    """The legend's entries -- ``("colour", category, w)`` for a box colour used,
    ``("symbol", symbol, w)`` for a circle used, ``("skip", "", w)`` for the U layout's coloured
    skips -- in rows no wider than ``width`` inches."""
    entries = [("colour", c, 0.14 + text_size(c, 6.5)[0])
               for c in _CATEGORY_NAMES if c in categories]
    entries += [("symbol", s, 0.16 + text_size(SYMBOLS[s], 6.5)[0]) for s in symbols]
    if skips:
        entries.append(("skip", "", 0.3 + text_size(_SKIP_TEXT, 6.5)[0]))
    rows: list[list[tuple[str, str, float]]] = [[]]
    used = 0.0
    for entry in entries:
        if rows[-1] and used + entry[2] > width:
            rows.append([])
            used = 0.0
        rows[-1].append(entry)
        used += entry[2] + 0.18
    return [row for row in rows if row]


def _legend(ax, x: float, y: float, rows: list[list[tuple[str, str, float]]]) -> None:
    """Draw the rows of :func:`_legend_rows` from ``(x, y)`` (centre of the first row) down."""
    for row in rows:
        at = x
        for kind, key, w in row:
            if kind == "colour":
                ax.add_patch(Rectangle((at, y - 0.05), 0.1, 0.1, facecolor=_COLOURS[key],
                                       edgecolor="#444444", lw=0.5, zorder=3))
                text = key
            elif kind == "skip":
                for k, colour in enumerate(SKIP_COLOURS[:3]):
                    ax.plot([at, at + 0.24], [y + 0.04 - 0.04 * k] * 2, color=colour, lw=0.8)
                ax.text(at + 0.3, y, _SKIP_TEXT, ha="left", va="center", fontsize=6.5, zorder=4)
                at += w + 0.18
                continue
            else:
                ax.add_patch(Circle((at + 0.055, y), 0.055, facecolor="white",
                                    edgecolor="#444444", lw=0.5, zorder=3))
                ax.text(at + 0.055, y, key, ha="center", va="center_baseline", fontsize=5.5,
                        weight="bold", zorder=4)
                text = SYMBOLS[key]
            ax.text(at + (0.14 if kind == "colour" else 0.16), y, text, ha="left", va="center",
                    fontsize=6.5, zorder=4)
            at += w + 0.18
        y -= 0.2

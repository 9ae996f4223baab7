"""Schematics of one module, drawn from what its forward pass does (chapters 3 to 8).

:func:`trace_block` runs the module's ``forward`` once, on a shape-only copy (PyTorch's ``meta``
device: no memory, no arithmetic, the module itself untouched), and records what happens at the
module's own level: every call of a sub-module (a box) and every tensor operation written in the
``forward`` itself (a node: ``+``, ``×``, concatenation, sigmoid, softmax, matrix product, split,
pooling, resizing, ...). Reshapes, transposes and paddings only rearrange a tensor; they become
notes on the arrows. Multiplications by a learnable parameter of the module (the scalars of the
residual unit, MDTA's temperature) become their own small nodes, named after the parameter.
:func:`draw_block` lays that graph out left to right (or top to bottom) in layers, with the
longest chain of the forward pass on one straight line and every skip connection routed around
the boxes, and draws it with matplotlib.

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
"""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..model import (
    FSAU,
    GDFN,
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

__all__ = ["BlockNode", "BlockEdge", "BlockGraph", "trace_block", "draw_block"]


# --------------------------------------------------------------------------------------------
# The graph
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockNode:
    """One node of a traced forward pass.

    Attributes
    ----------
    index : position in the graph's ``nodes`` (call order: inputs first, outputs last).
    kind : ``"input"``, ``"output"``, ``"module"`` (a sub-module call) or ``"op"`` (a tensor
        operation written in the traced ``forward``).
    name : the bold label: the paper name of a module (``"RU"``, ``"CA"``, ``"FSAU"``), the kind
        of a PyTorch layer (``"Conv 3×3"``), an operation (``"softmax"``, ``"× skip_scale"``),
        an input's argument name (``"x"``) or the output's ``"RU(x)"``.
    detail : hyper-parameters read from the module and the traced shapes (``"16→8 ch"``,
        ``"depth 3"``, ``"↓2"``); ``""`` for none.
    path : for a module, its path inside the traced module (``"unit1"``, ``"hourglass.skips.0"``);
        ``""`` otherwise.
    call : for a module called more than once in one forward pass (a shared module), which call
        this is (1, 2, ...); 0 for a module called once and for every other node.
    symbol : for the operations drawn as a circle, their symbol (``"+"``, ``"−"``, ``"×"``,
        ``"c"`` for a concatenation, ``"σ"``, ``"@"``); ``""`` for the others.
    group : path of the expanded child (``draw_block(..., expand=...)``) the node belongs to;
        ``""`` at the top level.
    shape : shape of the node's (first) output tensor, batch included.
    """

    index: int
    kind: str
    name: str
    detail: str = ""
    path: str = ""
    call: int = 0
    symbol: str = ""
    group: str = ""
    shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class BlockEdge:
    """A tensor flowing from ``source`` to ``target`` (node indices).

    ``note`` names what happened to it on the way without being drawn as a node (``"reshape"``,
    ``"transpose"``, ``"pad 1 (reflect)"``) and, for an output of a split, which part it is
    (``"[1]"``); ``shape`` is its shape where the target receives it (batch included).
    """

    source: int
    target: int
    note: str = ""
    shape: tuple[int, ...] = ()


@dataclass
class BlockGraph:
    """The data flow of one forward pass of ``module`` at its own level (see
    :func:`trace_block`): ``nodes`` in call order and ``edges`` between them. ``title`` is the
    module's paper name and class, ``groups`` maps each expanded child's path to its label."""

    title: str
    nodes: list[BlockNode]
    edges: list[BlockEdge]
    groups: dict[str, str] = field(default_factory=dict)

    def module_calls(self) -> list[tuple[str, int]]:
        """``(path, call)`` of every sub-module call, in call order."""
        return [(n.path, n.call) for n in self.nodes if n.kind == "module"]

    def predecessors(self, index: int) -> list[int]:
        return [e.source for e in self.edges if e.target == index]

    def successors(self, index: int) -> list[int]:
        return [e.target for e in self.edges if e.source == index]


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


def _tensors(value) -> list[torch.Tensor]:
    """The tensors in ``value`` (a tensor, or lists / tuples / dicts of them), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


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

    def connect(self, inputs: Iterable[torch.Tensor], target: int, ordered: bool = False
                ) -> bool:
        """Edges from the producers of ``inputs`` to ``target``; False if none is known. With
        ``ordered`` (a concatenation), each edge's note says its place: ``1st``, ``2nd``, ..."""
        known = False
        for k, t in enumerate(inputs):
            source = self.producer.get(id(t))
            if source is None:
                continue
            node, note = source
            if ordered:
                note = ", ".join(n for n in (note, _ordinal(k + 1)) if n)
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
        outputs = _tensors(out)
        if not outputs:
            return
        name = _function_name(func)
        inputs = _tensors(args) + _tensors(kwargs)
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
        self.connect(tracked, node, ordered=name in _ORDERED and len(tracked) > 1)
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
                         module=module, in_shapes=[_shape(t) for t in _tensors((args, kwargs))])
        self.connect(_tensors((args, kwargs)), node)
        self.stack.append(("node", node))
        self.depth += 1

    def after(self, module: nn.Module, output) -> None:
        role, node = self.stack.pop()
        if role == "group":
            self.groups.pop()
            return
        self.depth -= 1
        if role == "node":
            self.produce(_tensors(output), node)


#: Operations whose inputs' order matters (and is written on the arrows).
_ORDERED = {"cat", "concat", "concatenate", "stack"}


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


def _as_meta(value):
    """Shapes (tuples of ints) and tensors -> meta tensors; lists / tuples of them kept."""
    if isinstance(value, torch.Tensor):
        return torch.empty(value.shape, dtype=value.dtype if value.is_floating_point()
                           else torch.float32, device="meta")
    if isinstance(value, (tuple, list, torch.Size)) and value and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return torch.empty(tuple(value), device="meta")
    if isinstance(value, (tuple, list)):
        return [_as_meta(v) for v in value]
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
    return _as_meta(first[path])


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
            probe(torch.empty(1, channels, size, size, device="meta"))
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
    return (torch.empty(1, conv.in_channels, size, size, device="meta"),)


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
        args = tuple(_as_meta(v) for v in (inputs if isinstance(inputs, (tuple, list)) and not (
            inputs and all(isinstance(v, int) for v in inputs)) else (inputs,)))
    elif isinstance(module, CTCNet):
        args = (torch.empty(1, module.config.in_channels, size, size, device="meta"),)
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
        tensors = _tensors(arg)
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
    outs = _tensors(output)
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
# Layout: layers along the flow, the longest chain on one line, long edges through dummy slots
# --------------------------------------------------------------------------------------------

_FONT = {"name": 8.0, "detail": 6.5, "path": 6.0, "op": 7.0, "symbol": 9.0, "io": 8.5,
         "note": 6.0, "shape": 6.0}
_PAD = 0.07  # inches of padding around a box's text
_CIRCLE = 0.13  # radius of an operation circle, inches
_TRACK = 0.08  # distance between two vertical runs in one gap, inches
_ALIGNED = 0.01  # two positions closer than this (inches) are drawn in line
_CORRIDOR = 0.12  # distance between two lanes of the U layout's corridor, inches
#: Colours of the U layout's skips, one per source (Okabe-Ito, safe for colour-blind readers).
_SKIP_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
#: Widest left-to-right drawing (inches) that ``direction="auto"`` keeps; a book page shows
#: about 9 inches at full size.
MAX_WIDTH = 9.0
_COLOURS = {"convolution": "#d6e6f5", "resampling": "#e4d9f0", "norm / activation": "#fcefc7",
            "attention": "#f8d3d1", "composite block": "#d7ecd2", "operation": "#ececec",
            "group": "#fafafa"}


@functools.lru_cache(maxsize=4096)
def _text_size(text: str, size: float, weight: str = "normal", family: str = "sans-serif"
               ) -> tuple[float, float]:
    """Width and height in inches of ``text`` as matplotlib lays it out (no renderer needed)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    prop = FontProperties(size=size, weight=weight, family=family)
    w, h, _ = TextToPath().get_text_width_height_descent(text, prop, ismath=False)
    return w / 72.0, max(h, size * 0.75) / 72.0


@dataclass
class _Item:
    """A node as drawn (or a dummy slot of a long edge, ``node is None``)."""

    key: int
    node: BlockNode | None
    style: str  # "box", "pill", "circle", "bar", "io", "dummy"
    width: float = 0.0
    height: float = 0.0
    lines: list[tuple[str, float, str, str, str]] = field(default_factory=list)
    rank: int = 0
    u: float = 0.0  # position along the flow
    v: float = 0.0  # position across the flow


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


def _item(node: BlockNode, n_inputs: int) -> _Item:
    """Size and text lines of a node."""
    if node.kind in ("input", "output"):
        lines = [(node.name, _FONT["io"], "bold", "sans-serif", "black")]
        w, h = _text_size(node.name, _FONT["io"], "bold")
        return _Item(node.index, node, "io", w + 2 * _PAD, h + 2 * _PAD, lines)
    if node.kind == "op":
        if node.symbol:
            lines = [(node.symbol, _FONT["symbol"], "bold", "sans-serif", "black")]
            if node.symbol == "c" and n_inputs > 2:
                side = (n_inputs - 1) * 0.5 + 2 * _CIRCLE
                return _Item(node.index, node, "bar", 2 * _CIRCLE, side, lines)
            return _Item(node.index, node, "circle", 2 * _CIRCLE, 2 * _CIRCLE, lines)
        text = node.name + (f" ({node.detail})" if node.detail else "")
        w, h = _text_size(text, _FONT["op"])
        return _Item(node.index, node, "pill", w + 2 * _PAD, h + 1.6 * _PAD,
                     [(text, _FONT["op"], "normal", "sans-serif", "black")])
    lines = [(node.name, _FONT["name"], "bold", "sans-serif", "black")]
    if node.detail:
        lines.append((node.detail, _FONT["detail"], "normal", "sans-serif", "black"))
    path = node.path + (f" (call {node.call})" if node.call else "")
    if path:
        lines.append((path, _FONT["path"], "normal", "monospace", "#555555"))
    width = max(_text_size(t, s, w, f)[0] for t, s, w, f, _ in lines) + 2 * _PAD
    height = sum(_line_pitch(s) for _, s, _, _, _ in lines) + 1.4 * _PAD
    return _Item(node.index, node, "box", max(width, 0.6), height, lines)


def _line_pitch(size: float) -> float:
    """Distance between two lines of text of ``size`` points in a box, inches."""
    return size * 1.3 / 72.0


def _ranks(graph: BlockGraph) -> dict[int, int]:
    """Layer of every node: as early as its inputs allow, then every node other than an input
    moved as late as its consumers allow (so a skip's scale or conv sits next to where it is
    added, not next to where it starts); all outputs share the last layer."""
    preds = {n.index: graph.predecessors(n.index) for n in graph.nodes}
    succs = {n.index: graph.successors(n.index) for n in graph.nodes}
    rank = {}
    for n in graph.nodes:  # nodes are in call order, a topological order
        rank[n.index] = 0 if n.kind == "input" else 1 + max((rank[p] for p in preds[n.index]),
                                                            default=-1)
    last = max(rank.values()) + (0 if any(n.kind == "output" for n in graph.nodes) else 1)
    for n in graph.nodes:
        if n.kind == "output":
            rank[n.index] = last
    for n in reversed(graph.nodes):
        if n.kind in ("input", "output") or not succs[n.index]:
            continue
        rank[n.index] = max(rank[n.index], min(rank[s] for s in succs[n.index]) - 1)
    return rank


def _spine(graph: BlockGraph) -> list[int]:
    """The chain from an input to an output through the most boxes (modules count 3, operations
    1): it is drawn on one straight line."""
    score: dict[int, float] = {}
    back: dict[int, int | None] = {}
    for n in graph.nodes:
        preds = [p for p in graph.predecessors(n.index) if p in score]
        gain = 3 if n.kind == "module" else 1
        if n.kind == "input":
            score[n.index], back[n.index] = 0.0, None
        elif preds:
            best = max(preds, key=lambda p: (score[p], -p))
            score[n.index], back[n.index] = score[best] + gain, best
    ends = [n.index for n in graph.nodes if n.kind == "output" and n.index in score]
    if not ends:
        return []
    node: int | None = max(ends, key=lambda i: (score[i], -i))
    chain = []
    while node is not None:
        chain.append(node)
        node = back[node]
    return chain[::-1]


def _barycentre(key: int, neighbours: dict[int, list[int]], position: dict[int, int]) -> float:
    """Mean position of ``key``'s neighbours in the adjacent layer (its own if it has none)."""
    near = neighbours[key]
    return sum(position[m] for m in near) / len(near) if near else position[key]


def _isotonic(targets: list[float], weights: list[float]) -> list[float]:
    """Weighted least-squares fit of a non-decreasing sequence (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for t, w in zip(targets, weights):
        blocks.append([t, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    out = []
    for m, _, c in blocks:
        out += [m] * c
    return out


@dataclass
class _Layout:
    items: dict[int, _Item]
    layers: list[list[int]]
    chains: list[tuple[BlockEdge, list[int]]]  # each edge with its item keys, source to target
    vertical: bool


def _layout(graph: BlockGraph, vertical: bool, spine: list[int] | None = None,
            spine_last: bool = False) -> _Layout:
    """Layers, order and positions across the flow of every node (and dummy slot). ``spine``
    (default :func:`_spine`) is pinned on one line; with ``spine_last`` every other node of a
    layer is placed before it (for the U layout, where the other side faces the corridor)."""
    n_in = {n.index: len(graph.predecessors(n.index)) for n in graph.nodes}
    items = {n.index: _item(n, n_in[n.index]) for n in graph.nodes}
    for item in items.values():
        if item.style == "bar" and vertical:
            item.width, item.height = item.height * 2.5, item.width
    rank = _ranks(graph)
    for key, item in items.items():
        item.rank = rank[key]
    n_layers = max(rank.values()) + 1
    layers: list[list[int]] = [[] for _ in range(n_layers)]
    for n in graph.nodes:
        layers[rank[n.index]].append(n.index)

    # long edges pass through a dummy slot in every layer they cross
    chains = []
    next_key = -1
    for e in graph.edges:
        keys = [e.source]
        for r in range(rank[e.source] + 1, rank[e.target]):
            items[next_key] = _Item(next_key, None, "dummy", 0.0, 0.0, rank=r)
            layers[r].append(next_key)
            keys.append(next_key)
            next_key -= 1
        keys.append(e.target)
        chains.append((e, keys))

    def across(item: _Item) -> float:
        return item.width if vertical else item.height

    up: dict[int, list[int]] = {k: [] for k in items}
    down: dict[int, list[int]] = {k: [] for k in items}
    for _, keys in chains:
        for a, b in zip(keys, keys[1:]):
            down[a].append(b)
            up[b].append(a)

    # order within layers: barycentre sweeps, keeping the order with the fewest crossings
    position = {k: i for layer in layers for i, k in enumerate(layer)}

    def crossings() -> int:
        total = 0
        for layer in layers[:-1]:
            pairs = [(position[a], position[b]) for a in layer for b in down[a]]
            total += sum(1 for (a1, b1), (a2, b2) in itertools.combinations(pairs, 2)
                         if (a1 - a2) * (b1 - b2) < 0)
        return total

    best = (crossings(), [list(layer) for layer in layers])
    for sweep in range(12):
        order = range(1, n_layers) if sweep % 2 == 0 else range(n_layers - 2, -1, -1)
        neighbours = up if sweep % 2 == 0 else down
        for r in order:
            layers[r].sort(key=lambda k, near=neighbours: (_barycentre(k, near, position),
                                                          position[k]))
            for i, k in enumerate(layers[r]):
                position[k] = i
        count = crossings()
        if count < best[0]:
            best = (count, [list(layer) for layer in layers])
    layers = best[1]
    chain = _spine(graph) if spine is None else spine
    if spine_last:
        on_spine = set(chain)
        layers = [[k for k in layer if k not in on_spine] + [k for k in layer if k in on_spine]
                  for layer in layers]

    # positions across the flow: every node as close to its neighbours as the order and the
    # spacing allow (weighted isotonic regression per layer), the spine pinned at 0
    # (several inputs are not pinned: they centre themselves on what they feed)
    several = sum(n.kind == "input" for n in graph.nodes) > 1
    spine = {k for k in chain if not (several and items[k].node.kind == "input")}

    def gap(a: _Item, b: _Item) -> float:
        if a.style == "dummy" and b.style == "dummy":
            space = 0.16
        elif a.style == "dummy" or b.style == "dummy":
            space = 0.2
        else:
            space = 0.22
        return (across(a) + across(b)) / 2 + space

    for layer in layers:
        v = 0.0
        for i, k in enumerate(layer):
            if i:
                v += gap(items[layer[i - 1]], items[k])
            items[k].v = v
    pinned: dict[int, float] = {k: 0.0 for k in spine}

    def settle(rounds: int) -> None:
        """Sweeps down and up the layers; each node aims at the mean of its neighbours on the
        side the sweep comes from (a node follows its input down a branch), a pinned node at
        its pin; the last sweep goes downwards."""
        for sweep in range(rounds):
            downward = sweep % 2 == 0
            for layer in layers if downward else layers[::-1]:
                targets, weights, offsets = [], [], []
                offset = 0.0
                for i, k in enumerate(layer):
                    if i:
                        offset += gap(items[layer[i - 1]], items[k])
                    offsets.append(offset)
                    near = (up[k] or down[k]) if downward else (down[k] or up[k])
                    if k in pinned:
                        target, weight = pinned[k], 1000.0
                    elif near:
                        target, weight = sum(items[m].v for m in near) / len(near), 1.0
                    else:
                        target, weight = items[k].v, 0.01
                    targets.append(target - offset)
                    weights.append(weight)
                fitted = _isotonic(targets, weights)
                for k, q, off in zip(layer, fitted, offsets):
                    items[k].v = q + off

    settle(21)
    # every long edge on one straight line: its slots pinned to the outermost of their places,
    # or as close to it as the items already pinned in their layers (the spine, longer edges)
    # allow; an edge that fits nowhere stays as it is
    for _ in range(2):
        for _, keys in sorted(chains, key=lambda ck: -len(ck[1])):
            slots = [k for k in keys if items[k].style == "dummy"]
            if not slots:
                continue
            for k in slots:
                pinned.pop(k, None)
            vs = [items[k].v for k in slots]
            line = max(vs) if sum(vs) >= 0 else min(vs)
            low, high = -math.inf, math.inf
            for k in slots:
                layer = layers[items[k].rank]
                i = layer.index(k)
                for j, other in enumerate(layer):
                    if other == k or other not in pinned:
                        continue
                    space = sum(gap(items[layer[m]], items[layer[m + 1]])
                                for m in range(min(i, j), max(i, j)))
                    if j < i:
                        low = max(low, pinned[other] + space)
                    else:
                        high = min(high, pinned[other] - space)
            if low <= high:
                line = min(max(line, low), high)
                for k in slots:
                    pinned[k] = line
        settle(21)
    return _Layout(items, layers, chains, vertical)


def _room(items, layer: list[int], key: int, v: float, gap) -> bool:
    """Whether item ``key`` can move to ``v`` keeping its order and the spacing in its layer."""
    i = layer.index(key)
    if i > 0 and v - items[layer[i - 1]].v < gap(items[layer[i - 1]], items[key]) - 1e-6:
        return False
    after = layer[i + 1] if i + 1 < len(layer) else None
    return after is None or items[after].v - v >= gap(items[key], items[after]) - 1e-6




# --------------------------------------------------------------------------------------------
# Routing: every edge as an orthogonal polyline; bends in the gaps between layers
# --------------------------------------------------------------------------------------------


@dataclass
class _Route:
    edge: BlockEdge
    points: list[tuple[float, float]]  # (u, v)
    source_label: str = ""
    target_label: str = ""
    vertical_end: bool = False  # enters a circle from above or below
    colour: str = "#333333"


@dataclass(frozen=True)
class _Hop:
    """The part of an edge between two neighbouring layers (``gap`` is the first one's rank):
    straight, bending in a lane of the gap, or (``"side"``) running level with a circle's side
    into it."""

    chain: int
    index: int
    gap: int
    v_start: float
    v_end: float
    source: tuple  # (item, v): bends of one source share a lane
    kind: str

    @property
    def low(self) -> float:
        return min(self.v_start, self.v_end)

    @property
    def high(self) -> float:
        return max(self.v_start, self.v_end)


def _split_note(note: str) -> tuple[str, str]:
    """``"[1], reshape"`` -> (``"[1]"``, ``"reshape"``): which output, and what happened."""
    parts = [p.strip() for p in note.split(",") if p.strip()]
    index = [p for p in parts if p.startswith("[")]
    return (index[0] if index else ""), ", ".join(p for p in parts if not p.startswith("["))


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape[1:]) if len(shape) > 1 else ""


def _route(layout: _Layout, graph: BlockGraph, shapes: bool, extra=None):
    """Positions along the flow and the polylines of all edges.

    ``extra`` maps a node to the edges that reach it from outside this layout (the U layout's
    skips), as ``(tag, v_from)`` pairs: they get ports on the node like the others, and room
    in the gap before it. Returns (routes, layer centres, half extents of the layers along the
    flow, ports of the extra edges: ``tag -> (side, v of the port, u of the run in the gap, u
    where the edge meets the node)``)."""
    extra = extra or {}
    items, layers, vertical = layout.items, layout.layers, layout.vertical

    def along(item: _Item) -> float:
        return item.height if vertical else item.width

    def across(item: _Item) -> float:
        return item.width if vertical else item.height

    half = [max((along(items[k]) for k in layer), default=0.0) / 2 for layer in layers]

    # which side of a node every edge leaves and enters, and at what offset across
    incoming: dict[int, list[tuple]] = {}  # node -> [(chain or tag, v of the previous point)]
    for c, (_, keys) in enumerate(layout.chains):
        incoming.setdefault(keys[-1], []).append((c, items[keys[-2]].v))
    for key, tags in extra.items():
        incoming.setdefault(key, []).extend(tags)
    enter: dict = {}  # chain or tag -> ("left" | "top" | "bottom", offset)
    for key, arrivals in incoming.items():
        item = items[key]
        arrivals.sort(key=lambda a: (a[1], str(a[0])))
        if item.style == "circle":
            for c, v_from in arrivals:
                dv = v_from - item.v
                side = "left"
                if abs(dv) > _ALIGNED and _clear_column(layout, key, v_from):
                    side = "top" if dv < 0 else "bottom"
                enter[c] = (side, 0.0)
            # from the left: the input in line with the circle enters its middle, the others
            # above or below it, far enough apart to be told apart
            lefts = [(c, v_from - item.v) for c, v_from in arrivals if enter[c][0] == "left"]
            if lefts:
                middle = min(lefts, key=lambda cd: abs(cd[1]))[0]
                above = [c for c, dv in lefts if c != middle and dv < 0]
                below = [c for c, dv in lefts if c != middle and dv >= 0]
                for i, c in enumerate(reversed(above)):
                    enter[c] = ("left", -0.09 * (i + 1))
                for i, c in enumerate(below):
                    enter[c] = ("left", 0.09 * (i + 1))
        else:
            # straight in where every source lies in front of the node, else spread evenly
            reach = across(item) / 2 - 0.05
            ports = [v_from - item.v for _, v_from in arrivals]
            if len(arrivals) > 1 and all(abs(p) <= reach for p in ports) and all(
                    b - a >= 0.08 for a, b in zip(ports, ports[1:])):
                for (c, _), p in zip(arrivals, ports):
                    enter[c] = ("left", p)
                continue
            step = min(0.11, across(item) * 0.8 / max(len(arrivals), 1))
            for i, (c, _) in enumerate(arrivals):
                enter[c] = ("left", (i - (len(arrivals) - 1) / 2) * step)
    # every hop between two neighbouring layers, and whether it bends (its two ends differ
    # across the flow); every edge leaves the middle of its source
    hops: list[_Hop] = []
    for c, (_, keys) in enumerate(layout.chains):
        for h, (a, b) in enumerate(zip(keys, keys[1:])):
            side, offset = enter[c] if b == keys[-1] else ("left", 0.0)
            va, vb = items[a].v, items[b].v + offset
            kind = ("straight" if abs(va - vb) < _ALIGNED else
                    "side" if side != "left" else "bend")
            if kind == "straight":
                va = vb
            hops.append(_Hop(c, h, items[a].rank, va, vb, (a, round(va, 6)), kind))

    # lanes: bends in one gap that overlap across get different lanes along the flow; the bends
    # of one source share a lane (a fan-out); lanes ordered to cross as few lines as possible
    n_gaps = max(len(layers) - 1, 0)
    lane: dict[tuple[int, int], int] = {}
    lanes_in_gap = [0] * n_gaps
    for r in range(n_gaps):
        bends = [hop for hop in hops if hop.gap == r and hop.kind == "bend"]
        spans: dict[tuple, list[float]] = {}
        for hop in bends:
            span = spans.setdefault(hop.source, [hop.low, hop.high])
            span[0], span[1] = min(span[0], hop.low), max(span[1], hop.high)
        ends: list[float] = []
        assigned: dict[tuple, int] = {}
        for source, (low, high) in sorted(spans.items(), key=lambda kv: (kv[1], kv[0])):
            free = next((t for t, end in enumerate(ends) if end < low - 0.06), None)
            if free is None:
                ends.append(high)
                free = len(ends) - 1
            ends[free] = high
            assigned[source] = free
        order = _best_lane_order(len(ends), assigned, bends)
        for hop in bends:
            lane[(hop.chain, hop.index)] = order[assigned[hop.source]]
        lanes_in_gap[r] = len(ends)

    # room at the end of a gap for the extra edges that turn into a node of the next layer
    reserve = [0.0] * n_gaps
    runs: dict = {}
    for key, tags in extra.items():
        r = items[key].rank - 1
        along_side = [t for t, _ in tags if enter[t][0] == "left"]
        if r < 0 or not along_side:
            continue
        along_side.sort(key=lambda t: enter[t][1])  # the port nearest the corridor runs last
        for i, t in enumerate(along_side):
            runs[t] = (r, reserve[r] + 0.07 * (i + 1))
        reserve[r] += 0.07 * len(along_side)

    # labels near the source (which output, shape) and near the target (what happened)
    source_label: dict[int, str] = {}
    target_label: dict[int, str] = {}
    shown_shape: set[tuple] = set()
    for c, (edge, keys) in enumerate(layout.chains):
        index, happened = _split_note(edge.note)
        port = (keys[0], index)
        source_label[c] = ""
        if shapes and port not in shown_shape and not happened:
            source_label[c] = _shape_text(edge.shape)
            shown_shape.add(port)
        if happened and shapes:
            happened = f"{happened} → {_shape_text(edge.shape)}"
        target_label[c] = " ".join(t for t in (index, happened) if t)

    def width(text: str) -> float:
        return _text_size(text, _FONT["note"])[0] if text else 0.0

    first_gap = {c: items[keys[0]].rank for c, (_, keys) in enumerate(layout.chains)}
    last_gap = {c: items[keys[-1]].rank - 1 for c, (_, keys) in enumerate(layout.chains)}
    src_zone = [0.0] * n_gaps
    tgt_zone = [0.0] * n_gaps
    for c in range(len(layout.chains)):
        if source_label[c]:
            src_zone[first_gap[c]] = max(src_zone[first_gap[c]], width(source_label[c]) + 0.06)
        if target_label[c]:
            tgt_zone[last_gap[c]] = max(tgt_zone[last_gap[c]], width(target_label[c]) + 0.1)
    if vertical:  # labels sit beside the lines, not along them
        src_zone = [0.12 if z else 0.0 for z in src_zone]
        tgt_zone = [0.12 if z else 0.0 for z in tgt_zone]
    gaps = [0.26 + lanes_in_gap[r] * _TRACK + src_zone[r] + tgt_zone[r] + reserve[r]
            for r in range(n_gaps)]
    centre = [0.0] * len(layers)
    for r in range(1, len(layers)):
        centre[r] = centre[r - 1] + half[r - 1] + gaps[r - 1] + half[r]
    for item in items.values():
        item.u = centre[item.rank]

    def lane_u(r: int, t: int) -> float:
        start = centre[r] + half[r] + 0.13 + src_zone[r]
        return start + t * _TRACK

    routes = []
    hop_at = {(hop.chain, hop.index): hop for hop in hops}
    for c, (edge, keys) in enumerate(layout.chains):
        points: list[tuple[float, float]] = []
        for h, (a, b) in enumerate(zip(keys, keys[1:])):
            ia, ib, hop = items[a], items[b], hop_at[(c, h)]
            va, vb = hop.v_start, hop.v_end
            if ia.style == "dummy":  # straight through the dummy's layer
                points.append((ia.u - half[ia.rank], va))
            points.append((ia.u + (half[ia.rank] if ia.style == "dummy" else along(ia) / 2), va))
            if hop.kind == "bend":
                u = lane_u(ia.rank, lane[(c, h)])
                points += [(u, va), (u, vb)]
            if ib.style == "dummy":
                points.append((ib.u - half[ib.rank], vb))
            elif hop.kind == "side":  # along the flow level with the circle's side, then in
                points += [(ib.u, va), (ib.u, ib.v + (_CIRCLE if va > ib.v else -_CIRCLE))]
            else:
                end_u = ib.u - along(ib) / 2
                if ib.style == "circle":
                    dv = vb - ib.v
                    end_u = ib.u - math.sqrt(max(_CIRCLE ** 2 - dv ** 2, 0.0))
                points.append((end_u, vb))
        clean = [points[0]]
        for p in points[1:]:
            if abs(p[0] - clean[-1][0]) > 1e-9 or abs(p[1] - clean[-1][1]) > 1e-9:
                clean.append(p)
        routes.append(_Route(edge, clean, source_label[c], target_label[c],
                             hop_at[(c, len(keys) - 2)].kind == "side"))
    ports = {}
    for key, tags in extra.items():
        item = items[key]
        for t, _ in tags:
            side, offset = enter[t]
            v = item.v + offset
            if side != "left":  # into a circle from the side, level with it
                ports[t] = (side, item.v + (-_CIRCLE if side == "top" else _CIRCLE), item.u,
                            item.u)
                continue
            meet = item.u - along(item) / 2
            if item.style == "circle":
                meet = item.u - math.sqrt(max(_CIRCLE ** 2 - offset ** 2, 0.0))
            r, back = runs.get(t, (item.rank - 1, 0.07))
            ports[t] = (side, v, centre[r + 1] - half[r + 1] - back if r >= 0 else meet - back,
                        meet)
    return routes, centre, half, ports


def _clear_column(layout: _Layout, key: int, v_from: float) -> bool:
    """Whether a line can run along the flow at ``v_from`` into the column of item ``key`` and
    then across into it (from above or below) without touching another item of its layer."""
    items = layout.items
    item = items[key]
    lo, hi = sorted((v_from, item.v))
    for other in layout.layers[item.rank]:
        if other == key:
            continue
        o = items[other]
        reach = (o.width if layout.vertical else o.height) / 2 + 0.06
        if o.v + reach >= lo and o.v - reach <= hi:
            return False
    return True


def _best_lane_order(n: int, assigned: dict, bends: list[_Hop]) -> list[int]:
    """A permutation of the ``n`` lanes of one gap with the fewest crossings between its
    bends: a bend runs from the gap's start to its lane at ``v_start``, along its lane, and on
    from its lane at ``v_end``; it crosses every other bend's lane that it passes."""
    if n <= 1 or n > 6:
        return list(range(n))

    def cost(order) -> int:
        total = 0
        for a, b in itertools.permutations(bends, 2):
            ta, tb = order[assigned[a.source]], order[assigned[b.source]]
            if ta == tb:
                continue
            if tb > ta and a.low < b.v_start < a.high:
                total += 1
            if tb < ta and a.low < b.v_end < a.high:
                total += 1
        return total

    return list(min(itertools.permutations(range(n)), key=lambda o: (cost(o), o)))

# --------------------------------------------------------------------------------------------
# The U layout of an encoder-decoder: down the left, up the right, skips across the middle
# --------------------------------------------------------------------------------------------


def _fold_point(graph: BlockGraph, spine: list[int]) -> int | None:
    """Where an encoder-decoder's spine turns: the last spine module at the lowest resolution,
    if the resolution falls by at least 4× before it and rises by 4× after it; else None.
    (Only module outputs count: an operation may hold a reshaped tensor, e.g. MDTA's.)"""
    by_index = {n.index: n for n in graph.nodes}
    sides = [by_index[k].shape[-1] if len(by_index[k].shape) == 4
             and by_index[k].kind in ("module", "input") else None for k in spine]
    known = [s for s in sides if s is not None]
    if len(known) < 3:
        return None
    low = min(known)
    turn = max(i for i, s in enumerate(sides) if s == low)
    before = [s for s in sides[:turn] if s is not None]
    after = [s for s in sides[turn + 1:] if s is not None]
    if not before or not after or max(before) < 4 * low or max(after) < 4 * low:
        return None
    return turn


def _subgraph(graph: BlockGraph, keep: set[int]) -> BlockGraph:
    return BlockGraph(graph.title, [n for n in graph.nodes if n.index in keep],
                      [e for e in graph.edges if e.source in keep and e.target in keep],
                      graph.groups)


def _fold(graph: BlockGraph, shapes: bool):
    """The U layout, top to bottom: the encoder half (the spine up to its lowest resolution,
    with the inputs) flows down a left column, the decoder half flows back up a right column,
    and every tensor from the left to the right (skip connections, the global residual) runs
    across a corridor between them, one lane per source. Returns (items, routes) in the
    top-to-bottom frame, or None when the spine does not turn (see :func:`_fold_point`)."""
    spine = _spine(graph)
    turn = _fold_point(graph, spine) if spine else None
    if turn is None:
        return None
    left = set(spine[: turn + 1]) | {n.index for n in graph.nodes if n.kind == "input"}
    right = {n.index for n in graph.nodes} - left
    halves = []
    for keep, chain in ((left, spine[: turn + 1]), (right, spine[turn + 1:])):
        sub = _subgraph(graph, keep)
        layout = _layout(sub, vertical=True, spine=[k for k in chain if k in keep],
                         spine_last=True)
        halves.append((sub, layout))
    (l_sub, l_layout), (r_sub, r_layout) = halves
    cross = [e for e in graph.edges if e.source in left and e.target in right]
    # the skips reach the right half from the corridor, left of everything there
    far = min(i.v - i.width / 2 for i in r_layout.items.values()) - 1.0
    extra: dict[int, list] = {}
    for k, e in enumerate(cross):
        extra.setdefault(e.target, []).append((("skip", k), far))
    l_routes, l_centre, _, _ = _route(l_layout, l_sub, shapes)
    r_routes, r_centre, _, ports = _route(r_layout, r_sub, shapes, extra)

    # the right half flows upwards: its first layer level with the left half's last
    bottom = l_centre[-1]

    def flip(u: float) -> float:
        return bottom - (u - r_centre[0])

    def extent(layout: _Layout, side: int) -> float:
        return max(side * (i.v + side * i.width / 2) for i in layout.items.values()
                   if i.style != "dummy")

    sources = list(dict.fromkeys(e.source for e in cross))
    l_edge = extent(l_layout, 1)
    shift = l_edge + 0.35 + len(sources) * _CORRIDOR + 0.2 + extent(r_layout, -1)

    items: dict[int, _Item] = {}
    for key, item in l_layout.items.items():
        items[key] = item
    offset = min(items) - 1 if items else -1  # dummy keys of the right half moved below
    renamed = {}
    for key, item in r_layout.items.items():
        new = key if key >= 0 else key + offset
        renamed[key] = new
        item.key, item.u, item.v = new, flip(item.u), item.v + shift
        items[new] = item
    routes = list(l_routes)
    for route in r_routes:
        route.points = [(flip(u), v + shift) for u, v in route.points]
        routes.append(route)

    # lanes ordered so that a source whose tensor goes further down sits further out
    def span(source: int) -> tuple[float, float]:
        us = [items[source].u] + [items[e.target].u for e in cross if e.source == source]
        return min(us), max(us)

    # a source's run from the left crosses the lanes nearer the left than its own; its runs into
    # the right cross the lanes beyond its own: the lane order that crosses least is kept
    def crossings(order: tuple[int, ...]) -> int:
        lane = {src: k for k, src in enumerate(order)}
        total = 0
        for a, b in itertools.permutations(order, 2):
            lo, hi = span(a)
            if lane[a] < lane[b] and lo < items[b].u < hi:
                total += 1
            if lane[a] > lane[b]:
                total += sum(1 for e in cross if e.source == b and lo < items[e.target].u < hi)
        return total

    candidates = itertools.permutations(sources) if len(sources) <= 7 else [tuple(sources)]
    best = min(candidates, key=lambda order: (crossings(order), order))
    lanes = {src: k for k, src in enumerate(best)}
    # a source's shape is written once: on its arrow inside the left half if it has one
    labelled = {e.source for e in l_sub.edges} if shapes else set(sources)
    for k, e in enumerate(cross):
        s, t = items[e.source], items[e.target]
        shape = "" if e.source in labelled else _shape_text(e.shape)
        labelled.add(e.source)
        lane_v = l_edge + 0.2 + lanes[e.source] * _CORRIDOR
        side, v, run_u, meet_u = ports[("skip", k)]
        index, happened = _split_note(e.note)
        label = " ".join(x for x in (index, happened) if x)
        start = [(s.u, s.v + s.width / 2), (s.u, lane_v)]
        if side == "left":  # along the gap under the node, then up into it
            path = start + [(flip(run_u), lane_v), (flip(run_u), v + shift),
                            (flip(meet_u), v + shift)]
        else:  # level with a circle, into its side
            path = start + [(t.u, lane_v), (t.u, v + shift)]
        routes.append(_Route(e, path, shape, label,
                             side != "left", _SKIP_COLOURS[lanes[e.source] % len(_SKIP_COLOURS)]))
    return items, routes


# --------------------------------------------------------------------------------------------
# draw_block
# --------------------------------------------------------------------------------------------

_SKIP_TEXT = "from the left column to the right (a colour per source)"
#: The box colours' names, in legend order.
_CATEGORY_NAMES = ("convolution", "resampling", "norm / activation", "attention",
                   "composite block", "operation")


def _junctions(routes: list[_Route]) -> list[tuple[tuple[float, float], str]]:
    """Points where the copies of one tensor part ways (a fan-out), with their line's colour:
    there a dot is drawn."""
    by_start: dict[tuple, list[list[tuple[float, float]]]] = {}
    for route in routes:  # the parts of a split are different tensors: no dot between them
        start = (round(route.points[0][0], 6), round(route.points[0][1], 6))
        key = (start, _split_note(route.edge.note)[0], route.colour)
        by_start.setdefault(key, []).append(route.points)
    dots = set()
    for (_, _, colour), paths in by_start.items():
        for p, q in itertools.combinations(paths, 2):
            k = 0
            while k + 1 < min(len(p), len(q)) and p[k + 1] == q[k + 1]:
                k += 1
            if k + 1 >= min(len(p), len(q)):
                continue
            c, a, b = p[k], p[k + 1], q[k + 1]
            da = (a[0] - c[0], a[1] - c[1])
            db = (b[0] - c[0], b[1] - c[1])
            same = abs(da[0] * db[1] - da[1] * db[0]) < 1e-9 and da[0] * db[0] + da[1] * db[1] > 0
            point = (a if math.hypot(*da) < math.hypot(*db) else b) if same else c
            dots.add(((round(point[0], 6), round(point[1], 6)), colour))
    return sorted(dots)



def _rects_overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]
                   ) -> bool:
    """Whether two rectangles ``(x0, y0, x1, y1)`` overlap."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place_labels(items: dict[int, _Item], routes: list[_Route], xy, obstacles=(), frames=()):
    """Positions of the arrow labels in figure inches, ``(x, y, w, h, text, kind)`` with
    ``(x, y)`` the centre: each label beside its own line (the last segments for what happened
    to a tensor, the first for its shape), at the first of a few candidate places that touches
    no box, no line and no label already placed."""
    boxes = []
    for item in items.values():
        if item.style != "dummy":
            x, y = xy(item.u, item.v)
            boxes.append((x - item.width / 2, y - item.height / 2, x + item.width / 2,
                          y + item.height / 2))
    lines = []
    for route in routes:
        pts = [xy(*p) for p in route.points]
        for (xa, ya), (xb, yb) in zip(pts, pts[1:]):
            lines.append((min(xa, xb) - 0.01, min(ya, yb) - 0.01, max(xa, xb) + 0.01,
                          max(ya, yb) + 0.01))
    lines += [(min(a, c) - 0.01, min(b, d) - 0.01, max(a, c) + 0.01, max(b, d) + 0.01)
              for a, b, c, d in obstacles]
    placed: list[tuple[float, float, float, float]] = []
    out = []

    def candidates(pts, w: float, h: float, from_end: bool):
        segments = list(zip(pts, pts[1:]))
        if from_end:
            segments = [(b, a) for a, b in reversed(segments)]  # walk back from the target
        for a, b in segments:
            length = math.hypot(b[0] - a[0], b[1] - a[1])
            if length < 1e-6:
                continue
            for t in (0.1, 0.35, 0.6, 0.85):
                cx, cy = a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t
                if abs(b[1] - a[1]) < 1e-9:  # horizontal: above, then below
                    along = (cx + (w / 2 + 0.04) * (-1 if (b[0] - a[0]) > 0 else 1)
                             if from_end else cx + (w / 2 + 0.04) * (1 if b[0] > a[0] else -1))
                    along = cx if length < w + 0.1 else along
                    yield along, cy + h / 2 + 0.025
                    yield along, cy - h / 2 - 0.025
                else:  # vertical: right, then left
                    yield cx + w / 2 + 0.04, cy
                    yield cx - w / 2 - 0.04, cy

    for _, text, (a, b, c, d) in frames:  # in the band at the frame's top or bottom
        w, h = _text_size(text, _FONT["path"], family="monospace")
        w, h = w + 0.03, h + 0.04
        spots = [(a + 0.05 + w / 2, d - 0.12), (c - 0.05 - w / 2, d - 0.12),
                 (a + 0.05 + w / 2, b + 0.12), (c - 0.05 - w / 2, b + 0.12)]
        for cx, cy in spots:
            rect = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            if not any(_rects_overlap(rect, o) for o in boxes + placed + lines):
                break
        else:
            cx, cy = spots[0]
        placed.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        out.append((cx, cy, w, h, text, "path"))
    for route in routes:
        pts = [xy(*p) for p in route.points]
        for text, kind, from_end in ((route.target_label, "note", True),
                                     (route.source_label, "shape", False)):
            if not text:
                continue
            w, h = _text_size(text, _FONT[kind])
            w, h = w + 0.03, h + 0.04  # what the renderer adds around the glyphs, and air
            first = None
            for cx, cy in candidates(pts, w, h, from_end):
                rect = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                first = first or (cx, cy)
                if not any(_rects_overlap(rect, o) for o in boxes + placed + lines):
                    break
            else:
                cx, cy = first if first else pts[-1]
            placed.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
            out.append((cx, cy, w, h, text, kind))
    return out


def draw_block(module: nn.Module, inputs=None, *, network: nn.Module | None = None,
               size: int = 128, expand=None, shapes: bool = False, direction: str = "auto",
               title: str | None = None, legend: bool = True):
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
        more), or ``"auto"``: ``"LR"`` when that is at most :data:`MAX_WIDTH` inches wide, else
        ``"U"`` (without ``expand``) or ``"TB"``.
    title : the title above the drawing; default the module's paper name and class.
    legend : add the lines that explain the colours and symbols used.

    Text sizes are fixed in points and the figure is sized to the drawing (one axis unit is
    one inch), so every schematic has the same type size whatever its extent: save it with
    ``fig.savefig(path, dpi=...)`` and it keeps its proportions. Raises ``ValueError`` (one
    line) for an unknown ``direction`` and for the bad inputs :func:`trace_block` refuses.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle
    from matplotlib.path import Path

    if direction not in ("LR", "TB", "U", "auto"):
        raise ValueError(f"direction must be 'LR', 'TB', 'U' or 'auto', got {direction!r}")
    graph = trace_block(module, inputs, network=network, size=size, expand=expand)
    items, routes, vertical = _arrange(graph, shapes, direction)

    def xy(u: float, v: float) -> tuple[float, float]:
        return (v, -u) if vertical else (u, -v)

    frames = _frames(graph, items, xy)
    frame_lines = [edge for _, _, (a, b, c, d) in frames
                   for edge in ((a, b, c, b), (a, d, c, d), (a, b, a, d), (c, b, c, d))]
    labels = _place_labels(items, routes, xy, frame_lines, frames)

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
        x1 = max(x1, x0 + 0.3 + _text_size(title, 10, "bold")[0])
    legend_h = 0.1 + 0.2 * len(rows) if rows else 0.0
    fig = plt.figure(figsize=(x1 - x0, y1 - y0 + title_h + legend_h))
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
        ax.text(x, y, text, ha="center", va="center", fontsize=_FONT[kind],
                style="italic" if kind == "note" else "normal",
                family="monospace" if kind == "path" else "sans-serif",
                color={"note": "#7f3f00", "shape": "#1f4e79"}.get(kind, "#555555"), zorder=5)
    for (u, v), colour in _junctions(routes):
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
            ax.add_patch(Circle((x, y), _CIRCLE, facecolor="white", edgecolor="#222222", lw=0.8,
                                zorder=3))
        elif item.style == "bar":
            ax.add_patch(FancyBboxPatch(corner, item.width, item.height,
                                        boxstyle="round,pad=0,rounding_size=0.1",
                                        facecolor="white", edgecolor="#222222", lw=0.8, zorder=3))
        heights = [_line_pitch(size_) for _, size_, _, _, _ in item.lines]
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


def _arrange(graph: BlockGraph, shapes: bool, direction: str):
    """Items (placed) and routes of ``graph`` for ``direction``; returns (items, routes,
    vertical)."""
    if direction == "U" or direction == "auto":
        if direction == "auto":
            layout = _layout(graph, vertical=False)
            routes, centre, half, _ = _route(layout, graph, shapes)
            if centre[-1] + half[-1] + half[0] <= MAX_WIDTH:
                return layout.items, routes, False
        folded = None if graph.groups else _fold(graph, shapes)
        if folded is not None:
            return folded[0], folded[1], True
        direction = "TB"
    layout = _layout(graph, vertical=direction == "TB")
    routes, _, _, _ = _route(layout, graph, shapes)
    return layout.items, routes, direction == "TB"


def _frames(graph: BlockGraph, items: dict[int, _Item], xy):
    """``(path, label, (x0, y0, x1, y1))`` of the dashed frame around each expanded child; the
    frame leaves a band at its top and bottom for its label (placed by :func:`_place_labels`)."""
    pad, band = 0.12, 0.2
    frames = []
    for path, label in graph.groups.items():
        members = [items[n.index] for n in graph.nodes if n.group == path]
        xs = [xy(i.u, i.v)[0] + s * i.width / 2 for i in members for s in (-1, 1)]
        ys = [xy(i.u, i.v)[1] + s * i.height / 2 for i in members for s in (-1, 1)]
        frames.append((path, label, (min(xs) - pad, min(ys) - band, max(xs) + pad,
                                     max(ys) + band)))
    return frames


def _legend_rows(categories: list[str], symbols: list[str], width: float, skips: bool = False
                 ) -> list[list[tuple[str, str, float]]]:
    """The legend's entries -- ``("colour", category, w)`` for a box colour used,
    ``("symbol", symbol, w)`` for a circle used, ``("skip", "", w)`` for the U layout's coloured
    skips -- in rows no wider than ``width`` inches."""
    entries = [("colour", c, 0.14 + _text_size(c, 6.5)[0])
               for c in _CATEGORY_NAMES if c in categories]
    entries += [("symbol", s, 0.16 + _text_size(SYMBOLS[s], 6.5)[0]) for s in symbols]
    if skips:
        entries.append(("skip", "", 0.3 + _text_size(_SKIP_TEXT, 6.5)[0]))
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
    from matplotlib.patches import Circle, Rectangle

    for row in rows:
        at = x
        for kind, key, w in row:
            if kind == "colour":
                ax.add_patch(Rectangle((at, y - 0.05), 0.1, 0.1, facecolor=_COLOURS[key],
                                       edgecolor="#444444", lw=0.5, zorder=3))
                text = key
            elif kind == "skip":
                for k, colour in enumerate(_SKIP_COLOURS[:3]):
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

"""A data-flow graph of one forward pass (:class:`BlockGraph`) and its layout for drawing.

The graph comes from :func:`ctcnet.course.schematic.trace_block`; the functions here place its
nodes and route its edges, in inches, for :func:`ctcnet.course.schematic.draw_block`:

* layers along the flow (every node as early as its inputs allow, then as late as its
  consumers allow), an order in each layer with few crossings (barycentre sweeps), and positions
  across the flow that keep the longest chain (the *spine*) on one straight line and every long
  edge on one line of its own (weighted isotonic regression per layer);
* orthogonal routes: an edge bends only in the gaps between layers, in a lane of its own, so no
  line crosses a box; circles are entered from the side where the column is free;
* the U layout of an encoder-decoder (the spine falls and rises in resolution by 4x or more):
  the first half down a left column, the second half up a right column, every tensor between
  them across a corridor, one lane and one colour per source;
* labels beside their own lines, at the first place that touches nothing else.

Coordinates: ``u`` along the flow, ``v`` across it; ``vertical`` layouts map them to ``x = v,
y = -u``, the others to ``x = u, y = -v``. Nothing here imports torch.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath

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
    """The data flow of one forward pass of a module at its own level (see
    :func:`ctcnet.course.schematic.trace_block`): ``nodes`` in call order and ``edges`` between
    them. ``title`` is the module's paper name and class, ``groups`` maps each expanded child's
    path to its label."""

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
# Layout: layers along the flow, the longest chain on one line, long edges through dummy slots
# --------------------------------------------------------------------------------------------

FONT = {"name": 8.0, "detail": 6.5, "path": 6.0, "op": 7.0, "symbol": 9.0, "io": 8.5,
         "note": 6.0, "shape": 6.0}
_PAD = 0.07  # inches of padding around a box's text
CIRCLE = 0.13  # radius of an operation circle, inches
_TRACK = 0.08  # distance between two vertical runs in one gap, inches
_ALIGNED = 0.01  # two positions closer than this (inches) are drawn in line
_CORRIDOR = 0.12  # distance between two lanes of the U layout's corridor, inches
#: Colours of the U layout's skips, one per source (Okabe-Ito, safe for colour-blind readers).
SKIP_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
#: Widest left-to-right drawing (inches) that ``direction="auto"`` keeps; a book page shows
#: about 9 inches at full size.
MAX_WIDTH = 9.0


@functools.lru_cache(maxsize=4096)
def text_size(text: str, size: float, weight: str = "normal", family: str = "sans-serif"
               ) -> tuple[float, float]:
    """Width and height in inches of ``text`` as matplotlib lays it out (no renderer needed)."""

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



def _item(node: BlockNode, n_inputs: int) -> _Item:
    """Size and text lines of a node."""
    if node.kind in ("input", "output"):
        lines = [(node.name, FONT["io"], "bold", "sans-serif", "black")]
        w, h = text_size(node.name, FONT["io"], "bold")
        return _Item(node.index, node, "io", w + 2 * _PAD, h + 2 * _PAD, lines)
    if node.kind == "op":
        if node.symbol:
            lines = [(node.symbol, FONT["symbol"], "bold", "sans-serif", "black")]
            if node.symbol == "c" and n_inputs > 2:
                side = (n_inputs - 1) * 0.5 + 2 * CIRCLE
                return _Item(node.index, node, "bar", 2 * CIRCLE, side, lines)
            return _Item(node.index, node, "circle", 2 * CIRCLE, 2 * CIRCLE, lines)
        text = node.name + (f" ({node.detail})" if node.detail else "")
        w, h = text_size(text, FONT["op"])
        return _Item(node.index, node, "pill", w + 2 * _PAD, h + 1.6 * _PAD,
                     [(text, FONT["op"], "normal", "sans-serif", "black")])
    lines = [(node.name, FONT["name"], "bold", "sans-serif", "black")]
    if node.detail:
        lines.append((node.detail, FONT["detail"], "normal", "sans-serif", "black"))
    path = node.path + (f" (call {node.call})" if node.call else "")
    if path:
        lines.append((path, FONT["path"], "normal", "monospace", "#555555"))
    width = max(text_size(t, s, w, f)[0] for t, s, w, f, _ in lines) + 2 * _PAD
    height = sum(line_pitch(s) for _, s, _, _, _ in lines) + 1.4 * _PAD
    return _Item(node.index, node, "box", max(width, 0.6), height, lines)


def line_pitch(size: float) -> float:
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
        return text_size(text, FONT["note"])[0] if text else 0.0

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
                points += [(ib.u, va), (ib.u, ib.v + (CIRCLE if va > ib.v else -CIRCLE))]
            else:
                end_u = ib.u - along(ib) / 2
                if ib.style == "circle":
                    dv = vb - ib.v
                    end_u = ib.u - math.sqrt(max(CIRCLE ** 2 - dv ** 2, 0.0))
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
                ports[t] = (side, item.v + (-CIRCLE if side == "top" else CIRCLE), item.u,
                            item.u)
                continue
            meet = item.u - along(item) / 2
            if item.style == "circle":
                meet = item.u - math.sqrt(max(CIRCLE ** 2 - offset ** 2, 0.0))
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
                             side != "left", SKIP_COLOURS[lanes[e.source] % len(SKIP_COLOURS)]))
    return items, routes


# --------------------------------------------------------------------------------------------
# Labels, fan-out dots, arrangement
# --------------------------------------------------------------------------------------------


def junctions(routes: list[_Route]) -> list[tuple[tuple[float, float], str]]:
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


def place_labels(items: dict[int, _Item], routes: list[_Route], xy, obstacles=(), frames=()):
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

    for _, text, (a, b, c, d) in frames:
        w, h = text_size(text, FONT["path"], family="monospace")
        w, h = w + 0.03, h + 0.04
        # just outside a corner (above, then below), else just inside one
        spots = [(a + w / 2, d + h / 2 + 0.01), (c - w / 2, d + h / 2 + 0.01),
                 (a + w / 2, b - h / 2 - 0.01), (c - w / 2, b - h / 2 - 0.01),
                 (a + 0.05 + w / 2, d - h / 2 - 0.01), (c - 0.05 - w / 2, b + h / 2 + 0.01)]
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
            w, h = text_size(text, FONT[kind])
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


def arrange(graph: BlockGraph, shapes: bool, direction: str):
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


def group_frames(graph: BlockGraph, items: dict[int, _Item], xy):
    """``(path, label, (x0, y0, x1, y1))`` of the dashed frame around each expanded child; the
    frame stays close to its members, so that it does not run along the lines bending in the
    gaps around it; its label is placed by :func:`place_labels`."""
    pad, band = 0.12, 0.07
    frames = []
    for path, label in graph.groups.items():
        members = [items[n.index] for n in graph.nodes if n.group == path]
        xs = [xy(i.u, i.v)[0] + s * i.width / 2 for i in members for s in (-1, 1)]
        ys = [xy(i.u, i.v)[1] + s * i.height / 2 for i in members for s in (-1, 1)]
        frames.append((path, label, (min(xs) - pad, min(ys) - band, max(xs) + pad,
                                     max(ys) + band)))
    return frames

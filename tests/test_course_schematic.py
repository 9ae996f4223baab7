"""Tests for ctcnet.course.schematic: the drawing is the record of the module's forward pass."""

import io
import itertools

import matplotlib
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import Circle, FancyBboxPatch
from torch import nn

from ctcnet import build_model
from ctcnet.course import _dataflow
from ctcnet.course.schematic import draw_block, trace_block
from ctcnet.model import ResidualUnit

matplotlib.use("Agg")


def _modules(model):
    """Every module the book draws, from the tiny network."""
    lgcm = model.encoder[1]
    block = lgcm.transformer[0]
    return {
        "RU": lgcm.local_in.unit1, "CA": lgcm.local_in.attention, "LB": lgcm.local_in,
        "FSAU": lgcm.fsau, "hourglass": lgcm.fsau.hourglass, "MDTA": block.attn,
        "GDFN": block.ffn, "TransformerBlock": block, "LGCM": lgcm, "FRM": model.bottleneck[0],
        "FEU": model.bottleneck[0].feu, "MFFU": model.fusion[1], "Downsampling": model.downsample[0],
        "CTCNet": model,
    }


NAMES = list(_modules(build_model("tiny")))


def _calls_at_top_level(module: nn.Module, *args) -> list[tuple[str, int]]:
    """(path, call number) of every sub-module call made by ``module.forward`` itself, recorded
    independently of the schematic: hooks on the real module and a real forward pass."""
    paths = {id(m): name for name, m in module.named_modules()}
    depth = [0]
    calls: list[tuple[str, int]] = []
    counts: dict[str, int] = {}

    def before(m, _args):
        if depth[0] == 0 and not isinstance(m, nn.Identity):
            name = paths[id(m)]
            counts[name] = counts.get(name, 0) + 1
            calls.append((name, counts[name]))
        depth[0] += 1

    def after(m, _args, _out):
        depth[0] -= 1

    handles = []
    for m in module.modules():
        if m is not module:
            handles += [m.register_forward_pre_hook(before), m.register_forward_hook(after)]
    try:
        with torch.no_grad():
            module(*args)
    finally:
        for h in handles:
            h.remove()
    shared = {name for name, n in counts.items() if n > 1}
    return [(name, k if name in shared else 0) for name, k in calls]


def _real_inputs(model, module, size=64):
    """The real arguments ``module`` receives in ``model`` on a ``size`` image."""
    if module is model:
        return (torch.rand(1, 3, size, size) * 2 - 1,)
    seen = []
    handle = module.register_forward_pre_hook(lambda m, a: seen.append(a) if not seen else None)
    try:
        with torch.no_grad():
            model(torch.rand(1, 3, size, size) * 2 - 1)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("name", NAMES)
def test_nodes_are_exactly_the_calls_of_the_forward_pass(tiny, name):
    module = _modules(tiny)[name]
    graph = trace_block(module, network=tiny, size=64)
    expected = _calls_at_top_level(module, *_real_inputs(tiny, module))
    assert graph.module_calls() == expected
    # every parameter is drawn: inside a box, or as a learnable factor "× name"
    drawn = {id(p) for path, _ in expected for p in module.get_submodule(path).parameters()}
    factors = {n.name.split(" ", 1)[1] for n in graph.nodes if n.kind == "op"
               and n.name.startswith("× ") and not n.symbol}
    for pname, p in module.named_parameters():
        assert id(p) in drawn or pname in factors, pname


def test_the_drawing_follows_a_change_of_the_model():
    plain = build_model("tiny")
    graph = trace_block(plain.encoder[0], network=plain, size=64)
    assert "fsau" in {p for p, _ in graph.module_calls()}
    ablated = build_model("tiny", use_fsau=False)
    graph = trace_block(ablated.encoder[0], network=ablated, size=64)
    assert [p for p, _ in graph.module_calls()] == ["local_in", "local_out", "transformer"]

    class TwiceExpanded(ResidualUnit):  # a forward that differs from the class it extends
        def forward(self, x):
            body = self.conv_expand(self.act(self.conv_reduce(x)))
            return self.skip_scale * x + self.residual_scale * torch.sigmoid(body)

    graph = trace_block(TwiceExpanded(8))
    assert [n.symbol for n in graph.nodes if n.symbol] == ["σ", "+"]
    unchanged = trace_block(ResidualUnit(8))
    assert [n.symbol for n in unchanged.nodes if n.symbol] == ["+"]


def test_a_shared_module_is_drawn_once_per_call(tiny):
    frm = trace_block(tiny.bottleneck[0], network=tiny, size=64)
    assert frm.module_calls() == [("local_in", 0), ("fsau", 0), ("local_mid", 1), ("feu", 0),
                                  ("local_mid", 2)]
    net = trace_block(tiny, size=64)
    assert sum(path == "resampler.e1_down" for path, _ in net.module_calls()) == 3


def test_operations_match_the_equations(tiny):
    lgcm = tiny.encoder[1]
    ru = trace_block(lgcm.local_in.unit1)
    assert sorted(n.name for n in ru.nodes if n.kind == "op") == [
        "+", "× residual_scale", "× skip_scale"]
    ca = trace_block(lgcm.local_in.attention)
    assert [n.name for n in ca.nodes if n.kind == "op"] == ["global avg pool", "ReLU", "σ", "×"]
    mdta = trace_block(lgcm.transformer[0].attn)
    ops = [n.name for n in mdta.nodes if n.kind == "op"]
    assert ops.count("@") == 2 and ops.count("L2 normalise") == 2
    assert "softmax" in ops and "× temperature" in ops and "split in 3" in ops
    notes = [e.note for e in mdta.edges]
    assert "transpose" in notes and {"[0], reshape", "[1], reshape", "[2], reshape"} <= set(notes)
    fsau = trace_block(lgcm.fsau)
    assert any("pad 1 (reflect)" in e.note for e in fsau.edges)
    feu = trace_block(tiny.bottleneck[0].feu)
    symbols = [n.symbol for n in feu.nodes if n.symbol]
    assert symbols.count("c") == 2 and symbols.count("−") == 1 and symbols.count("×") == 1
    # a − Up(L): the arrows into "−" say which tensor is subtracted
    minus = next(k for k, n in enumerate(feu.nodes) if n.symbol == "−")
    into_minus = {feu.nodes[e.source].name: e.note for e in feu.edges if e.target == minus}
    assert sorted(into_minus.values()) == ["+", "−"]
    assert [note for name, note in into_minus.items() if "bilinear" in name] == ["−"]


def test_dpi_sets_the_image_size_not_the_drawing(tiny):
    plain = draw_block(tiny.encoder[0].local_in.unit1)
    large = draw_block(tiny.encoder[0].local_in.unit1, dpi=150)
    assert large.dpi == 150
    assert tuple(large.get_size_inches()) == tuple(plain.get_size_inches())


def test_labels_name_the_paper_module_and_its_size(tiny):
    net = trace_block(tiny, size=64)
    by_path = {n.path: n for n in net.nodes if n.kind == "module"}
    c1, c2, _ = tiny.config.widths
    assert by_path["head"].name == "Conv 3×3" and by_path["head"].detail == f"3→{c1} ch"
    assert by_path["encoder.0"].name == "LGCM"
    assert by_path["downsample.0"].detail == f"{c1}→{c2} ch · ↓2"
    assert by_path["bottleneck"].name == "1 × FRM"
    assert net.nodes[-1].name == "CTCNet(x)"
    fsau = trace_block(tiny.encoder[0].fsau)
    assert fsau.title == "FSAU" and fsau.nodes[-1].name == "FSAU(a)"


def _text_boxes(fig):
    canvas = FigureCanvasAgg(fig)  # the figure comes closed in pyplot, without a canvas to draw
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    texts = [(t, t.get_window_extent(renderer)) for t in ax.texts if t.get_text()]
    nodes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)
             or (isinstance(p, Circle) and p.get_radius() >= 0.1)]
    return texts, [(p, p.get_window_extent(renderer)) for p in nodes]


def _overlap(a, b, slack=0.5):
    return (a.x0 + slack < b.x1 and b.x0 + slack < a.x1 and a.y0 + slack < b.y1
            and b.y0 + slack < a.y1)


CASES = [(name, {}) for name in NAMES] + [
    ("CTCNet", {"direction": "TB"}), ("LB", {"direction": "LR"}), ("MDTA", {"shapes": True}),
    ("LGCM", {"expand": "transformer"}), ("TransformerBlock", {"expand": "attn", "shapes": True}),
    ("FSAU", {"expand": "hourglass"}), ("FEU", {"shapes": True}), ("CTCNet", {"shapes": True}),
]


@pytest.mark.parametrize(("name", "options"), CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_every_module_renders_with_no_text_overlapping(tiny, name, options):
    fig = draw_block(_modules(tiny)[name], network=tiny, size=64, **options)
    texts, nodes = _text_boxes(fig)
    assert len(texts) > 3
    for (t1, b1), (t2, b2) in itertools.combinations(texts, 2):
        assert not _overlap(b1, b2), (t1.get_text(), t2.get_text())
    for text, box in texts:
        x, y = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
        for patch, pbox in nodes:
            inside = pbox.x0 <= x <= pbox.x1 and pbox.y0 <= y <= pbox.y1
            if inside:  # a box's own lines stay within it
                assert pbox.x0 - 1 <= box.x0 and box.x1 <= pbox.x1 + 1, text.get_text()
            else:
                assert not _overlap(box, pbox), (text.get_text(), type(patch).__name__)
    matplotlib.pyplot.close(fig)


@pytest.mark.parametrize(("name", "options"), CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_arrows_go_around_the_boxes(tiny, name, options):
    module = _modules(tiny)[name]
    graph = trace_block(module, network=tiny, size=64, expand=options.get("expand"))
    items, routes, vertical = _dataflow.arrange(graph, options.get("shapes", False),
                                                 options.get("direction", "auto"))
    assert len(routes) == len(graph.edges)
    boxes = {k: (i.v - (i.width if vertical else i.height) / 2 + 0.01,
                 i.v + (i.width if vertical else i.height) / 2 - 0.01,
                 i.u - (i.height if vertical else i.width) / 2 + 0.01,
                 i.u + (i.height if vertical else i.width) / 2 - 0.01)
             for k, i in items.items() if i.style not in ("dummy", "circle")}
    circles = {k: (i.u, i.v) for k, i in items.items() if i.style == "circle"}
    for route in routes:
        for (ua, va), (ub, vb) in zip(route.points, route.points[1:]):
            assert ua == pytest.approx(ub) or va == pytest.approx(vb)  # orthogonal
            for key, (v0, v1, u0, u1) in boxes.items():
                hits = (min(va, vb) < v1 and max(va, vb) > v0 and min(ua, ub) < u1
                        and max(ua, ub) > u0)
                assert not hits, (route.edge, graph.nodes[key].name)
            for key, (cu, cv) in circles.items():  # nearest point of the segment to the centre
                nu, nv = min(max(cu, min(ua, ub)), max(ua, ub)), min(max(cv, min(va, vb)),
                                                                     max(va, vb))
                assert (nu - cu) ** 2 + (nv - cv) ** 2 >= (_dataflow.CIRCLE - 0.01) ** 2, (
                    route.edge, graph.nodes[key].name)
    # every edge starts at its source and ends at its target
    for route in routes:
        start, end = route.points[0], route.points[-1]
        for key, point in ((route.edge.source, start), (route.edge.target, end)):
            item = items[key]
            assert abs(point[0] - item.u) <= max(item.width, item.height) / 2 + 0.02
            assert abs(point[1] - item.v) <= max(item.width, item.height) / 2 + 0.02


def test_the_u_layout_is_chosen_for_the_network_and_the_hourglass(tiny):
    for module in (tiny, tiny.encoder[0].fsau.hourglass):
        graph = trace_block(module, network=tiny, size=64)
        spine = _dataflow._spine(graph)
        assert _dataflow._fold_point(graph, spine) is not None
    for module in (tiny.encoder[0].local_in, tiny.encoder[0].transformer[0].attn):
        graph = trace_block(module, network=tiny, size=64)
        assert _dataflow._fold_point(graph, _dataflow._spine(graph)) is None


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=60, metadata={"Software": None})
    matplotlib.pyplot.close(fig)
    return buffer.getvalue()


def test_drawing_is_deterministic(tiny):
    for module in (tiny, tiny.bottleneck[0].feu):
        first = _png(draw_block(module, network=tiny, size=64, shapes=True))
        second = _png(draw_block(module, network=tiny, size=64, shapes=True))
        assert first == second


def test_tracing_does_not_change_the_module_or_its_output():
    torch.manual_seed(1)
    model = build_model("tiny").train()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    fsau = model.encoder[0].fsau
    calls = []
    handle = fsau.register_forward_hook(lambda m, a, o: calls.append(1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        out_before = model.eval()(x)
    model.train()
    for module in (model, fsau, model.fusion[0]):
        draw_block(module, network=model, size=64, shapes=True)
        matplotlib.pyplot.close("all")
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert all(p.device.type == "cpu" and p.requires_grad for p in model.parameters())
    calls.clear()
    with torch.no_grad():
        out_after = model.eval()(x)
    assert torch.equal(out_before, out_after)
    assert calls == [1]  # the user's hook is still there, and tracing never ran it
    handle.remove()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_shapes_on_request(tiny):
    graph = trace_block(tiny.encoder[0].local_in.unit1, network=tiny, size=64)
    c = tiny.config.widths[0]
    assert graph.nodes[0].shape == (1, c, 64, 64)
    fig = draw_block(tiny.encoder[0].local_in.unit1, network=tiny, size=64, shapes=True)
    assert f"{c}×64×64" in [t.get_text() for t in fig.axes[0].texts]
    matplotlib.pyplot.close(fig)
    fig = draw_block(tiny.encoder[0].local_in.unit1, network=tiny, size=64)
    assert f"{c}×64×64" not in [t.get_text() for t in fig.axes[0].texts]
    matplotlib.pyplot.close(fig)


def test_inputs_given_as_shapes_or_guessed():
    unit = ResidualUnit(8)
    given = trace_block(unit, (1, 8, 20, 20))
    assert given.nodes[0].shape == (1, 8, 20, 20)
    guessed = trace_block(unit, size=64)
    assert guessed.nodes[0].shape == (1, 8, 16, 16)
    mffu = build_model("tiny").fusion[0]
    widths = [(1, c, 16, 16) for c in (32, 32, 16, 8)]
    graph = trace_block(mffu, [widths])
    assert [n.name for n in graph.nodes if n.kind == "input"] == [
        f"features[{i}]" for i in range(4)]


# -- bad input: one-line errors ------------------------------------------------------------------


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_draw_block_rejects_what_is_not_a_module():
    with pytest.raises(ValueError) as excinfo:
        draw_block("encoder.0")
    assert "nn.Module" in _one_line(excinfo)


def test_draw_block_rejects_inputs_that_are_not_tensors_or_shapes():
    with pytest.raises(ValueError) as excinfo:
        trace_block(ResidualUnit(8), ["a picture"])
    assert "shapes" in _one_line(excinfo)


def test_draw_block_rejects_a_network_that_does_not_hold_the_module(tiny):
    with pytest.raises(ValueError) as excinfo:
        trace_block(ResidualUnit(8), network=tiny)
    assert "not a sub-module" in _one_line(excinfo)


def test_draw_block_rejects_an_expand_that_is_not_a_child(tiny):
    with pytest.raises(ValueError) as excinfo:
        trace_block(tiny.encoder[0], expand=tiny.encoder[1].fsau)
    assert "expand" in _one_line(excinfo)
    with pytest.raises(ValueError) as excinfo:
        trace_block(tiny.encoder[0], expand="no_such_child")
    assert "no_such_child" in _one_line(excinfo)


def test_draw_block_rejects_an_unknown_direction(tiny):
    with pytest.raises(ValueError) as excinfo:
        draw_block(tiny.encoder[0], direction="sideways")
    assert "direction" in _one_line(excinfo)


def test_draw_block_of_an_mffu_without_network_asks_for_it(tiny):
    with pytest.raises(ValueError) as excinfo:
        trace_block(tiny.fusion[0])
    assert "network=" in _one_line(excinfo)


def test_a_half_precision_model_is_traced_with_inputs_of_its_dtype():
    model = build_model("tiny").half()
    graph = trace_block(model.encoder[0].fsau, network=model, size=64)
    assert [p for p, _ in graph.module_calls()] == ["hourglass", "attention", "to_map"]
    assert trace_block(model.encoder[0].fsau, (1, 8, 16, 16)).nodes[0].shape == (1, 8, 16, 16)


def test_the_figure_is_closed_in_pyplot_so_a_notebook_shows_it_once():
    before = set(matplotlib.pyplot.get_fignums())
    fig = draw_block(ResidualUnit(8))
    assert set(matplotlib.pyplot.get_fignums()) == before
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")  # still drawable
    assert buffer.getvalue()[:4] == b"\x89PNG"

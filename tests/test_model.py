"""The CTCNet modules: parameter counts, shapes, input rules, ablations, gradients, devices."""

from __future__ import annotations

import copy

import pytest
import torch

import ctcnet
from ctcnet import model as M


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def official():
    torch.manual_seed(0)
    return ctcnet.build_model("official").eval()


def test_official_parameter_count_matches_the_reference(official):
    assert n_params(official) == 22_407_699


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("encoder.0", 567_237), ("encoder.1", 1_046_561), ("encoder.2", 2_757_677),
        ("decoder.0", 2_757_677), ("decoder.1", 1_046_561), ("decoder.2", 567_237),
        ("bottleneck.0", 2_336_071), ("encoder.0.fsau", 448_133), ("encoder.1.fsau", 482_885),
        ("encoder.2.fsau", 564_869), ("bottleneck.0.fsau", 342_533),
        ("encoder.0.transformer.0", 14_779), ("encoder.1.transformer.0", 54_070),
        ("encoder.2.transformer.0", 206_188),
        # The reference's local-block counts (29,995 / 119,629 / 477,841) include one scalar it
        # never uses; 4 live FRM local blocks = 1,911,360 = 4 x 477,840.
        ("encoder.0.local_in", 29_994), ("encoder.1.local_in", 119_628),
        ("encoder.2.local_in", 477_840),
    ],
)
def test_module_parameter_counts_match_the_specification(official, attribute, expected):
    assert n_params(official.get_submodule(attribute)) == expected


def test_mffu_parameter_count(official):
    assert n_params(official.fusion) + n_params(official.resampler) == 2_595_310


@pytest.mark.parametrize("preset", ["official", "reduced", "tiny"])
def test_every_preset_maps_its_minimum_and_a_non_square_size(preset):
    model = ctcnet.build_model(preset).eval()
    lo = model.min_input_size
    with torch.no_grad():
        for shape in [(1, 3, lo, lo), (2, 3, lo + 8, lo + 24)]:
            assert model(torch.zeros(shape)).shape == shape


def test_official_rules_are_the_reference_ones(official):
    assert official.min_input_size == 72 and official.size_multiple == 8


@pytest.mark.parametrize(
    ("shape", "dtype", "rule"),
    [
        ((1, 1, 128, 128), torch.float32, "3 channels"),
        ((1, 3, 100, 128), torch.float32, "multiples of 8"),
        ((1, 3, 64, 64), torch.float32, "at least 72"),
        ((1, 3, 128, 128), torch.uint8, "floating-point"),
        ((3, 128, 128), torch.float32, "4-D batch"),
    ],
)
def test_bad_inputs_get_a_one_line_error_naming_the_rule(official, shape, dtype, rule):
    with pytest.raises(ValueError, match=rule) as info:
        official(torch.zeros(shape, dtype=dtype))
    assert "\n" not in str(info.value)


def test_model_deepcopies_after_a_forward_and_stores_no_activations():
    model = ctcnet.build_model("tiny")
    model(torch.rand(2, 3, 32, 32))
    clone = copy.deepcopy(model)
    for module in model.modules():
        tensors = [k for k, v in vars(module).items() if isinstance(v, torch.Tensor)]
        assert tensors == [], f"{type(module).__name__} stores tensors {tensors}"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 clone.state_dict().values()))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = ctcnet.build_model("tiny").train()
    for m in model.modules():
        # A squeeze of 2 hidden units can start with both ReLUs closed, which zeroes its
        # gradient for this batch; open them so the test checks wiring, not luck.
        if isinstance(m, M.ChannelAttention):
            torch.nn.init.constant_(m.squeeze.bias, 1.0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    (model(x) - x.flip(-1)).abs().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_shared_modules_are_called_as_often_as_in_the_reference():
    model = ctcnet.build_model("tiny").eval()
    calls: dict[str, int] = {}
    watched = ["resampler.e1_down", "resampler.e3_up2", "bottleneck.0.feu.low_branch",
               "bottleneck.0.feu.high_branch", "bottleneck.0.local_mid"]
    for name in watched:
        model.get_submodule(name).register_forward_hook(
            lambda *_, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
    model(torch.zeros(1, 3, 32, 32))
    assert calls == {"resampler.e1_down": 3, "resampler.e3_up2": 2,
                     "bottleneck.0.feu.low_branch": 2, "bottleneck.0.feu.high_branch": 2,
                     "bottleneck.0.local_mid": 2}


@pytest.mark.parametrize(
    ("switch", "absent"),
    [("use_fsau", M.FSAU), ("use_transformer", M.TransformerBlock), ("use_mffu", M.MFFU)],
)
def test_ablation_switches_remove_their_modules(switch, absent):
    full = ctcnet.build_model("tiny")
    ablated = ctcnet.build_model("tiny", **{switch: False})
    assert any(isinstance(m, absent) for m in full.modules())
    assert not any(isinstance(m, absent) for m in ablated.modules())
    assert n_params(ablated) < n_params(full)
    x = torch.rand(1, 3, 32, 32)
    assert ablated(x).shape == x.shape


def test_no_frm_and_more_frms():
    assert len(ctcnet.build_model("tiny", num_frm=0).bottleneck) == 0
    assert len(ctcnet.build_model("tiny", num_frm=3).bottleneck) == 3


def test_config_rejects_inconsistent_values():
    with pytest.raises(ValueError, match="divide"):
        ctcnet.CTCNetConfig(base_width=8, heads=(3, 1, 1))
    with pytest.raises(ValueError, match="unknown preset"):
        ctcnet.build_model("huge")
    with pytest.raises(ValueError, match="unknown config field"):
        ctcnet.build_model("tiny", widht=3)


def test_optimize_for_inference_matches_eager_within_1e4():
    torch.manual_seed(0)
    model = ctcnet.build_model("reduced").eval()
    for m in model.modules():  # non-trivial BatchNorm statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_(1, 0.2)
            m.bias.data.normal_(0, 0.2)
    fast = ctcnet.optimize_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    x = torch.rand(2, 3, 64, 48) * 2 - 1
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max().item() < 1e-4
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # original intact


def test_forward_compiles_without_graph_breaks():
    model = ctcnet.build_model("tiny").eval()
    explanation = torch._dynamo.explain(model)(torch.rand(1, 3, 32, 32))
    assert explanation.graph_break_count == 0, explanation.break_reasons


def test_bf16_autocast_runs_on_cpu():
    model = ctcnet.build_model("tiny").eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad(), ctcnet.autocast("cpu", "bf16"):
        y = model(x)
    with torch.no_grad():
        assert (y.float() - model(x)).abs().max() < 0.1
    with pytest.raises(ValueError, match="fp16"):
        ctcnet.autocast("cpu", "fp16")


def test_pick_device(monkeypatch):
    monkeypatch.delenv("CTCNET_DEVICE", raising=False)
    assert ctcnet.pick_device("cpu").type == "cpu"
    assert ctcnet.pick_device().type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            ctcnet.pick_device("cuda")
    monkeypatch.setenv("CTCNET_DEVICE", "cpu")
    assert ctcnet.pick_device().type == "cpu"

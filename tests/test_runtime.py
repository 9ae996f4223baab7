"""Precision and memory format as model properties: optimize_for_inference / optimize_for_training,
the "auto" choice, BatchNorm folding and their error messages (ctcnet.runtime)."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
import torch.nn.functional as F

import ctcnet
from ctcnet import runtime


def _with_trained_like_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    # Non-trivial BatchNorm statistics, as after training, so folding has something to fold.
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(1 + torch.randn(m.num_features, generator=gen) * 0.2)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
    return model


def _faces_like(n: int, size: int, seed: int = 0) -> torch.Tensor:
    # Smooth images on [-1, 1], closer to the bicubic-upsampled faces the model sees than noise.
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 8, size // 8, generator=gen) * 2 - 1
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


# --------------------------------------------------------------------------------------------
# accuracy of bf16 and of the memory format
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["tiny", "reduced", "official"])
def test_bf16_inference_stays_within_0_02_of_fp32_on_every_preset(preset):
    torch.manual_seed(0)
    model = _with_trained_like_batchnorm(ctcnet.build_model(preset).eval())
    x = _faces_like(1, model.min_input_size)
    fp32 = ctcnet.optimize_for_inference(model, precision="fp32")
    bf16 = ctcnet.optimize_for_inference(model, precision="bf16")
    with torch.no_grad():
        reference, fast = fp32(x), bf16(x)
    assert fast.dtype == torch.float32 and fast.shape == x.shape
    difference = (fast - reference).abs().max().item()
    assert 0 < difference < 0.02  # > 0: bf16 really ran


def test_bf16_inference_of_the_shipped_model_stays_within_0_02_of_fp32():
    from ctcnet.weights import default_weights_path, load_model

    path = default_weights_path()
    if not path.exists():
        pytest.skip(f"shipped weights not present at {path}")
    model = load_model(path).eval()
    x = _faces_like(2, 64, seed=3)
    with torch.no_grad():
        reference = ctcnet.optimize_for_inference(model, "fp32")(x)
        fast = ctcnet.optimize_for_inference(model, "bf16")(x)
    assert (fast - reference).abs().max().item() < 0.02


def test_bf16_inference_copy_stores_cast_weights_and_gives_the_autocast_numbers():
    torch.manual_seed(0)
    model = _with_trained_like_batchnorm(ctcnet.build_model("tiny").eval())
    x = _faces_like(2, 32)
    fp32 = ctcnet.optimize_for_inference(model, "fp32")
    bf16 = ctcnet.optimize_for_inference(model, "bf16")
    assert bf16.head.weight.dtype == torch.bfloat16  # cast once, not on every call
    assert bf16.encoder[0].fsau.hourglass.skips[0].act.weight.dtype == torch.float32  # PReLU
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        by_autocast = fp32(x)
    with torch.no_grad():
        torch.testing.assert_close(bf16(x), by_autocast.float(), atol=0, rtol=0)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the original untouched


def test_channels_last_output_equals_contiguous_output():
    torch.manual_seed(0)
    model = _with_trained_like_batchnorm(ctcnet.build_model("tiny").eval())
    x = _faces_like(2, 32)
    nchw = ctcnet.optimize_for_inference(model, channels_last=False)
    nhwc = ctcnet.optimize_for_inference(model, channels_last=True)
    assert nhwc.head.weight.is_contiguous(memory_format=torch.channels_last)
    assert not nchw.head.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(nhwc(x), nchw(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(nhwc(x), model(x), atol=1e-4, rtol=1e-4)


def test_channels_last_training_forward_equals_contiguous_forward():
    torch.manual_seed(0)
    a = ctcnet.build_model("tiny").train()
    b = copy.deepcopy(a)
    ctcnet.optimize_for_training(a, "fp32", channels_last=True)
    ctcnet.optimize_for_training(b, "fp32", channels_last=False)
    x = _faces_like(2, 32)
    torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=1e-5)


def test_fold_batchnorm_uses_torch_fusion_and_matches_eager_within_1e4():
    torch.manual_seed(0)
    model = _with_trained_like_batchnorm(ctcnet.build_model("reduced").eval())
    folded = runtime.fold_batchnorm(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert all(m.conv.bias is not None for m in folded.modules() if isinstance(m, ctcnet.model.HourglassConv))
    x = _faces_like(2, 48)
    with torch.no_grad():
        assert (folded(x) - model(x)).abs().max().item() < 1e-4


def test_fold_batchnorm_refuses_a_model_in_train_mode():
    model = ctcnet.build_model("tiny").train()
    with pytest.raises(ValueError, match="eval mode"):
        runtime.fold_batchnorm(model)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # nothing lost


def test_optimize_for_inference_default_stays_fp32_and_leaves_the_original_intact():
    model = ctcnet.build_model("tiny").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = ctcnet.optimize_for_inference(model)
    assert fast.precision == "fp32"
    assert all(not p.requires_grad for p in fast.parameters())
    assert "forward" not in model.__dict__
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --------------------------------------------------------------------------------------------
# the "auto" choice
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "fast_cpu_bf16", "capability", "training", "expected"),
    [
        ("cpu", True, None, True, "bf16"),
        ("cpu", True, None, False, "bf16"),
        ("cpu", False, None, True, "fp32"),
        ("cpu", False, None, False, "fp32"),
        ("cuda", False, (7, 5), True, "fp16"),
        ("cuda", False, (7, 5), False, "fp16"),
        ("cuda", False, (8, 0), True, "bf16"),
        ("cuda", True, (9, 0), False, "bf16"),
        ("cuda", True, (6, 1), True, "fp32"),
        ("mps", True, None, True, "fp32"),
    ],
)
def test_auto_precision_follows_the_hardware(
    monkeypatch, device, fast_cpu_bf16, capability, training, expected
):
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: fast_cpu_bf16)
    monkeypatch.setattr(runtime, "_cuda_capability", lambda _device: capability)
    precision, reason = runtime.choose_precision(device, training=training)
    assert precision == expected
    assert reason  # it says why
    if capability is not None:
        assert f"{capability[0]}.{capability[1]}" in reason
    if expected == "fp16":
        assert ("loss scaling" in reason) == training


def test_cpu_bf16_probe_reads_the_cpu_flags(monkeypatch):
    for flags, fast in [({"avx512f", "avx512_bf16"}, True), ({"amx_bf16", "amx_tile"}, True),
                        ({"avx512f", "avx512bw", "avx2"}, False), (set(), False)]:
        monkeypatch.setattr(runtime, "_cpu_flags", lambda flags=flags: frozenset(flags))
        assert runtime.cpu_has_fast_bf16() is fast


@pytest.mark.parametrize("fast_cpu_bf16", [True, False])
def test_auto_is_applied_recorded_and_logged(monkeypatch, caplog, fast_cpu_bf16):
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: fast_cpu_bf16)
    expected = "bf16" if fast_cpu_bf16 else "fp32"
    model = ctcnet.build_model("tiny")
    with caplog.at_level(logging.INFO, logger="ctcnet.runtime"):
        fast = ctcnet.optimize_for_inference(model.eval(), precision="auto")
        net = ctcnet.optimize_for_training(model.train(), precision="auto")
    assert fast.precision == net.precision == expected
    assert fast.precision_reason == net.precision_reason
    assert sum(f"running in {expected}" in r.getMessage() for r in caplog.records) == 2


def test_fp16_on_cpu_is_refused_with_a_one_line_error():
    model = ctcnet.build_model("tiny")
    for make in (ctcnet.optimize_for_inference, ctcnet.optimize_for_training):
        with pytest.raises(ValueError, match="fp16 is for CUDA") as info:
            make(model, precision="fp16")
        assert "\n" not in str(info.value)
    assert "forward" not in model.__dict__  # nothing applied


def test_unknown_precision_is_refused_with_a_one_line_error():
    model = ctcnet.build_model("tiny")
    with pytest.raises(ValueError, match="unknown precision 'fp8'") as info:
        ctcnet.optimize_for_training(model, precision="fp8")
    assert "\n" not in str(info.value)
    assert "forward" not in model.__dict__


# --------------------------------------------------------------------------------------------
# training in each precision
# --------------------------------------------------------------------------------------------


def _train_steps(precision: str, steps: int = 3, seed: int = 0) -> tuple[torch.nn.Module, list[float]]:
    torch.manual_seed(seed)
    model = ctcnet.optimize_for_training(ctcnet.build_model("tiny").train(), precision=precision)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = ctcnet.grad_scaler_for(model)
    x, target = _faces_like(2, 32, seed=1), _faces_like(2, 32, seed=2)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        output = model(x)
        assert output.dtype == torch.float32
        loss = F.l1_loss(output, target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
    return model, losses


def test_training_steps_work_in_each_cpu_precision_and_weights_stay_fp32():
    initial = ctcnet.build_model("tiny").state_dict()
    results = {p: _train_steps(p) for p in ("fp32", "bf16")}
    for precision, (model, losses) in results.items():
        assert model.precision == precision
        assert all(torch.isfinite(torch.tensor(losses)))
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
        assert losses[-1] < losses[0]  # it learns
        state = model.state_dict()
        assert set(state) == set(initial)  # checkpoints stay interchangeable
        assert not torch.equal(state["head.weight"], initial["head.weight"])
    fp32_losses, bf16_losses = results["fp32"][1], results["bf16"][1]
    # Same initial weights and data: bf16 follows the fp32 loss within bf16 rounding.
    assert abs(fp32_losses[0] - bf16_losses[0]) < 0.01
    assert abs(fp32_losses[-1] - bf16_losses[-1]) < 0.02


def test_bf16_actually_runs_the_convolutions_in_bf16():
    model = ctcnet.optimize_for_training(ctcnet.build_model("tiny"), precision="bf16")
    seen = []
    model.head.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    model(_faces_like(1, 32))
    assert seen == [torch.bfloat16]
    assert model.head.weight.dtype == torch.float32


def test_grad_scaler_is_enabled_only_for_fp16():
    net = ctcnet.optimize_for_training(ctcnet.build_model("tiny"), precision="bf16")
    assert not ctcnet.grad_scaler_for(net).is_enabled()
    assert not ctcnet.grad_scaler_for(ctcnet.build_model("tiny")).is_enabled()  # plain model
    if torch.cuda.is_available():
        gpu = ctcnet.optimize_for_training(ctcnet.build_model("tiny").cuda(), precision="fp16")
        assert ctcnet.grad_scaler_for(gpu).is_enabled()


def test_optimize_for_training_is_in_place_and_survives_deepcopy():
    model = ctcnet.build_model("tiny")
    net = ctcnet.optimize_for_training(model, precision="bf16", checkpointing=True)
    assert net is model
    ema = copy.deepcopy(net)  # as an EMA copy would be made
    assert ema.forward.__self__ is ema and ema.precision == "bf16"
    x = _faces_like(1, 32)
    torch.testing.assert_close(ema(x), net(x))


def test_checkpointing_with_precision_matches_without_and_can_be_removed_alone():
    torch.manual_seed(0)
    plain = ctcnet.optimize_for_training(ctcnet.build_model("tiny"), precision="bf16")
    ckpt = ctcnet.optimize_for_training(copy.deepcopy(plain), precision="bf16", checkpointing=True)
    assert any(runtime._is_checkpointed(m) for m in ckpt.modules())
    x = _faces_like(2, 32)
    for model in (plain, ckpt):
        F.l1_loss(model(x), torch.zeros_like(x)).backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-4, msg=name)
    runtime.disable_checkpointing(ckpt)
    assert not any(runtime._is_checkpointed(m) for m in ckpt.modules())
    assert ckpt.precision == "bf16" and "forward" in ckpt.__dict__


def test_bf16_evaluation_moves_the_shipped_models_psnr_by_less_than_0_05_db(tmp_path):
    # The criterion, through the same evaluate() that `ctcnet eval --precision` uses:
    # metrics are always computed on fp32 uint8 images, so only the forward pass changes.
    # (Measured on the 21 real offline test faces too: benchmarks/RESULTS.md.)
    from PIL import Image

    from ctcnet.evaluate import evaluate
    from ctcnet.weights import default_weights_path, load_model

    model = load_model(default_weights_path())
    faces = (_faces_like(6, 128, seed=3) + 1) * 127.5
    for i, face in enumerate(faces):
        Image.fromarray(face.permute(1, 2, 0).round().byte().numpy()).save(tmp_path / f"{i}.png")
    fp32 = evaluate(model, tmp_path, precision="fp32").means()
    bf16 = evaluate(model, tmp_path, precision="bf16").means()
    assert fp32["psnr"] != bf16["psnr"]  # bf16 really ran
    assert abs(fp32["psnr"] - bf16["psnr"]) < 0.05


def test_inductor_cache_dir_follows_the_environment_variable(monkeypatch, tmp_path):
    from ctcnet.runtime import inductor_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    assert inductor_cache_dir() == str(tmp_path)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    assert "torchinductor_" in inductor_cache_dir()  # torch's default: <temp>/torchinductor_<user>

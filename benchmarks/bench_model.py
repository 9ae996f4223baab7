"""Speed and memory of the CTCNet ``official`` preset, side by side with a reference-like stand-in.

``ref-like`` stands in for the authors' code: the eager model in float32, contiguous (NCHW)
layout, with the op-by-op per-pixel LayerNorm, under ``torch.no_grad`` (inference) or plain
autograd (training). Every other row is what the library offers (``optimize_for_inference`` /
``optimize_for_training`` in fp32 or bf16, channels-last), and every ratio is against
``ref-like`` measured in the same run, so machine load and CPU model cancel out as far as they can.

Every measurement runs in a fresh subprocess (``--worker``), so that peak memory (``ru_maxrss``
on the CPU, ``torch.cuda.max_memory_allocated`` on CUDA) is the peak of that scenario alone.
Inference variants take turns inside one process per batch size; training variants run as
processes taking turns (round-robin), so that load from other programs hits all of them alike.
Prints markdown (also to ``--out``); ``--resume FILE`` keeps every finished job in FILE (JSON
lines) and reuses it when the same command is run again after an interruption.

    .venv/bin/python benchmarks/bench_model.py                 # everything (see RESULTS.md for time)
    .venv/bin/python benchmarks/bench_model.py --quick         # smoke run: batch 1, few repeats
    .venv/bin/python benchmarks/bench_model.py --scenarios peak infer train --compile
    .venv/bin/python benchmarks/bench_model.py --device cuda --infer-batches 1 32 --train-batches 16
"""

from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types

# Targets of issue 9, against ``ref-like`` in the same run: speed-up factors and memory ratio.
TARGETS = {("infer", 1): 3.0, ("infer", 8): 5.0, ("train", 4): 2.5}
TRAIN_MEMORY_TARGET = 0.6
BF16_PEAK_GOAL = 0.5

INFER_VARIANTS = {
    # name: (precision or None for the reference-like eager model, compiled)
    "ref-like": (None, False),
    "fp32": ("fp32", False),
    "bf16": ("bf16", False),
    "bf16+compile": ("bf16", True),
    "fp16": ("fp16", False),
    # fp32 weights cast by autocast on every call: what optimize_for_inference's pre-cast saves
    "bf16-autocast": ("bf16-autocast", False),
}
TRAIN_VARIANTS = {
    # name: (precision or None for the reference-like model, checkpointing, compiled)
    "ref-like": (None, False, False),
    "fp32": ("fp32", False, False),
    "bf16": ("bf16", False, False),
    "bf16+ckpt": ("bf16", True, False),  # TransformerBlock + FSAU recompute in the backward pass
    "bf16+ckptTB": ("bf16", ("TransformerBlock",), False),
    # the forward pass compiled as `ctcnet train --compile` does (TrainConfig.compile)
    "bf16+compile": ("bf16", False, True),
    "fp16": ("fp16", False, False),
}


# ------------------------------------------------------------------------------------------
# worker side
# ------------------------------------------------------------------------------------------


def _naive_layernorm_forward(self, x):
    # The reference's per-pixel LayerNorm, op by op, on the NCHW tensor.
    import torch

    mean = x.mean(dim=1, keepdim=True)
    var = (x - mean).pow(2).mean(dim=1, keepdim=True)
    x = (x - mean) / torch.sqrt(var + self.eps)
    return x * self.weight[:, None, None] + self.bias[:, None, None]


def _reference_like(model):
    from ctcnet.model import LayerNorm2d

    for module in model.modules():
        if isinstance(module, LayerNorm2d):
            module.forward = types.MethodType(_naive_layernorm_forward, module)
    return model


def _build(job, device):
    import torch

    from ctcnet.model import build_model

    torch.manual_seed(0)
    return build_model(job["preset"]).to(device)


class _Meter:
    """Wall time and peak memory of the worker, on CPU or CUDA."""

    def __init__(self, device):
        import torch

        self.torch, self.cuda = torch, device.type == "cuda"

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def time(self, fn):
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - start

    def peak_mib(self):
        if self.cuda:
            return self.torch.cuda.max_memory_allocated() / 2**20
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def reset_peak(self):
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()


def _job_peak(job, device, meter):
    import torch

    out = {}
    for dtype_name in ("fp32", "bf16"):
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
        conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).to(device, dtype)
        conv = conv.to(memory_format=torch.channels_last)
        x = torch.randn(8, 256, 64, 64, device=device, dtype=dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        a = torch.randn(2048, 2048, device=device, dtype=dtype)
        cases = {
            f"conv3x3 256->256 64x64 b8 CL {dtype_name}": (
                functools.partial(conv, x), 2 * 8 * 64 * 64 * 256 * 256 * 9
            ),
            f"matmul 2048^3 {dtype_name}": (functools.partial(torch.matmul, a, a), 2 * 2048**3),
        }
        with torch.inference_mode():
            for name, (fn, flop) in cases.items():
                fn()
                out[name] = {"times": [meter.time(fn) for _ in range(job["runs"])], "flop": flop}
    return out


def _phase_conv(x, phases, padding):
    import torch.nn.functional as F

    return F.pixel_shuffle(F.conv2d(F.pad(x, padding), phases), 2)


def _job_deconv(job, device, meter):
    """The stride-2 transposed convolutions of ``official`` at 128x128 input, against the same
    function as a stride-1 convolution with the kernel's four phases as output channels followed
    by ``pixel_shuffle`` (the "phase convolution" rewrite)."""
    import torch

    shapes = [  # (in, out, kernel, padding, input size): upsample[0..2], e3_up, e2_up, e3_up2
        (128, 128, 6, 2, 16), (128, 64, 6, 2, 32), (64, 32, 6, 2, 64),
        (128, 128, 8, 3, 32), (64, 64, 8, 3, 64), (128, 128, 6, 2, 32),
    ]
    out = {}
    for dtype_name in job["dtypes"]:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
        for cin, cout, k, p, s in shapes:
            cl = torch.channels_last
            x = torch.randn(1, cin, s, s, device=device, dtype=dtype).contiguous(memory_format=cl)
            deconv = torch.nn.ConvTranspose2d(cin, cout, k, 2, p, bias=False).to(device, dtype)
            deconv = deconv.to(memory_format=cl)
            half = k // 2
            phases = torch.randn(4 * cout, cin, half, half, device=device, dtype=dtype)
            phases = phases.contiguous(memory_format=cl)
            lo, hi = (half - 1) // 2 + (half - 1) % 2, (half - 1) // 2
            cases = {
                "transposed": functools.partial(deconv, x),
                "phase": functools.partial(_phase_conv, x, phases, (lo, hi, lo, hi)),
            }
            with torch.inference_mode():
                for name, fn in cases.items():
                    fn()
                    key = f"{cin}->{cout} k{k} {s}x{s} {dtype_name}|{name}"
                    out[key] = [meter.time(fn) for _ in range(job["runs"])]
    return out


def _infer_model(variant, base):
    import copy

    import torch

    from ctcnet.runtime import optimize_for_inference

    precision, compiled = INFER_VARIANTS[variant]
    if precision is None:
        return _reference_like(copy.deepcopy(base).eval()), torch.no_grad
    if precision == "bf16-autocast":
        fp32 = optimize_for_inference(base, "fp32")
        device_type = next(fp32.parameters()).device.type

        def autocast_bf16(x):
            with torch.autocast(device_type, dtype=torch.bfloat16):
                return fp32(x).float()

        return autocast_bf16, torch.inference_mode
    model = optimize_for_inference(base, precision)
    if compiled:
        model = torch.compile(model)
    return model, torch.inference_mode


def _job_infer(job, device, meter):
    import torch

    base = _build(job, device)
    x = torch.rand(job["batch"], 3, job["size"], job["size"], device=device) * 2 - 1
    models, first, outputs = {}, {}, {}
    for variant in job["variants"]:
        model, ctx = _infer_model(variant, base)
        with ctx():
            first[variant] = meter.time(lambda m=model: m(x))  # includes compilation, if any
            for _ in range(job["warmup"] - 1):
                model(x)
            outputs[variant] = model(x).float()
        models[variant] = (model, ctx)
    # Accuracy on the [-1, 1] scale against the first variant (ref-like when present).
    reference = outputs[job["variants"][0]]
    maxdiff = {v: (y - reference).abs().max().item() for v, y in outputs.items()}
    del outputs, reference
    del base
    meter.reset_peak()
    times = {v: [] for v in models}
    loads = [os.getloadavg()[0]]
    for _ in range(job["runs"]):
        for variant, (model, ctx) in models.items():
            with ctx():
                times[variant].append(meter.time(lambda m=model: m(x)))
        loads.append(os.getloadavg()[0])
    return {"times": times, "first": first, "maxdiff": maxdiff, "peak_mib": meter.peak_mib(),
            "load": loads}


def _job_train(job, device, meter):
    import torch
    import torch.nn.functional as F

    from ctcnet.runtime import grad_scaler_for, optimize_for_training

    precision, checkpointing, compiled = TRAIN_VARIANTS[job["variant"]]
    model = _build(job, device).train()
    if precision is None:
        model = _reference_like(model)
    else:
        model = optimize_for_training(model, precision, checkpointing=checkpointing)
    if compiled:
        model.forward = torch.compile(model.forward)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.99))
    scaler = grad_scaler_for(model)
    gen = torch.Generator().manual_seed(1)
    shape = (job["batch"], 3, job["size"], job["size"])
    x = (torch.rand(shape, generator=gen) * 2 - 1).to(device)
    target = (torch.rand(shape, generator=gen) * 2 - 1).to(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.l1_loss(model(x), target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    first = meter.time(step)  # includes compilation, if any
    for _ in range(job["warmup"] - 1):
        step()
    times, loads = [], [os.getloadavg()[0]]
    for _ in range(job["runs"]):
        times.append(meter.time(step))
        loads.append(os.getloadavg()[0])
    return {"times": times, "first": first, "peak_mib": meter.peak_mib(), "load": loads}


def worker(job: dict) -> dict:
    import torch

    torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    meter = _Meter(device)
    kinds = {"peak": _job_peak, "deconv": _job_deconv, "infer": _job_infer, "train": _job_train}
    return kinds[job["kind"]](job, device, meter)


# ------------------------------------------------------------------------------------------
# driver side
# ------------------------------------------------------------------------------------------


class Runner:
    """Runs jobs in subprocesses; with ``resume`` set, finished jobs are kept in that JSON-lines
    file and reused when the same job (same parameters) comes again."""

    def __init__(self, args):
        self.args, self.done = args, {}
        if args.resume and os.path.exists(args.resume):
            with open(args.resume) as f:
                for line in f:
                    if line.strip():
                        record = json.loads(line)
                        self.done[record["key"]] = record["result"]

    def __call__(self, job: dict) -> dict:
        job = {"threads": self.args.threads, "device": self.args.device, "preset": self.args.preset,
               **job}
        key = hashlib.sha1(json.dumps(job, sort_keys=True).encode()).hexdigest()
        if key in self.done:
            return self.done[key]
        env = dict(os.environ, OMP_NUM_THREADS=str(job["threads"]), **job.get("env", {}))
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(job)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed for {job}:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        if self.args.resume:
            with open(self.args.resume, "a") as f:
                f.write(json.dumps({"key": key, "job": job, "result": result}) + "\n")
        self.done[key] = result
        return result


class Report:
    def __init__(self, path):
        self.path, self.lines = path, []

    def __call__(self, *parts):
        text = " ".join(str(p) for p in parts)
        print(text, flush=True)
        self.lines.append(text)

    def save(self):
        if self.path:
            with open(self.path, "w") as f:
                f.write("\n".join(self.lines) + "\n")


def med(xs):
    return statistics.median(xs)


def fmt_load(loads):
    return f"{min(loads):.2f}–{max(loads):.2f}"


def model_flop_per_image(preset: str, size: int) -> float:
    """Forward FLOP of ``preset`` on one ``size x size`` image, counted by FlopCounterMode on
    the meta device at 128x128 (every layer's cost is linear in the pixel count)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ctcnet.model import build_model

    with torch.device("meta"):
        model = build_model(preset)
    x = torch.empty(1, 3, 128, 128, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() * size * size / 128**2


def scenario_peak(args, run, say) -> dict:
    res = run({"kind": "peak", "runs": 3 if args.quick else 7})
    say("\n### Dense peaks of this machine (same run)\n")
    say("| kernel | runs | median GFLOP/s | best GFLOP/s |")
    say("|---|---|---|---|")
    peaks = {}
    for name, r in res.items():
        gf = [r["flop"] / t / 1e9 for t in r["times"]]
        say(f"| {name} | {len(gf)} | {med(gf):.1f} | {max(gf):.1f} |")
        if name.startswith("conv"):
            peaks[name.rsplit(" ", 1)[1]] = max(gf)
    return peaks


def scenario_deconv(args, run, say) -> None:
    dtypes = ["fp32", "bf16"]
    res = run({"kind": "deconv", "runs": 3 if args.quick else 9, "dtypes": dtypes})
    say("\n### Phase convolutions for the stride-2 transposed convolutions (batch 1, channels-last)\n")
    say("| layer | transposed ms | phase conv + pixel_shuffle ms | phase / transposed |")
    say("|---|---|---|---|")
    total = {d: [0.0, 0.0] for d in dtypes}
    for key in [k for k in res if k.endswith("|transposed")]:
        layer = key.split("|")[0]
        t, p = min(res[key]), min(res[f"{layer}|phase"])
        total[layer.rsplit(" ", 1)[1]][0] += t
        total[layer.rsplit(" ", 1)[1]][1] += p
        say(f"| {layer} | {1e3 * t:.2f} | {1e3 * p:.2f} | {p / t:.2f} |")
    for d, (t, p) in total.items():
        say(f"| all six, {d} | {1e3 * t:.2f} | {1e3 * p:.2f} | {p / t:.2f} |")


def scenario_infer(args, run, say, peaks, flop128) -> dict:
    say(f"\n### Inference, {args.size}x{args.size}, {args.preset}"
        " (variants take turns in one process per batch)\n")
    say("`ref-like` = eager fp32 NCHW model with the reference's op-by-op LayerNorm under"
        " `torch.no_grad`; `fp32`/`bf16` = `optimize_for_inference(model, precision)` (BN folded,"
        " channels-last) under `torch.inference_mode`; `+compile` = `torch.compile` of that.\n")
    summary, rows = {}, []
    for batch in args.infer_batches:
        runs = args.infer_runs or (2 if args.quick else (3 if batch >= 8 else 7))
        res = run({"kind": "infer", "batch": batch, "size": args.size, "variants": args.infer_variants,
                   "warmup": 1 if args.quick else 2, "runs": runs})
        rows.append((batch, res))
    say(f"| batch | variant | runs | median s/batch | min | images/s | vs `ref-like` | target |"
        f" GFLOP/s | % of bf16 conv peak | max abs diff vs `{args.infer_variants[0]}` | load avg |")
    say("|---|---|---|---|---|---|---|---|---|---|---|---|")
    flop = flop128 * args.size**2 / 128**2
    for batch, res in rows:
        ref = med(res["times"]["ref-like"]) if "ref-like" in res["times"] else None
        target = TARGETS.get(("infer", batch)) if _targets_apply(args) else None
        for variant, times in res["times"].items():
            m = med(times)
            speedup = ref / m if ref else None
            status = "–"
            if target and speedup and variant != "ref-like":
                status = f"≥{target:g}×: {'met' if speedup >= target else 'MISSED'}"
            gflops = flop * batch / m / 1e9
            pct = f"{100 * gflops / peaks['bf16']:.0f}%" if peaks.get("bf16") else "–"
            say(f"| {batch} | {variant} | {len(times)} | {m:.3f} | {min(times):.3f} | {batch / m:.2f} |"
                f" {f'{speedup:.2f}×' if speedup else '–'} | {status} | {gflops:.0f} | {pct} |"
                f" {res['maxdiff'][variant]:.4f} | {fmt_load(res['load'])} |")
            summary[(batch, variant)] = (m, speedup)
        firsts = ", ".join(f"`{v}` {t:.1f} s" for v, t in res["first"].items())
        say(f"\nbatch {batch}: first call (includes any compilation): {firsts}; peak memory of the"
            f" process with all variants loaded: {res['peak_mib']:.0f} MiB.\n")
    return summary


def scenario_train(args, run, say) -> dict:
    say(f"\n### Training step, {args.size}x{args.size}, {args.preset}"
        " (fwd + L1 + bwd + Adam(2e-4, (0.9, 0.99)))\n")
    say("`ref-like` = fp32 NCHW model with the op-by-op LayerNorm; the others ="
        " `optimize_for_training(model, precision, checkpointing=...)` (channels-last). Each variant"
        " runs in its own processes (1 warm-up step each), taking turns with the others. Peak"
        " memory = max over the variant's processes.\n")
    say("| batch | variant | steps | median s | min | images/s | vs `ref-like` | peak MiB |"
        " memory vs `ref-like` | target | load avg |")
    say("|---|---|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for batch in args.train_batches:
        rounds, runs = (1, 1) if args.quick else (args.train_rounds, args.train_runs)
        res = {v: {"times": [], "peak": [], "load": [], "first": []} for v in args.train_variants}
        for _ in range(rounds):
            for v in args.train_variants:
                r = run({"kind": "train", "batch": batch, "size": args.size, "variant": v,
                         "warmup": 1, "runs": runs, "round": _})
                res[v]["times"] += r["times"]
                res[v]["peak"].append(r["peak_mib"])
                res[v]["load"] += r["load"]
                res[v]["first"].append(r.get("first"))
        ref = res.get("ref-like")
        target = TARGETS.get(("train", batch)) if _targets_apply(args) else None
        for v, r in res.items():
            m, peak = med(r["times"]), max(r["peak"])
            speedup = med(ref["times"]) / m if ref else None
            mem = peak / max(ref["peak"]) if ref else None
            status = "–"
            if target and speedup and v != "ref-like":
                ok_t, ok_m = speedup >= target, mem <= TRAIN_MEMORY_TARGET
                status = (f"≥{target:g}× {'met' if ok_t else 'MISSED'}; "
                          f"≤{TRAIN_MEMORY_TARGET:g}× mem {'met' if ok_m else 'MISSED'}")
            say(f"| {batch} | {v} | {len(r['times'])} | {m:.2f} | {min(r['times']):.2f} | {batch / m:.2f} |"
                f" {f'{speedup:.2f}×' if speedup else '–'} | {peak:.0f} | {f'{mem:.2f}×' if mem else '–'} |"
                f" {status} | {fmt_load(r['load'])} |")
            summary[(batch, v)] = (m, speedup, peak, mem)
        firsts = "; ".join(f"`{v}` " + ", ".join(f"{t:.1f} s" for t in r["first"] if t is not None)
                           for v, r in res.items())
        say(f"\nbatch {batch}: first step of each process, in round order (includes compilation;"
            f" later rounds reuse the on-disk compile cache of the first): {firsts}")
        if "bf16+compile" in res and "bf16" in res:
            eager, comp = med(res["bf16"]["times"]), med(res["bf16+compile"]["times"])
            for label, first in (("cold cache", res["bf16+compile"]["first"][0]),
                                 ("warm cache", res["bf16+compile"]["first"][-1])):
                if first is None or len(res["bf16+compile"]["first"]) < 2 and label == "warm cache":
                    continue
                extra = first - comp  # the first step's cost beyond an ordinary compiled step
                saved = eager - comp
                verdict = (f"pays off after {extra / saved:.0f} steps" if saved > 0 else
                           "never pays off (the compiled step is not faster)")
                say(f"batch {batch}, `bf16+compile` against `bf16` ({label}): compile cost "
                    f"{extra:.0f} s, {saved:+.2f} s saved per step: {verdict}.")
    return summary


def scenario_scale(args, run, say) -> None:
    v, tv = args.scale_variant, args.scale_train_variant
    say("\n### Growth with image size and batch (one process per row)\n")
    say(f"Inference: `{v}`; training: `{tv}` (rows with --scale-train). 'per image-equivalent' divides"
        " by pixels relative to one 128x128 image, so a flat column means linear growth.\n")
    say("| mode | batch | size | pixels (rel.) | median s | s per 128² image-equivalent | peak MiB |"
        " load avg |")
    say("|---|---|---|---|---|---|---|---|")
    cases = [(1, s) for s in args.scale_sizes] + [(b, 128) for b in args.scale_batches if b != 1]
    for batch, size in cases:
        rel = batch * size * size / 128**2
        r = run({"kind": "infer", "batch": batch, "size": size, "variants": [v],
                 "warmup": 1 if args.quick or rel > 4 else 2, "runs": 2 if args.quick else 3})
        m = med(r["times"][v])
        say(f"| infer | {batch} | {size} | {rel:.2f} | {m:.3f} | {m / rel:.3f} | {r['peak_mib']:.0f} |"
            f" {fmt_load(r['load'])} |")
    if not args.scale_train:
        return
    tcases = [(1, s) for s in args.scale_sizes] + [(b, 128) for b in args.scale_batches if b != 1]
    for batch, size in tcases:
        rel = batch * size * size / 128**2
        r = run({"kind": "train", "batch": batch, "size": size, "variant": tv, "warmup": 1,
                 "runs": 1 if args.quick else 2, "round": 0})
        m = med(r["times"])
        say(f"| train | {batch} | {size} | {rel:.2f} | {m:.2f} | {m / rel:.2f} | {r['peak_mib']:.0f} |"
            f" {fmt_load(r['load'])} |")


def scenario_threads(args, run, say) -> None:
    say("\n### Thread settings (inference, batch 1, one process per row)\n")
    say("| variant | torch threads | OMP_WAIT_POLICY | median s | min | load avg |")
    say("|---|---|---|---|---|---|")
    v = args.scale_variant
    for threads in sorted({1, args.threads}):
        for policy in ("",) if args.quick else ("", "PASSIVE", "ACTIVE"):
            r = run({"kind": "infer", "batch": 1, "size": args.size, "variants": [v], "threads": threads,
                     "env": {"OMP_WAIT_POLICY": policy} if policy else {},
                     "warmup": 1 if args.quick else 2, "runs": 2 if args.quick else 5})
            t = r["times"][v]
            say(f"| {v} | {threads} | {policy or '(default)'} | {med(t):.3f} | {min(t):.3f} |"
                f" {fmt_load(r['load'])} |")


def _targets_apply(args) -> bool:
    # The targets are stated for the official preset at 128x128.
    return args.preset == "official" and args.size == 128


def summarize(args, say, peaks, flop128, infer, train) -> None:
    if not _targets_apply(args):
        return
    say("\n### Against the targets (issue 9; ratios to `ref-like` in this run)\n")
    best_infer = [v for v in ("bf16+compile", "bf16", "fp16") if v in args.infer_variants]
    for batch, target in [(1, TARGETS[("infer", 1)]), (8, TARGETS[("infer", 8)])]:
        cands = [(infer[(batch, v)][1], v) for v in best_infer
                 if (batch, v) in infer and infer[(batch, v)][1]]
        if cands:
            speedup, v = max(cands)
            say(f"- inference batch {batch}: best `{v}` {speedup:.2f}× (target ≥{target:g}×):"
                f" {'met' if speedup >= target else 'MISSED'}")
    cands = [(train[(4, v)][1], train[(4, v)][3], v) for v in args.train_variants
             if (4, v) in train and v != "ref-like" and train[(4, v)][1]]
    for speedup, mem, v in sorted(cands, reverse=True):
        ok = speedup >= TARGETS[("train", 4)] and mem <= TRAIN_MEMORY_TARGET
        say(f"- training batch 4 `{v}`: {speedup:.2f}× faster at {mem:.2f}× the memory (target ≥2.5×"
            f" at ≤0.6×): {'met' if ok else 'MISSED'}")
    if peaks.get("bf16") and (1, "bf16") in infer:
        for batch in args.infer_batches:
            if (batch, "bf16") in infer:
                gflops = flop128 * args.size**2 / 128**2 * batch / infer[(batch, "bf16")][0] / 1e9
                frac = gflops / peaks["bf16"]
                say(f"- fraction of the bf16 conv peak reached, `bf16` inference batch {batch}:"
                    f" {100 * frac:.0f}% (goal ≥{100 * BF16_PEAK_GOAL:.0f}%)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="smoke run: batch 1, few repeats, small scale grid")
    scenarios = ["peak", "infer", "train", "scale", "deconv", "threads"]
    ap.add_argument("--scenarios", nargs="+", default=scenarios, choices=scenarios)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads (default 2)")
    ap.add_argument("--preset", default="official", help="model preset (default official)")
    ap.add_argument("--size", type=int, default=128, help="image size of the infer/train scenarios")
    ap.add_argument("--infer-batches", type=int, nargs="+", default=None)
    ap.add_argument("--infer-variants", nargs="+", default=None, choices=list(INFER_VARIANTS))
    ap.add_argument("--infer-runs", type=int, default=None, help="timed passes per variant")
    ap.add_argument("--train-batches", type=int, nargs="+", default=None)
    ap.add_argument("--train-variants", nargs="+", default=None, choices=list(TRAIN_VARIANTS))
    ap.add_argument("--train-rounds", type=int, default=2, help="processes per training variant")
    ap.add_argument("--train-runs", type=int, default=2, help="timed steps per training process")
    ap.add_argument("--scale-sizes", type=int, nargs="+", default=None)
    ap.add_argument("--scale-batches", type=int, nargs="+", default=None)
    ap.add_argument("--scale-variant", default="bf16", choices=list(INFER_VARIANTS))
    ap.add_argument("--scale-train", action="store_true", help="also scale training (slow)")
    ap.add_argument("--scale-train-variant", default="bf16", choices=list(TRAIN_VARIANTS))
    ap.add_argument("--compile", action="store_true",
                    help="add the bf16+compile inference and training variants (a fresh inductor"
                         " cache for this run, $TORCHINDUCTOR_CACHE_DIR, shared by its processes)")
    ap.add_argument("--out", default=None, help="also write the markdown here")
    ap.add_argument("--resume", default=None, help="JSON-lines file of finished jobs, reused on rerun")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available on this machine")
    half = "fp16" if args.device.startswith("cuda") else None
    if args.infer_batches is None:
        args.infer_batches = [1] if args.quick else [1, 8]
    if args.infer_variants is None:
        args.infer_variants = ["ref-like", "fp32", "bf16"] + (["bf16+compile"] if args.compile else [])
    if args.train_batches is None:
        args.train_batches = [1] if args.quick else [4]
    if args.train_variants is None:
        args.train_variants = ["ref-like", "fp32", "bf16", "bf16+ckpt", "bf16+ckptTB"]
        args.train_variants += [half] if half else []
        args.train_variants += ["bf16+compile"] if args.compile else []
    if args.compile and not args.worker:
        # cold compile in the first process, the on-disk cache reused by the later ones
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-inductor-")
    if args.scale_sizes is None:
        args.scale_sizes = [72, 128] if args.quick else [72, 96, 128, 160, 192, 256]
    if args.scale_batches is None:
        args.scale_batches = [1, 2] if args.quick else [1, 2, 4, 8]

    say, run = Report(args.out), Runner(args)
    if args.device == "cpu":
        cpu = "?"
        try:
            for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
                if line.startswith("Model name"):
                    cpu = line.split(":", 1)[1].strip()
        except OSError:
            pass
        where = f"CPU {cpu}, {os.cpu_count()} logical CPUs, {args.threads} threads"
    else:
        where = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    say(f"`{' '.join(['python'] + sys.argv)}` — {datetime.datetime.now().isoformat(timespec='minutes')},"
        f" {where}, torch {torch.__version__}, Python {platform.python_version()},"
        f" load average at start {os.getloadavg()}")
    start = time.time()
    flop128 = model_flop_per_image(args.preset, 128)
    say(f"\n{args.preset} forward: {flop128 / 1e9:.2f} GFLOP per 128x128 image (FlopCounterMode).")
    peaks, infer, train = {}, {}, {}
    if "peak" in args.scenarios:
        peaks = scenario_peak(args, run, say)
    if "infer" in args.scenarios:
        infer = scenario_infer(args, run, say, peaks, flop128)
    if "train" in args.scenarios:
        train = scenario_train(args, run, say)
    if "scale" in args.scenarios:
        scenario_scale(args, run, say)
    if "deconv" in args.scenarios:
        scenario_deconv(args, run, say)
    if "threads" in args.scenarios and args.device == "cpu":
        scenario_threads(args, run, say)
    summarize(args, say, peaks, flop128, infer, train)
    say(f"\n(total {time.time() - start:.0f} s; load average at end {os.getloadavg()})")
    say.save()


if __name__ == "__main__":
    main()

"""Speed and memory of the CTCNet ``official`` preset on the CPU (issue 2).

Every measurement runs in a fresh subprocess (``--worker``), so that ``ru_maxrss`` is the peak of
that scenario alone. Variants that are compared are measured in the same run: inference variants
round-robin inside one process, training variants as processes taking turns (round-robin), so
that the load of other programs on the machine hits all of them alike. Prints markdown tables.

    .venv/bin/python benchmarks/bench_model.py                 # everything (~25 min on 2 cores)
    .venv/bin/python benchmarks/bench_model.py --quick         # a short smoke run
    .venv/bin/python benchmarks/bench_model.py --scenarios peak infer train
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types

# The spec's reference measurements (CTCNET_SPEC.md section 12.2: reference code, 2 threads,
# float32, 128x128, same kind of machine, NOT measured in this run).
SPEC = {
    ("infer", 1): (0.969, 495),
    ("infer", 8): (11.79, 1183),
    ("train", 4): (12.47, 8156),
    ("train", 1): (2.67, 2509),
}
TARGETS = {("infer", 1): 1.5, ("infer", 8): 2.0, ("train", 4): 1.5}

# Training variants: (layernorm, channels_last, checkpointed module classes)
TRAIN_VARIANTS = {
    "ref-like": ("naive", False, ()),
    "fused-LN": ("fused", False, ()),
    "fused-LN+CL": ("fused", True, ()),
    "ckpt TB+FSAU": ("fused", False, ("TransformerBlock", "FSAU")),
    "ckpt TB+FSAU+CL": ("fused", True, ("TransformerBlock", "FSAU")),
    "ckpt LGCM-parts+CL": ("fused", True, ("TransformerBlock", "FSAU", "LocalBlock")),
}
INFER_VARIANTS = ["ref-like", "eager", "opt", "opt-NCHW"]


# ------------------------------------------------------------------------------------------
# worker side
# ------------------------------------------------------------------------------------------


def _maxrss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _naive_layernorm_forward(self, x):
    # The reference's per-pixel LayerNorm, op by op (what the library did before issue 2).
    mean = x.mean(dim=1, keepdim=True)
    var = (x - mean).pow(2).mean(dim=1, keepdim=True)
    x = (x - mean) / __import__("torch").sqrt(var + self.eps)
    return x * self.weight[:, None, None] + self.bias[:, None, None]


def _use_naive_layernorm(model) -> None:
    from ctcnet.model import LayerNorm2d

    for module in model.modules():
        if isinstance(module, LayerNorm2d):
            module.forward = types.MethodType(_naive_layernorm_forward, module)


def _build(seed: int = 0):
    import torch

    from ctcnet.model import build_model

    torch.manual_seed(seed)
    return build_model("official")


def _job_peak(job: dict) -> dict:
    import torch

    out = {}
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(8, 256, 64, 64).to(memory_format=torch.channels_last)
    cases = {
        "matmul 2048^3": (lambda: a @ b, 2 * 2048**3),
        "conv3x3 256->256 64x64 b8 CL": (lambda: conv(x), 2 * 8 * 64 * 64 * 256 * 256 * 9),
    }
    with torch.inference_mode():
        for name, (fn, flop) in cases.items():
            fn()
            times = []
            for _ in range(job["runs"]):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            out[name] = {"times": times, "flop": flop}
    return out


def _infer_model(variant: str, base):
    import copy

    from ctcnet.runtime import optimize_for_inference

    if variant == "ref-like":
        model = copy.deepcopy(base).eval()
        _use_naive_layernorm(model)
        return model, "no_grad"
    if variant == "eager":
        return copy.deepcopy(base).eval(), "no_grad"
    if variant == "opt":
        return optimize_for_inference(base), "inference_mode"
    if variant == "opt-NCHW":
        return optimize_for_inference(base, channels_last=False), "inference_mode"
    if variant == "opt+compile":
        import torch
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        return torch.compile(optimize_for_inference(base)), "no_grad"
    raise ValueError(variant)


def _job_infer(job: dict) -> dict:
    import torch

    base = _build()
    rss_model = _maxrss_mib()
    x = torch.rand(job["batch"], 3, job["size"], job["size"]) * 2 - 1
    models = {}
    first = {}
    for variant in job["variants"]:
        model, mode = _infer_model(variant, base)
        ctx = torch.inference_mode if mode == "inference_mode" else torch.no_grad
        with ctx():
            t = time.perf_counter()
            model(x)
            first[variant] = time.perf_counter() - t  # includes compilation for compiled variants
            for _ in range(job["warmup"] - 1):
                model(x)
        models[variant] = (model, ctx)
    del base
    times = {v: [] for v in models}
    loads = [os.getloadavg()[0]]
    for _ in range(job["runs"]):
        for variant, (model, ctx) in models.items():
            with ctx():
                t = time.perf_counter()
                model(x)
                times[variant].append(time.perf_counter() - t)
        loads.append(os.getloadavg()[0])
    return {"times": times, "first": first, "rss": _maxrss_mib(), "rss_model": rss_model, "load": loads}


def _job_train(job: dict) -> dict:
    import torch

    from ctcnet.runtime import enable_checkpointing

    ln, channels_last, ckpt = job["variant"]
    model = _build().train()
    if ln == "naive":
        _use_naive_layernorm(model)
    if ckpt:
        enable_checkpointing(model, ckpt)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(1)
    shape = (job["batch"], 3, job["size"], job["size"])
    x = (torch.rand(shape, generator=gen) * 2 - 1).contiguous(memory_format=fmt)
    target = (torch.rand(shape, generator=gen) * 2 - 1).contiguous(memory_format=fmt)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.l1_loss(model(x), target)
        loss.backward()
        optimizer.step()
        return loss.item()

    rss_model = _maxrss_mib()
    for _ in range(job["warmup"]):
        step()
    times, loads = [], [os.getloadavg()[0]]
    for _ in range(job["runs"]):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
        loads.append(os.getloadavg()[0])
    return {"times": times, "rss": _maxrss_mib(), "rss_model": rss_model, "load": loads}


def worker(job: dict) -> dict:
    import torch

    torch.set_num_threads(job["threads"])
    kind = job["kind"]
    rss_import = _maxrss_mib()
    result = {"peak": _job_peak, "infer": _job_infer, "train": _job_train}[kind](job)
    result["rss_import"] = rss_import
    return result


# ------------------------------------------------------------------------------------------
# driver side
# ------------------------------------------------------------------------------------------


def run_job(job: dict) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(job)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed for {job}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def med(xs):
    return statistics.median(xs)


def fmt_load(loads):
    return f"{min(loads):.2f}–{max(loads):.2f}"


def scenario_peak(args) -> float:
    res = run_job({"kind": "peak", "threads": args.threads, "runs": 3 if args.quick else 7})
    print("\n### Dense peak of this machine (same run)\n")
    print("| kernel | runs | median GFLOP/s | best GFLOP/s |")
    print("|---|---|---|---|")
    best = 0.0
    for name, r in res.items():
        if name.startswith("rss"):
            continue
        gf = [r["flop"] / t / 1e9 for t in r["times"]]
        best = max(best, max(gf))
        print(f"| {name} | {len(gf)} | {med(gf):.1f} | {max(gf):.1f} |")
    return best


MODEL_FLOP = 2 * 30_005_774_464  # spec 12.1 (fvcore MACs x 2) for one 1x3x128x128 forward


def scenario_infer(args, peak: float | None) -> None:
    print("\n### Inference, 128x128, eval (variants interleaved in one process per batch size)\n")
    print(
        "`ref-like` = eager model with the reference's op-by-op LayerNorm, `torch.no_grad` (what the"
        " spec measured); `eager` = eager model with the fused LayerNorm; `opt` ="
        " `optimize_for_inference` (BN folded, channels_last) under `torch.inference_mode`;"
        " `opt-NCHW` = the same without channels_last.\n"
    )
    rows = []
    for batch in args.infer_batches:
        runs = args.infer_runs or (3 if args.quick else (3 if batch >= 8 else 7))
        # batch 8 is slow: only the reference-like model and the fastest variant
        variants = list(INFER_VARIANTS) if batch < 8 else ["ref-like", "opt"]
        variants += ["opt+compile"] if args.compile else []
        res = run_job(
            {"kind": "infer", "threads": args.threads, "batch": batch, "size": 128,
             "variants": variants, "warmup": 3 if batch < 8 else 2, "runs": runs}
        )
        rows.append((batch, res))
    print("| batch | variant | runs | median s/batch | min | s/image | vs `ref-like` (same run) |"
          " vs spec reference | target | GFLOP/s | % of peak | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for batch, res in rows:
        ref_med = med(res["times"]["ref-like"])
        spec = SPEC.get(("infer", batch))
        target = TARGETS.get(("infer", batch))
        for variant, times in res["times"].items():
            m = med(times)
            gflops = MODEL_FLOP * batch / m / 1e9
            vs_spec = f"{spec[0] / m:.2f}×" if spec else "–"
            tgt = "–"
            if spec and target and variant == "opt":
                ok = spec[0] / m >= target
                tgt = f"≥{target}× ({spec[0] / target:.3f} s): {'met' if ok else 'MISSED'}"
            pct = f"{100 * gflops / peak:.0f}%" if peak else "–"
            print(f"| {batch} | {variant} | {len(times)} | {m:.3f} | {min(times):.3f} | {m / batch:.3f} |"
                  f" {ref_med / m:.2f}× | {vs_spec} | {tgt} | {gflops:.0f} | {pct} |"
                  f" {fmt_load(res['load'])} |")
        if "opt+compile" in res["first"]:
            first = res["first"]["opt+compile"]
            print(f"\nbatch {batch}: first call of `opt+compile` (compilation) took {first:.1f} s.")
    print("\nPeak RSS of each of these processes (all variants loaded at once):",
          ", ".join(f"batch {b}: {r['rss']:.0f} MiB" for b, r in rows),
          f"(after `import torch`: {rows[0][1]['rss_import']:.0f} MiB, after building the model:"
          f" {rows[0][1]['rss_model']:.0f} MiB).")


def _train_rounds(args, variants, batch, size, rounds, runs):
    results = {v: {"times": [], "rss": [], "load": []} for v in variants}
    for _ in range(rounds):
        for v in variants:
            r = run_job({"kind": "train", "threads": args.threads, "batch": batch, "size": size,
                         "variant": TRAIN_VARIANTS[v], "warmup": 1, "runs": runs})
            results[v]["times"] += r["times"]
            results[v]["rss"].append(r["rss"])
            results[v]["load"] += r["load"]
    return results


def scenario_train(args) -> None:
    variants = args.train_variants
    print("\n### Training step, 128x128 (fwd + L1 + bwd + Adam(2e-4, (0.9, 0.99)), train mode)\n")
    print("Each variant runs in its own processes (1 warm-up step each); the processes of all variants"
          " take turns (round-robin), so load hits them alike. Peak RSS = ru_maxrss of the process"
          " (max over its processes).\n")
    print("| batch | variant | steps | median s | min | vs `ref-like` (same run) | vs spec reference |"
          " peak RSS MiB | RSS vs spec | target | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for batch in args.train_batches:
        rounds, runs = (1, 1) if args.quick else (args.train_rounds, args.train_runs)
        res = _train_rounds(args, variants, batch, 128, rounds, runs)
        spec = SPEC.get(("train", batch))
        target = TARGETS.get(("train", batch))
        ref = med(res["ref-like"]["times"]) if "ref-like" in res else None
        for v, r in res.items():
            m, rss = med(r["times"]), max(r["rss"])
            vs_ref = f"{ref / m:.2f}×" if ref else "–"
            vs_spec = f"{spec[0] / m:.2f}×" if spec else "–"
            rss_spec = f"{rss / spec[1]:.2f}×" if spec else "–"
            tgt = "–"
            if spec and target:
                ok_t, ok_m = spec[0] / m >= target, rss <= spec[1] / 2
                tgt = (f"time ≤{spec[0] / target:.2f} s {'met' if ok_t else 'MISSED'}; "
                       f"mem ≤{spec[1] / 2:.0f} {'met' if ok_m else 'MISSED'}")
            print(f"| {batch} | {v} | {len(r['times'])} | {m:.2f} | {min(r['times']):.2f} | {vs_ref} |"
                  f" {vs_spec} | {rss:.0f} | {rss_spec} | {tgt} | {fmt_load(r['load'])} |")


def scenario_scale(args) -> None:
    sizes, batches = args.scale_sizes, args.scale_batches
    runs = 2 if args.quick else 3
    print("\n### Scaling with image size and batch (one process per row)\n")
    print(f"Inference: `opt` (optimize_for_inference, inference_mode), 3 warm-ups, {runs} runs."
          f" Training (with `--scale-train`): variant `{args.scale_train_variant}`, 1 warm-up, 2 steps."
          " Pixels are relative"
          " to 128x128 batch 1.\n")
    print("| mode | batch | size | pixels (rel.) | median s | s per 128² image-equivalent | peak RSS MiB |"
          " RSS − model MiB | load avg |")
    print("|---|---|---|---|---|---|---|---|---|")
    cases = [(1, s) for s in sizes] + [(b, 128) for b in batches if b != 1]
    for batch, size in cases:
        r = run_job({"kind": "infer", "threads": args.threads, "batch": batch, "size": size,
                     "variants": ["opt"], "warmup": 3 if batch * size * size <= 4 * 128 * 128 else 1,
                     "runs": runs})
        rel = batch * size * size / 128**2
        m = med(r["times"]["opt"])
        print(f"| infer | {batch} | {size} | {rel:.2f} | {m:.3f} | {m / rel:.3f} | {r['rss']:.0f} |"
              f" {r['rss'] - r['rss_model']:.0f} | {fmt_load(r['load'])} |")
    tcases = []
    if args.scale_train:
        tcases = [(1, s) for s in sizes] + [(b, 128) for b in batches if b in (2, 4)]
    for batch, size in tcases:
        r = run_job({"kind": "train", "threads": args.threads, "batch": batch, "size": size,
                     "variant": TRAIN_VARIANTS[args.scale_train_variant], "warmup": 1,
                     "runs": 1 if args.quick else 2})
        rel = batch * size * size / 128**2
        m = med(r["times"])
        print(f"| train | {batch} | {size} | {rel:.2f} | {m:.2f} | {m / rel:.2f} | {r['rss']:.0f} |"
              f" {r['rss'] - r['rss_model']:.0f} | {fmt_load(r['load'])} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="fewer runs, batch 1 only")
    ap.add_argument("--scenarios", nargs="+", default=["peak", "infer", "train", "scale"],
                    choices=["peak", "infer", "train", "scale"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--infer-batches", type=int, nargs="+", default=None)
    ap.add_argument("--train-batches", type=int, nargs="+", default=None)
    ap.add_argument("--train-variants", nargs="+", default=None, choices=list(TRAIN_VARIANTS))
    ap.add_argument("--scale-train-variant", default="ckpt TB+FSAU+CL", choices=list(TRAIN_VARIANTS))
    ap.add_argument("--infer-runs", type=int, default=None, help="timed passes per variant")
    ap.add_argument("--train-rounds", type=int, default=2, help="processes per training variant")
    ap.add_argument("--train-runs", type=int, default=2, help="timed steps per training process")
    ap.add_argument("--scale-sizes", type=int, nargs="+", default=[72, 96, 128, 160, 192, 256])
    ap.add_argument("--scale-batches", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--scale-train", action="store_true", help="also scale training (slow)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (inductor) inference")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.infer_batches is None:
        args.infer_batches = [1] if args.quick else [1, 8]
    if args.train_batches is None:
        args.train_batches = [1] if args.quick else [4, 1]
    if args.train_variants is None:
        args.train_variants = list(TRAIN_VARIANTS)
    import torch

    cpu = "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    print(f"`{' '.join(['python'] + sys.argv)}` — {datetime.datetime.now().isoformat(timespec='minutes')}, "
          f"CPU {cpu}, {os.cpu_count()} logical CPUs, {args.threads} threads, torch {torch.__version__}, "
          f"Python {platform.python_version()}, load average at start {os.getloadavg()}")
    start = time.time()
    peak = scenario_peak(args) if "peak" in args.scenarios else None
    if "infer" in args.scenarios:
        scenario_infer(args, peak)
    if "train" in args.scenarios:
        scenario_train(args)
    if "scale" in args.scenarios:
        scenario_scale(args)
    print(f"\n(total {time.time() - start:.0f} s; load average at end {os.getloadavg()})")


if __name__ == "__main__":
    main()

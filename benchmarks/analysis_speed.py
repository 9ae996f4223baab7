"""Time LAM (50 path steps) and the effective receptive field (16 inputs) on this machine.

    .venv/bin/python benchmarks/analysis_speed.py                      # reduced and official
    .venv/bin/python benchmarks/analysis_speed.py --presets reduced

Randomly initialised models (timing does not depend on the weights), 128x128 model input
(16x16 LR for LAM), torch.set_num_threads(2). Prints a markdown table, with the load average
(`uptime`) before and after each measurement since other processes may share the CPU, and
appends nothing anywhere: copy the table into benchmarks/analysis_speed.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import time

import torch

import ctcnet
from ctcnet.analysis import effective_receptive_field, lam


def load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presets", nargs="+", default=["reduced", "official"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--inputs", type=int, default=16)
    parser.add_argument("--batch", type=int, nargs="+", default=[10, 2],
                        help="path points / inputs per pass, one per preset")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for i, preset in enumerate(args.presets):
        batch = args.batch[min(i, len(args.batch) - 1)]
        model = ctcnet.build_model(preset).eval()
        lr = torch.rand(1, 3, 16, 16) * 2 - 1
        before = load()
        t = time.perf_counter()
        res = lam(model, lr, window=(56, 56, 16), steps=args.steps, batch_size=batch)
        lam_s = time.perf_counter() - t
        rows.append((preset, f"LAM, {args.steps} steps, LR 16x16 -> 128x128", batch, lam_s,
                     before, load(), f"DI {res.diffusion_index:.2f}"))
        before = load()
        t = time.perf_counter()
        erf = effective_receptive_field(model, n_inputs=args.inputs, size=128, batch_size=batch,
                                        generator=torch.Generator().manual_seed(0))
        erf_s = time.perf_counter() - t
        radii = "/".join(f"{erf.radii[f]:g}" for f in (0.5, 0.9, 0.99))
        rows.append((preset, f"ERF, {args.inputs} inputs, 128x128", batch, erf_s, before,
                     load(), f"r50/90/99 = {radii} px"))
        print(rows[-2], rows[-1], flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    print(f"\ntorch {torch.__version__}, {args.threads} threads, {os.cpu_count()} vCPU {cpu}, "
          f"peak RSS {peak:.0f} MiB\n")
    print("| preset | task | batch | seconds | load avg before (1/5/15 min) | after | result |")
    print("|---|---|---:|---:|---|---|---|")
    for preset, task, batch, secs, before, after, note in rows:
        print(f"| {preset} | {task} | {batch} | {secs:.1f} | {before} | {after} | {note} |")


if __name__ == "__main__":
    main()

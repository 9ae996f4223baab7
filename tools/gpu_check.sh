#!/usr/bin/env bash
# One-shot GPU check for a session that is lent a CUDA machine (issue 9, part 4).
#
#   tools/gpu_check.sh [--faces DIR] [--out FILE] [--wheels DIR] [--no-book] [--with-book]
#                      [--no-compile] [--bench-timeout S] [--book-timeout S]
#                      [--book-mode full|small] [--plain-runner]
#
# On CUDA (about 8 minutes on an H100/H200 with the default timeouts):
#   1. device name, driver, torch and CUDA versions;
#   2. benchmarks/bench_model.py --device cuda on the official preset: fp32 / bf16 / bf16+compile
#      (/ fp16) rows for inference (batch 1 and 32) and a training step (batch 16), with
#      images/s, peak memory (torch.cuda.max_memory_allocated) and ratios to the reference-like
#      fp32 eager model of the same run;
#   3. chapters 9 and 10 of the book executed in full mode (CTCNET_BOOK_MODE=full), with
#      tools/run_notebook.py when nbclient and ipykernel are importable, otherwise by running the
#      code cells in order in one Python process (what the GPU image allows without Jupyter).
# Without CUDA it says so, skips the CUDA rows, runs a tiny CPU smoke of the same benchmark
# (tiny preset, 64x64, one or two repeats) and exits 0; the book runs on CPU only with
# --with-book (add --book-mode small there: full mode trains 3,000 steps). --plain-runner uses
# the in-process cell runner even where Jupyter is installed (to test that path).
#
# The GPU machine has no network, so the offline face set must travel with the working tree:
# copy its train/ and test/ folders (about 3 MB; `ctcnet data offline-faces` builds them in
# ~/.cache/ctcnet/offline_faces) into an ignored folder of the repository and name it:
#     mkdir -p .faces && cp -r ~/.cache/ctcnet/offline_faces/{train,test,README.txt} .faces/
#     echo /.faces/ >> .git/info/exclude
#     # device run: carry [".faces"], command: tools/gpu_check.sh --faces .faces
# --faces DIR (or $CTCNET_FACES) sets CTCNET_DATA=DIR for the chapters. --wheels DIR installs
# the wheels in DIR (offline, into a temporary folder on PYTHONPATH) first, for packages the
# GPU image lacks.
#
# The markdown report goes to --out FILE, else to $OUT/gpu_check.md when $OUT is set, else to
# ./gpu_check.md; it is also printed. Exit status: 0 when every step that ran succeeded.

set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
given="$*"
faces="${CTCNET_FACES:-}"
out_file=""
wheels=""
book="auto"
compile="--compile"
bench_timeout=270
book_timeout=300
book_mode=full
plain_runner=0
smoke_timeout=900  # the CPU smoke: generous, shared CPUs can be very slow

die() { echo "gpu_check: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --faces) [[ $# -ge 2 ]] || die "--faces needs a folder"; faces="$2"; shift 2 ;;
        --out) [[ $# -ge 2 ]] || die "--out needs a file"; out_file="$2"; shift 2 ;;
        --wheels) [[ $# -ge 2 ]] || die "--wheels needs a folder"; wheels="$2"; shift 2 ;;
        --no-book) book="no"; shift ;;
        --with-book) book="yes"; shift ;;
        --no-compile) compile=""; shift ;;
        --book-mode) [[ $# -ge 2 ]] || die "--book-mode needs full or small"; book_mode="$2"; shift 2 ;;
        --plain-runner) plain_runner=1; shift ;;
        --bench-timeout) [[ $# -ge 2 ]] || die "--bench-timeout needs seconds"; bench_timeout="$2"; shift 2 ;;
        --book-timeout) [[ $# -ge 2 ]] || die "--book-timeout needs seconds"; book_timeout="$2"; shift 2 ;;
        -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
if [[ -z "$out_file" ]]; then
    if [[ -n "${OUT:-}" ]]; then out_file="$OUT/gpu_check.md"; else out_file="$PWD/gpu_check.md"; fi
fi
mkdir -p "$(dirname "$out_file")" || die "cannot create the folder of $out_file"
: > "$out_file" || die "cannot write $out_file"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ -n "${PYTHON:-}" ]]; then py="$PYTHON"
elif [[ -x "$here/.venv/bin/python" ]]; then py="$here/.venv/bin/python"
else py="$(command -v python3 || command -v python)"; fi
[[ -n "$py" ]] || die "no python found (set PYTHON)"

if [[ -n "$wheels" ]]; then
    [[ -d "$wheels" ]] || die "--wheels $wheels is not a folder"
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$work/site" \
        "$wheels"/*.whl || die "installing the wheels in $wheels failed"
    export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if [[ -n "$faces" ]]; then
    [[ -d "$faces/train" && -d "$faces/test" ]] || die "--faces $faces has no train/ and test/ folders"
    export CTCNET_DATA="$(cd "$faces" && pwd)"
fi

report() { printf '%s\n' "$@" | tee -a "$out_file"; }  # one line per argument
status=0

report "# GPU check — $(date -u '+%Y-%m-%d %H:%M UTC')"
report ""
report "Command: \`tools/gpu_check.sh $given\` (in ${here}); python: $py"
report ""
"$py" - >"$work/env.md" 2>&1 <<'EOF'
import platform, torch
print(f"- torch {torch.__version__}, Python {platform.python_version()}, CUDA build {torch.version.cuda}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"- device: {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor},"
          f" {p.multi_processor_count} SMs; cuDNN {torch.backends.cudnn.version()};"
          f" TF32 in cuDNN convolutions: {torch.backends.cudnn.allow_tf32}")
else:
    print("- device: no CUDA device visible to torch")
import ctcnet.runtime as rt
for dev in (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]:
    for training in (False, True):
        precision, why = rt.choose_precision(dev, training=training)
        print(f"- precision=\"auto\" on {dev} for {'training' if training else 'inference'}: {precision} ({why})")
EOF
[[ $? -eq 0 ]] || status=1
tee -a "$out_file" < "$work/env.md"
command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | sed 's/^/- nvidia-smi: /' | tee -a "$out_file"
has_cuda="$("$py" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)"

run_bench() {  # args: timeout, bench arguments...
    local limit="$1"; shift
    timeout "$limit" "$py" "$here/benchmarks/bench_model.py" "$@" --resume "$work/bench.jsonl" \
        > "$work/bench.md" 2> "$work/bench.err"
    local rc=$?
    cat "$work/bench.md" >> "$out_file"
    cat "$work/bench.md"
    if [[ $rc -ne 0 ]]; then
        status=1
        [[ $rc -eq 124 ]] && report "" "**bench_model.py stopped at its ${limit} s limit; rows above are complete.**"
        [[ $rc -ne 124 ]] && report "" "**bench_model.py failed (exit $rc):**" "" '```' \
            "$(tail -n 20 "$work/bench.err")" '```'
    fi
}

report ""
if [[ "$has_cuda" == "1" ]]; then
    report "## Speed and memory on CUDA (official, 128x128)"
    report ""
    run_bench "$bench_timeout" --device cuda --scenarios peak infer train $compile \
        --infer-batches 1 32 --infer-runs 10 --train-batches 16 --train-rounds 1 --train-runs 5
else
    report "## CUDA rows skipped: no CUDA device on this machine"
    report ""
    report "CUDA is not available to torch here, so the fp32/bf16/compiled CUDA rows are skipped."
    report "CPU smoke of the same benchmark instead (tiny preset, 64x64; times are not meaningful):"
    report ""
    run_bench "$smoke_timeout" --device cpu --preset tiny --size 64 --quick --scenarios infer train \
        --threads 1 --train-variants ref-like bf16
fi

if [[ "$book" == "yes" || ( "$book" == "auto" && "$has_cuda" == "1" ) ]]; then
    report ""
    report "## Chapters 9 and 10 in $book_mode mode (CTCNET_BOOK_MODE=$book_mode${CTCNET_DATA:+, CTCNET_DATA=$CTCNET_DATA})"
    report ""
    export CTCNET_BOOK_MODE="$book_mode"
    if [[ $plain_runner -eq 0 ]] && "$py" -c 'import nbclient, nbformat, ipykernel' 2>/dev/null; then
        runner="tools/run_notebook.py"
        timeout "$book_timeout" "$py" "$here/tools/run_notebook.py" \
            "$here/book/09_training.ipynb" "$here/book/10_evaluation.ipynb" > "$work/book.log" 2>&1
        rc=$?
    else
        runner="code cells in order in one process (--plain-runner, or nbclient/ipykernel not importable)"
        MPLBACKEND=Agg timeout "$book_timeout" "$py" - "$here/book/09_training.ipynb" "$here/book/10_evaluation.ipynb" \
            > "$work/book.log" 2>&1 <<'EOF'
import json, os, sys, time, traceback
failed = 0
for path in sys.argv[1:]:
    cells = [c for c in json.load(open(path))["cells"] if c["cell_type"] == "code"]
    os.chdir(os.path.dirname(os.path.abspath(path)))  # as the book build runs it
    scope, start = {"__name__": "__main__"}, time.perf_counter()
    for i, cell in enumerate(cells):
        try:
            exec(compile("".join(cell["source"]), f"{os.path.basename(path)}[cell {i}]", "exec"), scope)
            print(f"  {os.path.basename(path)} code cell {i} done at {time.perf_counter() - start:.1f} s",
                  flush=True)
        except Exception:
            failed += 1
            print(f"{path}: {time.perf_counter() - start:.1f} s FAILED in code cell {i}\n"
                  + traceback.format_exc()[-3000:], flush=True)
            break
    else:
        print(f"{path}: {time.perf_counter() - start:.1f} s ok", flush=True)
    import matplotlib.pyplot as plt
    plt.close("all")
sys.exit(1 if failed else 0)
EOF
        rc=$?
    fi
    report "Runner: $runner; limit ${book_timeout} s."
    report ""
    report '```'
    grep -E '\.ipynb: [0-9.]+ s' "$work/book.log" | sed "s#$here/##" | tee -a "$out_file"
    report '```'
    if [[ $rc -ne 0 ]]; then
        status=1
        if [[ $rc -eq 124 ]]; then report "**The chapters stopped at the ${book_timeout} s limit; end of the log:**" \
            "" '```' "$(tail -n 8 "$work/book.log")" '```'
        else report "" "**A chapter failed (exit $rc); end of its log:**" "" '```' \
            "$(tail -n 25 "$work/book.log")" '```'; fi
    fi
else
    report ""
    report "Chapters 9 and 10: not run (they run by default on CUDA; on the CPU only with --with-book)."
fi

report ""
report "gpu_check: done, exit status $status; report in $out_file"
exit "$status"

#!/usr/bin/env bash
# The chapters' Colab install cell leaves the runtime's torch, numpy and OpenCV alone.
#
#   tools/check_colab_install.sh            # run by .ci/run
#
# A Colab-like virtualenv: Python 3.12, numpy 2 (2.0.2), the OLDEST torch ctcnet declares
# (the floor of `torch>=` in pyproject.toml; PyPI's Linux build, which runs on the CPU) and
# opencv-python (Colab's OpenCV distribution, not the headless one ctcnet asks for), pillow and
# tqdm preinstalled. Then the canonical first cell of the notebooks
# (`tools/check_notebooks.py --print-first-cell`) runs there as on Colab (`google.colab` in
# sys.modules), installing from this repository's HEAD commit (git+file://localhost/... instead
# of the GitHub URL; uncommitted changes are not in it).
# It fails unless
#   * every distribution installed before is still installed at the same version afterwards
#     (`pip freeze` before/after; torch, numpy and opencv-python are named in the output),
#   * no second OpenCV distribution was installed, and `cv2` still imports,
#   * the cell printed no warning (the oldest declared torch is inside ctcnet's range),
#   * running the cell again installs nothing,
#   * `ctcnet info` and a forward pass of the shipped model work.
#
# The runtime is made with uv (the project's .venv has it: `make venv`), from uv's cache: the
# CUDA build of torch that PyPI has for Linux (~2.5 GB) is downloaded once per version and
# hard-linked into every venv that asks for it again (seconds; tools/check_plain_install.sh with
# the same torch). The cell itself runs pip, as on Colab.
#
# Environment: COLAB_PYTHON (default: python3.12 on PATH, else pyenv's 3.12.*; without one the
# machine's python3 is used, with a notice), TORCH_VERSION (default: the floor), NUMPY_VERSION
# (default 2.0.2), UV (default: .venv/bin/uv), UV_CACHE_DIR (default: uv's own cache; .ci/run
# gives its three install checks one cache of their own).
set -euo pipefail
T0=$(date +%s)
since() { echo "[$(( $(date +%s) - T0 )) s]"; }  # time since the start, on each >>> line

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
builder="${BUILD_PYTHON:-$repo/.venv/bin/python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 OMP_NUM_THREADS=1
# this machine's pip config caps torch (/etc/xdg/pip): lift it for these venvs only
export PIP_CONSTRAINT=/dev/null

floor=$("$builder" "$repo/tools/torch_floor.py")
TORCH_VERSION="${TORCH_VERSION:-$floor}"
NUMPY_VERSION="${NUMPY_VERSION:-2.0.2}"
uv="${UV:-$repo/.venv/bin/uv}"
if ! [[ -x "$uv" ]]; then
  echo "ERROR: no uv at $uv: \`make venv-dev\` installs it into .venv (or set UV)" >&2
  exit 1
fi

py312=""
for c in "${COLAB_PYTHON:-}" python3.12 /root/.pyenv/versions/3.12.*/bin/python; do
  # a pyenv shim is on PATH but fails when its version is not selected: try each one
  if [[ -n "$c" ]] && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null
  then py312=$c; break; fi
done
if [[ -n "${COLAB_PYTHON:-}" && "$py312" != "$COLAB_PYTHON" ]]; then
  echo "NOTICE: COLAB_PYTHON=$COLAB_PYTHON is not a working Python 3.12"
fi
if [[ -z "$py312" ]]; then
  py312=$(command -v python3)
  echo "NOTICE: no Python 3.12 here (set COLAB_PYTHON): the Colab-like venv uses" \
       "$("$py312" --version) instead"
fi
echo ">>> Colab-like venv: $("$py312" --version), torch==$TORCH_VERSION (the declared floor is" \
     "$floor), numpy==$NUMPY_VERSION, opencv-python, pillow, tqdm"
t0=$(date +%s)
"$uv" venv -q --seed --python "$py312" "$work/venv"  # --seed: pip in it, as on Colab
py="$work/venv/bin/python"
pip=("$py" -m pip)
"$uv" pip install -q --python "$py" "torch==$TORCH_VERSION" "numpy==$NUMPY_VERSION" \
  "opencv-python>=4.8,<5" pillow tqdm
echo "    (runtime installed in $(( $(date +%s) - t0 )) s with $("$uv" --version))"
"${pip[@]}" freeze --all | sort > "$work/before.txt"

echo ">>> the install cell, as on Colab, from git+file://localhost$repo (its HEAD commit) $(since)"
"$builder" "$repo/tools/check_notebooks.py" --print-first-cell > "$work/cell.py"
repo_url=$("$builder" -c "import sys; sys.path.insert(0, '$repo/tools'); \
from check_notebooks import read_repo_url; print(read_repo_url())")
cd "$work"  # away from the source tree
run_cell() {
  "$py" - "$work/cell.py" "git+$repo_url" "git+file://localhost$repo" <<'EOF'
import sys, types
path, url, local = sys.argv[1:]
cell = open(path, encoding="utf-8").read()
if cell.count(url) != 1:
    sys.exit(f"the install cell does not name {url} exactly once")
sys.modules["google.colab"] = types.ModuleType("google.colab")  # what makes the cell act
exec(compile(cell.replace(url, local), "install-cell", "exec"), {"__name__": "__main__"})
EOF
}
run_cell 2>&1 | tee "$work/cell1.log"
"${pip[@]}" freeze --all | sort > "$work/after.txt"

"$py" - "$work/before.txt" "$work/after.txt" <<'EOF'
import sys
before, after = (set(open(p).read().splitlines()) for p in sys.argv[1:])
changed = sorted(before - after)
if changed:
    sys.exit("ERROR: the install cell changed what the runtime had: " + ", ".join(changed))
for name in ("torch", "numpy", "opencv-python"):
    line = next((x for x in before if x.lower().startswith(name + "==")), None)
    if line is None:
        sys.exit(f"ERROR: {name} was not preinstalled")
    print(f"    kept {line}")
added = sorted(after - before)
print(f"    added {len(added)}: " + " ".join(a.split(" @ ")[0] for a in added))
others = [a for a in added if a.lower().startswith(("opencv-", "opencv_"))]
if others:
    sys.exit(f"ERROR: a second OpenCV distribution was installed: {others}")
EOF

if grep -q "^WARNING: this runtime has" "$work/cell1.log"; then
  echo "ERROR: the cell warned about this runtime (torch==$TORCH_VERSION is the declared floor)" >&2
  exit 1
fi

echo ">>> the cell again: installs nothing $(since)"
run_cell 2>&1 | tee "$work/cell2.log"
grep -q "nothing missing" "$work/cell2.log" || { echo "ERROR: the second run installed" \
  "something" >&2; exit 1; }

echo ">>> ctcnet info, a forward pass $(since)"
"$work/venv/bin/ctcnet" info
"$py" - <<'EOF'
import cv2
import torch

import ctcnet

assert "site-packages" in ctcnet.__file__, ctcnet.__file__
model = ctcnet.build_model("tiny").eval()
with torch.no_grad():
    y = model(torch.rand(1, 3, 128, 128))
assert y.shape == (1, 3, 128, 128) and torch.isfinite(y).all(), y.shape
print(f"    forward pass OK: torch {torch.__version__}, cv2 {cv2.__version__}, "
      f"output {tuple(y.shape)}")
EOF
echo ">>> Colab install cell: OK $(since)"

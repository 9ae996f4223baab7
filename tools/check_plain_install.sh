#!/usr/bin/env bash
# A plain `pip install ctcnet` (no extras) works: build the wheel, install it into a fresh
# virtualenv that holds only torch and the core dependencies, and use it as a new user would.
#
#   tools/check_plain_install.sh                       # the oldest torch ctcnet declares
#   TORCH_VERSION=2.15.0 tools/check_plain_install.sh  # .ci/run runs both
#
# Checks, from a folder outside the repository (so the source tree cannot be imported):
#   * none of the extras' packages got installed (pandas, matplotlib, ... ),
#   * `ctcnet info`, `ctcnet upscale` on a small image, `ctcnet eval` on a tiny folder (both with
#     the shipped weights, i.e. the package data), and three training steps of `tiny`.
# torch==$TORCH_VERSION (default: the floor of `torch>=` in pyproject.toml, tools/torch_floor.py)
# comes first, installed with uv: the CPU build from $TORCH_CPU_INDEX when that index is
# reachable, else PyPI's build (CUDA libraries included; it runs on the CPU), which uv downloads
# once per version into its cache ($UV_CACHE_DIR; .ci/run gives its install checks one) and
# hard-links into each venv that asks for it again. The wheel is then installed with pip, as a
# user would. $PLAIN_PYTHON is the venv's interpreter (default python3). Needs the project's
# .venv (`make venv-dev`: uv, and what builds the wheel).
set -euo pipefail
T0=$(date +%s)
since() { echo "[$(( $(date +%s) - T0 )) s]"; }  # time since the start, on each >>> line

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
builder="${BUILD_PYTHON:-$repo/.venv/bin/python}"
TORCH_VERSION="${TORCH_VERSION:-$("$builder" "$repo/tools/torch_floor.py")}"
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
uv="${UV:-$repo/.venv/bin/uv}"
if ! [[ -x "$uv" ]]; then
  echo "ERROR: no uv at $uv: \`make venv-dev\` installs it into .venv (or set UV)" >&2
  exit 1
fi
# this machine's pip config caps torch below the newest release (/etc/xdg/pip): not for this venv
# (uv does not read pip's config; pip installs the wheel next to the torch uv put there)
export PIP_CONSTRAINT=/dev/null
# --no-compile below (and uv's default): these commands import a small part of torch, so
# byte-compiling all of it at install time is wasted work.
export PIP_DISABLE_PIP_VERSION_CHECK=1 OMP_NUM_THREADS=1

echo ">>> building the wheel $(since)"
# No build isolation: the project's venv already has setuptools and wheel, and CI stays offline.
"$builder" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" "$repo"
wheel=$(ls "$work"/dist/ctcnet-*.whl)
"$builder" - "$wheel" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
needed = ["ctcnet/weights/ctcnet_reduced_offline.pt", "ctcnet/weights/ablations/logs/full_s1_200steps.csv",
          "ctcnet/weights/ablations/test_scores.csv"]
missing = [n for n in needed if n not in names]
sys.exit(f"the wheel lacks {missing}" if missing else None)
EOF

plain_python="${PLAIN_PYTHON:-$(command -v python3)}"
echo ">>> fresh virtualenv ($("$plain_python" --version)): torch==$TORCH_VERSION, then the wheel" \
  "without extras"
t0=$(date +%s)
"$uv" venv -q --seed --python "$plain_python" "$work/venv"  # --seed: with pip, like python -m venv
py="$work/venv/bin/python"
if "$py" -c "import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/torch/', method='HEAD'), timeout=8)" "$TORCH_CPU_INDEX" 2>/dev/null; then
  "$uv" pip install -q --python "$py" "torch==$TORCH_VERSION" --index-url "$TORCH_CPU_INDEX"
else
  "$uv" pip install -q --python "$py" "torch==$TORCH_VERSION"
fi
echo "    (torch installed in $(( $(date +%s) - t0 )) s with $("$uv" --version))"
"$py" -m pip install -q --no-compile "$wheel"
"$py" - "$TORCH_VERSION" <<'EOF'
import sys
import torch
release = lambda v: [int(x) for x in v.split("+")[0].split(".")] + [0] * 3
if release(torch.__version__)[:3] != release(sys.argv[1])[:3]:
    sys.exit(f"ERROR: installing ctcnet changed torch to {torch.__version__}")
print(f"    torch {torch.__version__} kept")
EOF
ctcnet="$work/venv/bin/ctcnet"

cd "$work"  # away from the source tree: what runs is the installed package
"$py" - <<'EOF'
import importlib.util, sys
extras = ["pandas", "matplotlib", "seaborn", "captum", "ipywidgets", "torchinfo", "skimage"]
present = [m for m in extras if importlib.util.find_spec(m) is not None]
sys.exit(f"a plain install brought optional packages: {present}" if present else None)
import ctcnet
assert "site-packages" in ctcnet.__file__, ctcnet.__file__
EOF

echo ">>> ctcnet info $(since)"
"$ctcnet" info

# Sample images made here: a plain install ships no photos. Smooth random faces-sized images;
# a 32x32 image is upscaled as one tiny face (no detector involved).
"$py" - <<'EOF'
import numpy as np
from PIL import Image
from pathlib import Path
rng = np.random.default_rng(0)
folder = Path("faces")
folder.mkdir()
for i in range(3):
    blocks = rng.normal(128, 40, (8, 8, 3))
    img = np.clip(np.kron(blocks, np.ones((16, 16, 1))), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(folder / f"{i}.png")
Image.open(folder / "0.png").resize((32, 32), Image.BICUBIC).save("tiny_face.png")
EOF

echo ">>> ctcnet upscale $(since)"
"$ctcnet" upscale tiny_face.png -o upscaled
"$py" - <<'EOF2'
from PIL import Image
size = Image.open("upscaled/tiny_face_x8.png").size
assert size == (256, 256), f"ERROR: upscale wrote a {size} image, not the 32 px photo enlarged x8"
EOF2

echo ">>> ctcnet eval $(since)"
"$ctcnet" eval --data faces --out evaluation
test -s evaluation/per_image.csv

echo ">>> ctcnet train (3 steps of tiny) $(since)"
"$ctcnet" train --preset tiny --data faces --steps 3 --batch-size 2 --hr-size 128 \
  --device cpu --no-progress --out run
test -s run/last.pt

echo ">>> plain install: OK $(since)"

#!/usr/bin/env bash
# A plain `pip install ctcnet` (no extras) works: build the wheel, install it into a fresh
# virtualenv that holds only torch and the core dependencies, and use it as a new user would.
#
#   tools/check_plain_install.sh          # run by .ci/run after the tests
#
# Checks, from a folder outside the repository (so the source tree cannot be imported):
#   * none of the extras' packages got installed (pandas, matplotlib, ... ),
#   * `ctcnet info`, `ctcnet upscale` on a small image, `ctcnet eval` on a tiny folder (both with
#     the shipped weights, i.e. the package data), and three training steps of `tiny`.
# torch==$TORCH_VERSION (default 2.13.0, the lower bound in pyproject.toml) comes first: the CPU
# build from $TORCH_CPU_INDEX when that index is reachable, else from the configured pip indexes.
# Needs the project's .venv (made by `make test`) to build the wheel.
set -euo pipefail

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
builder="${BUILD_PYTHON:-$repo/.venv/bin/python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# --no-compile below: these commands import a small part of torch, so byte-compiling all of it at
# install time is wasted work (the whole script: 57 s user CPU with it, 50 s without; 2m50s wall at
# load average ~5 on 2 cores).
export PIP_DISABLE_PIP_VERSION_CHECK=1 OMP_NUM_THREADS=1

echo ">>> building the wheel"
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

echo ">>> fresh virtualenv: torch==$TORCH_VERSION, then the wheel without extras"
"$(command -v python3)" -m venv "$work/venv"
py="$work/venv/bin/python"
if "$py" -c "import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/torch/', method='HEAD'), timeout=8)" "$TORCH_CPU_INDEX" 2>/dev/null; then
  "$py" -m pip install -q --no-compile "torch==$TORCH_VERSION" --index-url "$TORCH_CPU_INDEX"
else
  "$py" -m pip install -q --no-compile "torch==$TORCH_VERSION"
fi
"$py" -m pip install -q --no-compile "$wheel"
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

echo ">>> ctcnet info"
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

echo ">>> ctcnet upscale"
"$ctcnet" upscale tiny_face.png -o upscaled
ls upscaled | grep -q "_sr" || { echo "ERROR: upscale wrote no SR face" >&2; exit 1; }

echo ">>> ctcnet eval"
"$ctcnet" eval --data faces --out evaluation
test -s evaluation/per_image.csv

echo ">>> ctcnet train (3 steps of tiny)"
"$ctcnet" train --preset tiny --data faces --steps 3 --batch-size 2 --hr-size 128 \
  --device cpu --no-progress --out run
test -s run/last.pt

echo ">>> plain install: OK"

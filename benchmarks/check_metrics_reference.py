"""Check ctcnet's VIF and LPIPS against independent implementations, image by image.

References (never dependencies of ctcnet; installed only into a throwaway virtualenv):

* VIF: ``sewar.full_ref.vifp`` (a NumPy port of Sheikh & Bovik's ``vifp_mscale.m``) and
  ``piq.vif_p`` (PyTorch), both given the same grey image as ctcnet (the ``ctcnet`` protocol's
  truncated BT.601 Y, as float64 on 0..255). For context, also pyiqa's port of the
  *wavelet-domain* VIF (``vifvec``) when its file is importable: a different definition, shown to
  say which of the two the paper's numbers look like.
* LPIPS: the ``lpips`` package's ``LPIPS(net='alex', version='0.1')`` with ctcnet's random
  stand-in AlexNet (:func:`ctcnet.lpips.standin_backbone`) copied into its backbone and the real
  v0.1 heads: the same function of the same weights, so the two must agree to float precision.
  (The ImageNet AlexNet itself could not be downloaded where this was written.)

Run from the repository root (the reference venv needs Python 3.11 for torch 2.14.1)::

    python -m venv /tmp/mref
    /tmp/mref/bin/pip install torch==2.14.1 torchvision==0.29.1 lpips==0.1.4 piq==0.8.0 \\
        sewar==0.4.10 scipy
    /tmp/mref/bin/pip install --no-deps pyiqa==0.1.16          # optional: wavelet VIF
    PYTHONPATH=. python benchmarks/check_metrics_reference.py --reference-python /tmp/mref/bin/python

It scores the offline test faces (``ctcnet data offline-faces``; bicubic and the shipped model)
and a few distortions of skimage's astronaut photo, prints the largest differences, and with
``--write-fixture`` stores the references' values for the astronaut pairs in
``tests/fixtures/metrics_reference.json``, which ``tests/test_metrics_reference.py`` checks on
every run (the recipe of those pairs is :func:`fixture_pairs`, pure NumPy).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "metrics_reference.json"
FIXTURE_SIZE = 96
STANDIN_SEED = 0


# ------------------------------------------------------------------------------------------ inputs
def fixture_pairs() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names, references and distorted versions (uint8, N x 96 x 96 x 3) made with NumPy only
    from skimage's astronaut photo (NASA, public domain): two crops, four distortions each."""
    from skimage import data

    photo = data.astronaut()
    n = FIXTURE_SIZE
    crops = {"face": photo[30:30 + 2 * n:2, 160:160 + 2 * n:2], "suit": photo[300:300 + n, 100:100 + n]}
    rng = np.random.default_rng(2024)
    names, refs, dists = [], [], []
    for crop_name, ref in crops.items():
        ref = np.ascontiguousarray(ref)
        f = ref.astype(np.float64)
        blocks = f.reshape(n // 8, 8, n // 8, 8, 3).mean(axis=(1, 3))
        box = sum(np.roll(np.roll(f, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
        variants = {
            "x8_blocks": np.kron(blocks, np.ones((8, 8, 1))),
            "noise10": f + rng.normal(0, 10, f.shape),
            "box3": box,
            "contrast60": 128 + 0.6 * (f - 128),
        }
        for variant, dist in variants.items():
            names.append(f"{crop_name}/{variant}")
            refs.append(ref)
            dists.append(np.clip(np.round(dist), 0, 255).astype(np.uint8))
    return names, np.stack(refs), np.stack(dists)


def face_pairs(limit: int) -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    """The offline test faces: HR with its bicubic x8 input, and with the shipped model's output."""
    import torch

    from ctcnet.data.datasets import FaceSRDataset
    from ctcnet.data.offline_faces import default_root
    from ctcnet.pixels import to_uint8
    from ctcnet.weights import load_model

    folder = default_root() / "test"
    if not folder.is_dir():
        print(f"(no offline test faces at {folder}: build them with `ctcnet data offline-faces`)")
        return {}
    data = FaceSRDataset(folder)
    n = len(data) if limit <= 0 else min(limit, len(data))
    items = [data[i] for i in range(n)]
    names = [it["name"] for it in items]
    hr = np.stack([to_uint8(it["hr"]) for it in items])
    up = torch.stack([it["lr_up"] for it in items])
    model = load_model(None).eval()
    with torch.no_grad():
        sr = model(up)
    return {
        "test faces, bicubic": (names, hr, to_uint8(up)),
        "test faces, shipped model": (names, hr, to_uint8(sr)),
    }


# -------------------------------------------------------------------------------- reference side
def run_reference(inputs: Path, output: Path) -> None:
    """In the throwaway venv: score with sewar, piq, lpips (and pyiqa's wavelet VIF if present).
    Imports nothing of ctcnet."""
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=UserWarning)  # torchvision's 'pretrained' notes
    d = np.load(inputs)
    y_ref, y_dist = d["y_ref"], d["y_dist"]
    out: dict[str, object] = {}

    from sewar.full_ref import vifp

    out["sewar_vifp"] = [float(vifp(r, x)) for r, x in zip(y_ref, y_dist)]

    import piq

    t = lambda a: torch.from_numpy(a[:, None]).double()  # noqa: E731
    out["piq_vif_p"] = piq.vif_p(t(y_dist), t(y_ref), data_range=255.0, reduction="none").tolist()

    import lpips

    backbone = torch.load(str(d["backbone"]), map_location="cpu", weights_only=True)
    slices = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}  # torchvision features index -> lpips slice
    mapped = {f"slice{slices[int(k.split('.')[1])]}.{k.split('.', 1)[1]}": v
              for k, v in backbone.items()}
    rgb = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1  # noqa: E731
    for key, heads in (("lpips_pkg_standin", d["heads"]),
                       ("lpips_pkg_standin_heads", d["standin_heads"])):
        net = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True,
                          model_path=str(heads), verbose=False).eval()
        net.net.load_state_dict(mapped, strict=True)
        with torch.no_grad():
            out[key] = net(rgb(d["rgb_dist"]), rgb(d["rgb_ref"])).flatten().tolist()

    out["pyiqa_wavelet_vif"] = _pyiqa_wavelet_vif(d["rgb_dist"], d["rgb_ref"])
    from importlib.metadata import version

    out["versions"] = {name: version(name) for name in ("torch", "piq", "sewar", "lpips")}
    output.write_text(json.dumps(out))


def _pyiqa_wavelet_vif(dist: np.ndarray, ref: np.ndarray) -> list[float] | None:
    """pyiqa's VIF (a port of the wavelet-domain ``vifvec``), loaded from its file alone:
    pyiqa's package ``__init__`` needs dependencies this check does not install."""
    import importlib.util
    import types

    spec = importlib.util.find_spec("pyiqa")
    if spec is None or not spec.submodule_search_locations:
        return None
    import torch

    site = Path(list(spec.submodule_search_locations)[0])
    for name, path in (("pyiqa", site), ("pyiqa.utils", site / "utils")):
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        sys.modules[name] = module
    registry = types.ModuleType("pyiqa.utils.registry")

    class _Registry:
        def register(self, *args, **kwargs):
            return args[0] if args else (lambda f: f)

    registry.ARCH_REGISTRY = _Registry()
    sys.modules["pyiqa.utils.registry"] = registry
    loaded = {}
    for name, path in (("pyiqa.utils.color_util", site / "utils" / "color_util.py"),
                       ("pyiqa.archs.vif_arch", site / "archs" / "vif_arch.py")):
        file_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(file_spec)
        sys.modules[name] = module
        file_spec.loader.exec_module(module)
        loaded[name] = module
    t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    with torch.no_grad():
        return loaded["pyiqa.archs.vif_arch"].VIF()(t(dist), t(ref)).tolist()


# ------------------------------------------------------------------------------------- our side
def ours(ref: np.ndarray, dist: np.ndarray, backbone: dict, heads: Path) -> dict[str, list[float]]:
    import torch

    from ctcnet import metrics as M
    from ctcnet.lpips import LPIPS, standin_heads

    out = {"vif": M.vif(dist, ref, "ctcnet", reduction="none")}
    for key, state in (
        ("lpips_standin", torch.load(heads, map_location="cpu", weights_only=True)),
        ("lpips_standin_heads", standin_heads(STANDIN_SEED + 1)),
    ):
        net = LPIPS()
        net.load_backbone(backbone)
        net.load_heads(state)
        out[key] = M.lpips(dist, ref, reduction="none", network=net)
    return out


def compare(label: str, names, ref, dist, reference_python: str, backbone_path: Path,
            heads: Path, standin_heads_path: Path, backbone: dict) -> dict:
    from ctcnet import metrics as M

    with tempfile.TemporaryDirectory() as tmp:
        inputs, output = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        np.savez(inputs, y_ref=M.rgb_to_y(ref, "ctcnet").astype(np.float64),
                 y_dist=M.rgb_to_y(dist, "ctcnet").astype(np.float64), rgb_ref=ref,
                 rgb_dist=dist, backbone=str(backbone_path), heads=str(heads),
                 standin_heads=str(standin_heads_path))
        subprocess.run([reference_python, __file__, "--as-reference", str(inputs), str(output)],
                       check=True)
        theirs = json.loads(output.read_text())
    mine = ours(ref, dist, backbone, heads)
    rows = {
        "VIF vs sewar.vifp": (mine["vif"], theirs["sewar_vifp"]),
        "VIF vs piq.vif_p": (mine["vif"], theirs["piq_vif_p"]),
        "LPIPS (stand-in backbone, real v0.1 heads) vs lpips pkg": (
            mine["lpips_standin"], theirs["lpips_pkg_standin"]),
        "LPIPS (stand-in backbone and heads) vs lpips pkg": (
            mine["lpips_standin_heads"], theirs["lpips_pkg_standin_heads"]),
    }
    print(f"\n### {label} ({len(names)} pairs; reference packages {theirs['versions']})\n")
    print("| check | ours, mean | reference, mean | max abs difference |")
    print("|---|---|---|---|")
    for check, (a, b) in rows.items():
        a, b = np.asarray(a), np.asarray(b)
        print(f"| {check} | {a.mean():.6f} | {b.mean():.6f} | {np.abs(a - b).max():.2e} |")
    if theirs.get("pyiqa_wavelet_vif") is not None:
        w = np.asarray(theirs["pyiqa_wavelet_vif"])
        print(f"| (other definition) wavelet-domain VIF, pyiqa | - | {w.mean():.4f} | - |")
    return {"names": names, "ours": mine, "theirs": theirs}


def vif_variants(names, hr: np.ndarray, up: np.ndarray) -> None:
    """How far the grey image and the border crop move the bicubic VIFp of the test faces."""
    from ctcnet import metrics as M

    def grey(fn):
        return float(np.nanmean([M._vif_single(fn(h), fn(u)) for h, u in zip(hr, up)]))

    full_range = np.array([0.299, 0.587, 0.114])
    rows = {f"protocol {p!r} (its Y and crop)": float(np.mean(M.vif(up, hr, p, reduction="none")))
            for p in M.PROTOCOLS}
    rows["full-range Y = 0.299R + 0.587G + 0.114B, float, no crop"] = grey(
        lambda a: a.astype(np.float64) @ full_range)
    rows["mean of VIFp over R, G, B, no crop"] = float(np.mean(
        [np.mean([M._vif_single(h[..., c].astype(np.float64), u[..., c].astype(np.float64))
                  for c in range(3)]) for h, u in zip(hr, up)]))
    print(f"\n### Bicubic VIFp of the {len(names)} test faces under other grey images and crops\n")
    print("| grey image | mean VIFp |")
    print("|---|---|")
    for label, value in rows.items():
        print(f"| {label} | {value:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-python", help="python of the throwaway reference venv")
    parser.add_argument("--limit", type=int, default=0, help="only the first N test faces")
    parser.add_argument("--write-fixture", action="store_true",
                        help=f"store the references' values for the astronaut pairs in {FIXTURE}")
    parser.add_argument("--as-reference", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_reference:
        run_reference(Path(args.as_reference[0]), Path(args.as_reference[1]))
        return
    if not args.reference_python:
        parser.error("--reference-python is required (see the module docstring)")

    import torch

    from ctcnet.lpips import fetch_lpips_heads, standin_backbone, standin_heads

    heads = fetch_lpips_heads(progress=False)  # the real v0.1 heads, from the lpips wheel
    backbone = standin_backbone(STANDIN_SEED)
    with tempfile.TemporaryDirectory() as tmp:
        backbone_path = Path(tmp) / "standin_alexnet.pth"
        torch.save(backbone, backbone_path)
        heads_path = Path(tmp) / "standin_heads.pth"
        torch.save(standin_heads(STANDIN_SEED + 1), heads_path)
        sets = {"astronaut distortions (fixture pairs)": fixture_pairs(), **face_pairs(args.limit)}
        results = {label: compare(label, *pairs, args.reference_python, backbone_path, heads,
                                  heads_path, backbone)
                   for label, pairs in sets.items()}
    if "test faces, bicubic" in sets:
        vif_variants(*sets["test faces, bicubic"])
    for label, res in results.items():
        if label.startswith("test faces"):
            v = np.asarray(res["ours"]["vif"])
            print(f"\n{label}: our VIF mean {v.mean():.4f} (median {np.median(v):.4f}, "
                  f"min {v.min():.4f}, max {v.max():.4f})")
    if args.write_fixture:
        fixture = results["astronaut distortions (fixture pairs)"]
        record = {
            "about": "reference values for benchmarks/check_metrics_reference.py:fixture_pairs; "
                     "regenerate with its --write-fixture",
            "standin_seed": STANDIN_SEED,
            "standin_heads_seed": STANDIN_SEED + 1,
            "names": fixture["names"],
            "versions": fixture["theirs"]["versions"],
            **{k: fixture["theirs"][k] for k in ("sewar_vifp", "piq_vif_p", "lpips_pkg_standin",
                                                 "lpips_pkg_standin_heads")},
        }
        FIXTURE.write_text(json.dumps(record, indent=1) + "\n")
        print(f"\nwrote {FIXTURE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

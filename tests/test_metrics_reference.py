"""VIF and LPIPS against independent implementations.

* Always: the values that sewar, piq and the ``lpips`` package computed for the pairs of
  ``benchmarks/check_metrics_reference.py:fixture_pairs`` (stored in
  ``tests/fixtures/metrics_reference.json`` by that script's ``--write-fixture``), LPIPS with the
  random stand-in backbone and heads of :mod:`ctcnet.lpips`. With the real v0.1 heads too, where
  they are in the LPIPS cache (``ctcnet eval --metrics lpips`` puts them there) or may be fetched
  (``CTCNET_NETWORK_TESTS=1``).
* When the reference package is importable here: the same comparison live, on those pairs, the
  offline test faces (when built) and a photo, so that a change on either side shows.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ctcnet import metrics as M
from ctcnet.errors import UnavailableError
from ctcnet.lpips import (
    LPIPS,
    LPIPS_HEADS_FILE,
    LPIPS_HEADS_SHA256,
    fetch_lpips_heads,
    lpips_cache_dir,
    standin_backbone,
    standin_heads,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = json.loads((ROOT / "tests" / "fixtures" / "metrics_reference.json").read_text())


def _check_script():
    spec = importlib.util.spec_from_file_location(
        "check_metrics_reference", ROOT / "benchmarks" / "check_metrics_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pairs():
    names, ref, dist = _check_script().fixture_pairs()
    assert names == FIXTURE["names"]
    return ref, dist


@pytest.fixture(scope="module")
def real_heads(tmp_path_factory):
    from ctcnet.data.fetch import file_digest

    cached = lpips_cache_dir() / LPIPS_HEADS_FILE
    if cached.is_file() and file_digest(cached) == LPIPS_HEADS_SHA256:
        return cached
    if os.environ.get("CTCNET_NETWORK_TESTS") != "1":
        pytest.skip(f"no LPIPS heads at {cached}; set CTCNET_NETWORK_TESTS=1 to fetch them")
    try:
        return fetch_lpips_heads(tmp_path_factory.mktemp("lpips"), progress=False)
    except UnavailableError as exc:
        pytest.skip(f"the lpips wheel cannot be fetched here: {exc}")


def _standin(heads: dict) -> LPIPS:
    net = LPIPS()
    net.load_backbone(standin_backbone(FIXTURE["standin_seed"]))
    net.load_heads(heads)
    return net


@pytest.fixture(scope="module")
def standin_lpips(real_heads):
    return _standin(torch.load(real_heads, map_location="cpu", weights_only=True))


def offline_test_faces():
    from ctcnet.data.offline_faces import default_root

    folder = default_root() / "test"
    if not folder.is_dir():
        return None
    from PIL import Image

    from ctcnet.data.degradation import degrade

    hr = [Image.open(p).convert("RGB") for p in sorted(folder.glob("*.png"))]
    return np.stack([np.asarray(h) for h in hr]), np.stack([np.asarray(degrade(h)[1]) for h in hr])


# ------------------------------------------------------------------- stored reference values
def test_vif_equals_sewar_and_piq_stored_values(pairs):
    ref, dist = pairs
    ours = np.array(M.vif(dist, ref, "ctcnet", reduction="none"))
    # sewar is a float64 NumPy port of the authors' MATLAB code: equal up to rounding
    assert np.abs(ours - FIXTURE["sewar_vifp"]).max() < 1e-12
    # piq adds 1e-8 to numerator and denominator and thresholds at 1e-8 instead of 1e-10
    assert np.abs(ours - FIXTURE["piq_vif_p"]).max() < 1e-8
    assert np.ptp(ours) > 0.5  # the pairs span the scale: a constant would not pass


def test_lpips_equals_the_lpips_package_stored_values_offline(pairs):
    ref, dist = pairs
    net = _standin(standin_heads(FIXTURE["standin_heads_seed"]))
    ours = np.array(M.lpips(dist, ref, reduction="none", network=net))
    theirs = np.array(FIXTURE["lpips_pkg_standin_heads"])
    assert np.abs(ours - theirs).max() < 1e-6
    assert len(set(np.round(theirs, 6))) == len(theirs)  # eight different distances


def test_lpips_with_the_real_heads_equals_the_lpips_package_stored_values(pairs, standin_lpips):
    ref, dist = pairs
    ours = np.array(M.lpips(dist, ref, reduction="none", network=standin_lpips))
    theirs = np.array(FIXTURE["lpips_pkg_standin"])
    assert np.abs(ours - theirs).max() < 1e-6


# ------------------------------------------------------------- live, when the package is here
def test_vif_matches_sewar_live_on_the_test_faces_and_a_photo(pairs):
    full_ref = pytest.importorskip("sewar.full_ref")
    ref, dist = pairs
    sets = [(ref, dist)]
    faces = offline_test_faces()
    if faces is not None:
        sets.append(faces)
    for hr, up in sets:
        y_hr = M.rgb_to_y(hr, "ctcnet").astype(np.float64)
        y_up = M.rgb_to_y(up, "ctcnet").astype(np.float64)
        theirs = np.array([full_ref.vifp(a, b) for a, b in zip(y_hr, y_up)])
        ours = np.array(M.vif(up, hr, "ctcnet", reduction="none"))
        assert np.abs(ours - theirs).max() < 1e-12


def test_vif_matches_piq_live(pairs):
    piq = pytest.importorskip("piq")
    ref, dist = pairs
    y = lambda a: torch.from_numpy(M.rgb_to_y(a, "ctcnet").astype(np.float64))[:, None]  # noqa: E731
    theirs = piq.vif_p(y(dist), y(ref), data_range=255.0, reduction="none").numpy()
    assert np.abs(np.array(M.vif(dist, ref, reduction="none")) - theirs).max() < 1e-8


def test_lpips_matches_the_lpips_package_live(pairs, real_heads, standin_lpips):
    lpips = pytest.importorskip("lpips")
    ref, dist = pairs
    theirs_net = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True,
                             model_path=str(real_heads), verbose=False).eval()
    slices = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
    state = {f"slice{slices[int(k.split('.')[1])]}.{k.split('.', 1)[1]}": v
             for k, v in standin_backbone(FIXTURE["standin_seed"]).items()}
    theirs_net.net.load_state_dict(state, strict=True)
    t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1  # noqa: E731
    with torch.no_grad():
        theirs = theirs_net(t(dist), t(ref)).flatten().numpy()
    ours = np.array(M.lpips(dist, ref, reduction="none", network=standin_lpips))
    assert np.abs(ours - theirs).max() < 1e-6

"""LPIPS (ctcnet.lpips): properties on stand-in weights, fetching and verifying the weight files,
and a one-line error for every bad input. No test here needs the network: downloads are served
by a fake ``urlopen``. (Agreement with the ``lpips`` package: tests/test_metrics_reference.py.)"""

from __future__ import annotations

import hashlib
import io
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest
import torch

from ctcnet import lpips as L
from ctcnet import metrics as M
from ctcnet.errors import ChecksumError, WeightsUnavailableError


@pytest.fixture(scope="module")
def net() -> L.LPIPS:
    model = L.LPIPS()
    model.load_backbone(L.standin_backbone(0))
    model.load_heads(L.standin_heads(1))
    return model


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    base = np.kron(rng.normal(128, 40, (4, 8, 8, 3)), np.ones((1, 8, 8, 1)))
    hr = np.clip(base + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8)
    noisy = np.clip(hr + rng.normal(0, 20, hr.shape), 0, 255).astype(np.uint8)
    return hr, noisy


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty LPIPS cache and an empty torch hub (no torchvision copy of AlexNet)."""
    monkeypatch.setenv("CTCNET_LPIPS_DIR", str(tmp_path / "lpips"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "lpips"


def offline(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


class _Response(io.BytesIO):
    status = 200

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data)), "Content-Type": "application/zip"}


def serve(monkeypatch, files: dict[str, bytes]) -> list[str]:
    """Answer urlopen from ``files`` (url -> bytes); return the list of requested urls."""
    asked = []

    def fake(request, timeout=None):
        url = request.full_url if hasattr(request, "full_url") else request
        asked.append(url)
        return _Response(files[url])

    monkeypatch.setattr(urllib.request, "urlopen", fake)
    return asked


def fake_wheel(member: bytes, marker: str) -> bytes:
    """A zip laid out like the lpips wheel, whose code would leave ``marker`` if it ever ran."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("lpips/__init__.py", f"open({marker!r}, 'w').write('ran')\n")
        z.writestr(L.LPIPS_HEADS_MEMBER, member)
    return buf.getvalue()


def saved(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


# ------------------------------------------------------------------------------ the distance
def test_lpips_of_identical_images_is_zero_symmetric_and_grows_with_noise(net, faces):
    hr, noisy = faces
    assert M.lpips(hr, hr, reduction="none", network=net) == [0.0] * len(hr)
    a = M.lpips(noisy, hr, reduction="none", network=net)
    assert np.allclose(a, M.lpips(hr, noisy, reduction="none", network=net), rtol=1e-5)
    rng = np.random.default_rng(4)
    noisier = np.clip(hr + rng.normal(0, 60, hr.shape), 0, 255).astype(np.uint8)
    b = M.lpips(noisier, hr, reduction="none", network=net)
    assert all(0 < x < y for x, y in zip(a, b))


def test_lpips_batches_and_tensors_score_as_single_uint8_images(net, faces):
    hr, noisy = faces
    per = M.lpips(noisy, hr, reduction="none", network=net, batch_size=3)
    assert per == pytest.approx([M.lpips(n, h, network=net) for n, h in zip(noisy, hr)], rel=1e-5)
    assert M.lpips(noisy, hr, network=net) == pytest.approx(np.mean(per))
    from ctcnet.pixels import to_tensor, to_uint8

    t = torch.stack([to_tensor(x) for x in noisy]), torch.stack([to_tensor(x) for x in hr])
    assert M.lpips(*t, reduction="none", network=net) == pytest.approx(
        M.lpips(to_uint8(t[0]), to_uint8(t[1]), reduction="none", network=net), rel=1e-6
    )


def test_lpips_refuses_images_smaller_than_31_px_with_one_line(net, faces):
    hr, noisy = faces
    assert M.lpips(noisy[0, :31, :31], hr[0, :31, :31], network=net) > 0
    with pytest.raises(ValueError, match="at least 31x31, got 30x40") as err:
        M.lpips(noisy[0, :30, :40], hr[0, :30, :40], network=net)
    one_line(err)
    with pytest.raises(ValueError, match="shapes differ"):
        M.lpips(noisy[0], hr[0, :60], network=net)
    with pytest.raises(ValueError, match="one shape"):
        net(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 32))


# ------------------------------------------------------------------------- the weight files
def test_lpips_weights_missing_offline_is_one_line_saying_what_to_fetch(cache, monkeypatch):
    offline(monkeypatch)
    with pytest.raises(WeightsUnavailableError) as err:  # nothing cached: the heads come first
        L.load_lpips()
    text = one_line(err)
    assert "offline" in text and L.LPIPS_WHEEL_URL in text and L.LPIPS_HEADS_MEMBER in text
    assert not cache.exists() or not any(cache.iterdir())  # no partial file left behind
    cache.mkdir(parents=True, exist_ok=True)
    (cache / L.LPIPS_HEADS_FILE).write_bytes(saved(L.standin_heads()))
    with pytest.raises(WeightsUnavailableError) as err:  # heads here, backbone missing
        L.load_lpips()
    text = one_line(err)
    assert L.ALEXNET_URL in text and str(cache) in text and "leave lpips out" in text
    assert sorted(p.name for p in cache.iterdir()) == [L.LPIPS_HEADS_FILE]  # no .part left


def test_lpips_weights_missing_without_download_names_the_file(cache):
    with pytest.raises(WeightsUnavailableError, match="LPIPS weights not found") as err:
        L.fetch_lpips_weights(download=False)
    assert L.ALEXNET_FILE in one_line(err) and L.ALEXNET_URL in str(err.value)
    assert not cache.exists()  # nothing created


def test_lpips_heads_missing_without_download_names_the_wheel(cache, tmp_path):
    hub = tmp_path / "torch" / "hub" / "checkpoints" / L.ALEXNET_FILE
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"y")
    with pytest.raises(WeightsUnavailableError, match="LPIPS weights not found") as err:
        L.fetch_lpips_weights(download=False)
    assert L.LPIPS_HEADS_FILE in one_line(err) and L.LPIPS_WHEEL_URL in str(err.value)


def test_lpips_cache_folder_that_is_a_file_is_one_line_error(cache):
    from ctcnet.errors import DataFolderError

    cache.write_text("not a folder")
    with pytest.raises(DataFolderError, match="LPIPS cache folder .* is not a folder") as err:
        L.fetch_lpips_weights()
    one_line(err)


def test_lpips_damaged_backbone_file_is_refused_naming_it(cache):
    cache.mkdir(parents=True)
    (cache / L.LPIPS_HEADS_FILE).write_bytes(saved(L.standin_heads()))
    (cache / L.ALEXNET_FILE).write_bytes(b"not the alexnet file")
    with pytest.raises(ChecksumError) as err:
        L.load_lpips(download=False)
    text = one_line(err)
    assert str(cache / L.ALEXNET_FILE) in text and "delete it" in text


def test_lpips_uses_torchvisions_cached_alexnet(cache, tmp_path):
    cache.mkdir(parents=True)
    (cache / L.LPIPS_HEADS_FILE).write_bytes(b"x")
    hub = tmp_path / "torch" / "hub" / "checkpoints" / L.ALEXNET_FILE
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"y")
    assert L.fetch_lpips_weights(download=False).backbone == hub


def test_lpips_heads_come_out_of_the_wheel_without_running_it(cache, monkeypatch, tmp_path):
    member = saved(L.standin_heads(5))
    marker = tmp_path / "the wheel's code ran"
    wheel = fake_wheel(member, str(marker))
    monkeypatch.setattr(L, "LPIPS_WHEEL_SHA256", sha(wheel))
    monkeypatch.setattr(L, "LPIPS_HEADS_SHA256", sha(member))
    asked = serve(monkeypatch, {L.LPIPS_WHEEL_URL: wheel})
    heads = L.fetch_lpips_heads(progress=False)
    assert heads == cache / L.LPIPS_HEADS_FILE and heads.read_bytes() == member
    assert asked == [L.LPIPS_WHEEL_URL] and not marker.exists()
    assert sorted(p.name for p in cache.iterdir()) == [L.LPIPS_HEADS_FILE]  # wheel not kept
    assert L.fetch_lpips_heads(progress=False) == heads and len(asked) == 1  # cached


def test_lpips_wheel_member_with_another_digest_is_refused(cache, monkeypatch, tmp_path):
    wheel = fake_wheel(b"tampered heads", str(tmp_path / "ran"))
    monkeypatch.setattr(L, "LPIPS_WHEEL_SHA256", sha(wheel))
    serve(monkeypatch, {L.LPIPS_WHEEL_URL: wheel})
    with pytest.raises(ChecksumError) as err:
        L.fetch_lpips_heads(progress=False)
    assert f"{L.LPIPS_WHEEL_FILE}::{L.LPIPS_HEADS_MEMBER}" in one_line(err)
    assert not (cache / L.LPIPS_HEADS_FILE).exists()


def test_lpips_wheel_download_with_another_digest_is_refused(cache, monkeypatch):
    serve(monkeypatch, {L.LPIPS_WHEEL_URL: b"PK not the wheel"})
    with pytest.raises(ChecksumError, match="sha256 mismatch for the download of") as err:
        L.fetch_lpips_heads(progress=False)
    one_line(err)
    assert [p.name for p in cache.iterdir()] == []


def test_lpips_files_of_the_wrong_layout_are_refused_with_one_line(tmp_path):
    backbone = L.standin_backbone(0)
    heads = L.standin_heads(1)
    cases = [
        ({k: v for k, v in backbone.items() if k != "features.6.bias"}, heads,
         "is not torchvision's AlexNet state dict (no features.6.bias)"),
        ({**backbone, "features.0.weight": torch.zeros(64, 3, 3, 3)}, heads,
         "features.0.weight has shape (64, 3, 3, 3), AlexNet's is (64, 3, 11, 11)"),
        (backbone, {k.replace("lin4", "lin9"): v for k, v in heads.items()},
         "is not an LPIPS AlexNet heads file (no lin4.model.1.weight)"),
        (backbone, {**heads, "lin0.model.1.weight": torch.zeros(1, 512, 1, 1)},
         "heads of another backbone?"),
        (b"plain text", heads, "is not a readable AlexNet state dict"),
        ({"features": [1, 2]}, heads, "expected a state dict of tensors"),
    ]
    for k, (bb, hd, message) in enumerate(cases):
        paths = []
        for name, content in (("backbone", bb), ("heads", hd)):
            path = tmp_path / f"{k}_{name}.pth"
            path.write_bytes(content if isinstance(content, bytes) else saved(content))
            paths.append(path)
        with pytest.raises(ValueError) as err:
            L.LPIPS.from_files(*paths, verify=False)
        assert message in one_line(err), (message, str(err.value))
    with pytest.raises(WeightsUnavailableError, match="LPIPS backbone not found"):
        L.LPIPS.from_files(tmp_path / "none.pth", paths[1], verify=False)


def test_lpips_from_files_with_the_published_digests_refuses_a_stand_in(tmp_path):
    paths = [tmp_path / "b.pth", tmp_path / "h.pth"]
    paths[0].write_bytes(saved(L.standin_backbone(0)))
    paths[1].write_bytes(saved(L.standin_heads(1)))
    with pytest.raises(ChecksumError, match=str(paths[0])):
        L.LPIPS.from_files(*paths)
    model = L.LPIPS.from_files(*paths, verify=False)
    assert torch.equal(model.convs[2].weight, L.standin_backbone(0)["features.6.weight"])
    assert not any(p.requires_grad for p in model.parameters()) and not model.training

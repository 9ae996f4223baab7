"""`ctcnet eval --metrics` (VIF, LPIPS beside PSNR/SSIM) and the note on images that are not
128x128. Scores are checked against the metric functions applied to the images eval wrote."""

from __future__ import annotations

import csv
import hashlib
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from ctcnet import build_model
from ctcnet import lpips as L
from ctcnet import metrics as M
from ctcnet.cli import main
from ctcnet.data.datasets import FaceSRDataset
from ctcnet.pixels import to_uint8
from ctcnet.weights import save_checkpoint


def faces(folder, sizes=((128, 128),) * 3):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i, (w, h) in enumerate(sizes):
        base = np.kron(rng.normal(0, 40, (h // 8, w // 8, 3)), np.ones((8, 8, 1)))
        Image.fromarray(np.clip(base + 128, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def tiny_ckpt(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "tiny.pt", build_model("tiny"))


@pytest.fixture
def standin_cache(tmp_path, monkeypatch):
    """An LPIPS cache holding stand-in weights that the loader accepts as the published ones."""
    cache = tmp_path / "lpips"
    cache.mkdir()
    files = {L.ALEXNET_FILE: L.standin_backbone(0), L.LPIPS_HEADS_FILE: L.standin_heads(1)}
    for name, state in files.items():
        torch.save(state, cache / name)
    digest = {n: hashlib.sha256((cache / n).read_bytes()).hexdigest() for n in files}
    monkeypatch.setenv("CTCNET_LPIPS_DIR", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(L, "ALEXNET_SHA256", digest[L.ALEXNET_FILE])
    monkeypatch.setattr(L, "LPIPS_HEADS_SHA256", digest[L.LPIPS_HEADS_FILE])
    return cache


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, pattern):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith("error: ") and pattern in lines[0], lines[0]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------- --metrics
def test_eval_reports_vif_like_psnr_and_ssim(tmp_path, tiny_ckpt, capsys):
    data = faces(tmp_path / "d")
    code, out, err = run(capsys, "eval", "--checkpoint", tiny_ckpt, "--data", data,
                         "--metrics", "psnr,ssim,vif", "--out", tmp_path / "e")
    assert code == 0, err
    table = {line.split()[0]: line.split() for line in out.splitlines() if line[:1].isupper()}
    assert set(table) >= {"PSNR", "SSIM", "VIF"} and "95% CI of the gain" in out
    assert len(table["VIF"]) == 6  # label, bicubic, model, gain, [low, high]
    rows = read_csv(tmp_path / "e" / "per_image.csv")
    assert list(rows[0]) == ["name", "psnr", "ssim", "vif", "bicubic_psnr", "bicubic_ssim",
                             "bicubic_vif"]
    # the truth: VIF of the SR image eval wrote, against the HR face as the metrics see it
    dataset = FaceSRDataset(data)
    for row, k in zip(rows, range(len(dataset))):
        item = dataset[k]
        sr = np.asarray(Image.open(tmp_path / "e" / "sr" / row["name"]))
        hr, up = to_uint8(item["hr"]), to_uint8(item["lr_up"])
        assert float(row["vif"]) == pytest.approx(M.vif(sr, hr), abs=6e-5)
        assert float(row["bicubic_vif"]) == pytest.approx(M.vif(up, hr), abs=6e-5)
    means = [np.mean([float(r[c]) for r in rows]) for c in ("bicubic_vif", "vif")]
    assert [float(v) for v in table["VIF"][1:3]] == pytest.approx(means, abs=2e-4)


def test_eval_metrics_default_is_psnr_and_ssim(tmp_path, tiny_ckpt, capsys):
    code, out, err = run(capsys, "eval", "--checkpoint", tiny_ckpt, "--data",
                         faces(tmp_path / "d"), "--out", tmp_path / "e")
    assert code == 0, err
    assert "VIF" not in out and "LPIPS" not in out and "PSNR (dB)" in out
    assert list(read_csv(tmp_path / "e" / "per_image.csv")[0]) == [
        "name", "psnr", "ssim", "bicubic_psnr", "bicubic_ssim"]


def test_eval_unknown_metric_name_is_one_line_error(tmp_path, tiny_ckpt, capsys):
    data = faces(tmp_path / "d")
    for metrics, pattern in (("psnr,fid", "unknown metric 'fid'; choose from psnr, ssim, vif, "
                              "lpips (or all)"), (",", "no metric given")):
        code, _, err = run(capsys, "eval", "--checkpoint", tiny_ckpt, "--data", data,
                           "--metrics", metrics, "--out", tmp_path / "e")
        assert_one_line_error(code, err, pattern)
        assert not (tmp_path / "e").exists()


def test_eval_lpips_weights_missing_offline_is_one_line_error(tmp_path, tiny_ckpt, capsys,
                                                             monkeypatch):
    monkeypatch.setenv("CTCNET_LPIPS_DIR", str(tmp_path / "lpips"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    (tmp_path / "lpips").mkdir()
    torch.save(L.standin_heads(), tmp_path / "lpips" / L.LPIPS_HEADS_FILE)
    code, _, err = run(capsys, "eval", "--checkpoint", tiny_ckpt, "--data", faces(tmp_path / "d"),
                       "--metrics", "psnr,lpips", "--out", tmp_path / "e")
    assert_one_line_error(code, err, "this machine seems to be offline")
    assert L.ALEXNET_URL in err and str(tmp_path / "lpips") in err
    assert not (tmp_path / "e").exists()


def test_eval_all_metrics_with_stand_in_lpips_weights(tmp_path, tiny_ckpt, capsys,
                                                     standin_cache):
    data = faces(tmp_path / "d")
    code, out, err = run(capsys, "eval", "--checkpoint", tiny_ckpt, "--data", data,
                         "--metrics", "all", "--out", tmp_path / "e")
    assert code == 0, err
    assert "LPIPS" in out and "lower is better, a negative gain is an improvement" in out
    rows = read_csv(tmp_path / "e" / "per_image.csv")
    assert {"lpips", "bicubic_lpips", "vif"} <= set(rows[0])
    net = L.LPIPS.from_files(standin_cache / L.ALEXNET_FILE, standin_cache / L.LPIPS_HEADS_FILE,
                             verify=False)
    dataset = FaceSRDataset(data)
    for k, row in enumerate(rows):
        sr = np.asarray(Image.open(tmp_path / "e" / "sr" / row["name"]))
        hr = to_uint8(dataset[k]["hr"])
        assert float(row["lpips"]) == pytest.approx(M.lpips(sr, hr, network=net), abs=6e-5)


def test_evaluate_api_with_chosen_metrics(tmp_path):
    from ctcnet.evaluate import evaluate, format_summary, summarize

    data = faces(tmp_path / "d")
    model = build_model("tiny").eval()
    net = L.LPIPS()
    net.load_backbone(L.standin_backbone(0))
    net.load_heads(L.standin_heads(1))
    result = evaluate(model, data, metrics="vif,lpips", lpips_network=net)
    assert result.metrics == ("vif", "lpips")
    assert result.columns == ("name", "vif", "lpips", "bicubic_vif", "bicubic_lpips")
    assert set(result.gains()) == {"vif", "lpips"}
    assert list(summarize(result).columns) == ["VIF", "LPIPS"]
    assert "PSNR" not in format_summary(result)
    other = evaluate(model, data, metrics=("psnr", "vif"))
    assert result.compare(other, "vif").mean == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="one both evaluations computed \\(vif\\)"):
        result.compare(other, "psnr")
    with pytest.raises(ValueError, match="unknown metric 'psnr2'"):
        evaluate(model, data, metrics="psnr2")


# ----------------------------------------------------------------------- non-128 images
def test_eval_on_non_128_images_says_in_one_line_that_it_crops_and_resizes_them(
    tmp_path, tiny_ckpt, capsys
):
    data = faces(tmp_path / "d", sizes=[(128, 128), (200, 200), (128, 128), (320, 240)])
    code, out, err = run(capsys, "eval", "--checkpoint", tiny_ckpt, "--data", data)
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.strip()]
    assert notes == [
        "note: 2 of 4 images are not 128x128 (e.g. 1.png, 200x200): they are centre-cropped to "
        "a square (1 of them) and resized to 128x128 with PIL bicubic before the degradation"
    ]
    assert "4 images" in out
    # --limit counts only the images evaluated
    code, _, err = run(capsys, "eval", "--checkpoint", tiny_ckpt, "--data", data, "--limit", "2")
    assert code == 0 and err.strip() == (
        "note: 1 of 2 images are not 128x128 (e.g. 1.png, 200x200): they are resized to 128x128 "
        "with PIL bicubic before the degradation"
    )


def test_eval_on_128_images_prints_no_note(tmp_path, tiny_ckpt, capsys):
    code, _, err = run(capsys, "eval", "--checkpoint", tiny_ckpt, "--data",
                       faces(tmp_path / "d"))
    assert code == 0 and err.strip() == ""

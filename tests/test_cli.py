"""Tests for the ``ctcnet`` command line: success paths and one-line errors for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ctcnet import build_model
from ctcnet.cli import main
from ctcnet.weights import load_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def faces(folder: Path, n: int = 2, size: int = 128) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        base = np.kron(rng.normal(0, 40, (size // 16, size // 16, 3)), np.ones((16, 16, 1)))
        Image.fromarray(np.clip(base + 128, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def tiny_ckpt(tmp_path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "tiny.pt", build_model("tiny"))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, pattern: str) -> None:
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and pattern in lines[0], lines[0]


# ---------------------------------------------------------------------------- info / help
def test_info_and_help(capsys):
    code, out, _ = run(capsys, "info")
    assert code == 0 and "reduced" in out and "parameters" in out and "device: cpu" in out
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "upscale" in capsys.readouterr().out


def test_info_without_weights_prints_the_train_command_not_a_repo_script(monkeypatch, tmp_path,
                                                                         capsys):
    import ctcnet.cli as C

    monkeypatch.setattr(C, "default_weights_path", lambda: tmp_path / "none.pt")
    code, out, _ = run(capsys, "info")
    assert code == 0 and "[missing]" in out
    hint = next(line for line in out.splitlines() if "to get them" in line)
    assert "ctcnet train --preset reduced" in hint and "ctcnet export" in hint
    assert hint.index("ctcnet train") < hint.index("scripts/")  # the pip user's path comes first


def test_python_dash_m_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "ctcnet", "eval", "--data", "/nonexistent", "--checkpoint", "x"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: evaluation folder not found: /nonexistent"


# ---------------------------------------------------------------------------- train
def test_train_runs_and_resumes(tmp_path, capsys):
    data = faces(tmp_path / "d", n=2, size=32)
    args = ["train", "--preset", "tiny", "--data", data, "--val", data, "--hr-size", "32"]
    args += ["--steps", "2", "--batch-size", "2", "--device", "cpu", "--out", tmp_path / "r"]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert "trained 2 steps" in out and (tmp_path / "r" / "best.pt").is_file()
    code, _, err = run(capsys, *args)  # a second run into the same folder needs --resume
    assert_one_line_error(code, err, "add --resume")
    code, out, err = run(capsys, *args[:-4], "--steps", "3", "--out", tmp_path / "r", "--resume")
    assert code == 0, err


def test_train_bad_inputs(tmp_path, capsys):
    data = faces(tmp_path / "d", n=1, size=32)
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    base = ["train", "--preset", "tiny", "--hr-size", "32", "--steps", "1", "--device", "cpu"]
    cases = [
        (["--data", tmp_path / "missing", "--out", tmp_path / "o"], "not found"),
        (["--data", tmp_path / "empty", "--out", tmp_path / "o"], "no images"),
        (["--data", data, "--out", tmp_path / "file" / "run"], "cannot write to run folder"),
        (["--data", data, "--out", tmp_path / "o", "--patch-size", "20"], "patch size 20"),
        (["--data", data, "--out", tmp_path / "o", "--set", "nonsense=1"], "nonsense"),
        (["--data", data, "--out", tmp_path / "o", "--resume"], "cannot resume"),
    ]
    for extra, pattern in cases:
        code, _, err = run(capsys, *base, *extra)
        assert_one_line_error(code, err, pattern)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------- eval
def test_eval_prints_table_and_writes_outputs(tmp_path, tiny_ckpt, capsys):
    data = faces(tmp_path / "d")
    code, out, err = run(
        capsys, "eval", "--checkpoint", tiny_ckpt, "--data", data, "--out", tmp_path / "e"
    )
    assert code == 0, err
    assert "bicubic" in out and "model" in out and "PSNR" in out and "2 images" in out
    assert "95% CI" in out and "paired bootstrap" in out
    csv = (tmp_path / "e" / "per_image.csv").read_text().splitlines()
    assert csv[0] == "name,psnr,ssim,bicubic_psnr,bicubic_ssim" and len(csv) == 3
    strip = Image.open(tmp_path / "e" / "compare" / "0.png")
    assert strip.size[0] == 4 * 128 and strip.size[1] > 128  # four panels + caption row
    assert Image.open(tmp_path / "e" / "sr" / "1.png").size == (128, 128)
    code, out, _ = run(
        capsys, "eval", "--checkpoint", tiny_ckpt, "--data", data, "--protocol", "dic"
    )
    assert code == 0 and "'dic'" in out


def test_eval_out_keeps_face_jpg_and_face_png_apart(tmp_path, tiny_ckpt, capsys):
    data = faces(tmp_path / "d", n=2)
    (data / "0.png").rename(data / "face.png")
    Image.open(data / "1.png").save(data / "face.jpg", quality=95)
    (data / "1.png").unlink()
    code, _, err = run(capsys, "eval", "--checkpoint", tiny_ckpt, "--data", data,
                       "--out", tmp_path / "e")
    assert code == 0, err
    for folder in ("sr", "compare"):
        assert sorted(p.name for p in (tmp_path / "e" / folder).iterdir()) == [
            "face_jpg.png", "face_png.png"]
    # the two SR images are of two different inputs (JPEG changed the pixels), not one copy
    jpg, png = (np.asarray(Image.open(tmp_path / "e" / "sr" / n)) for n in
                ("face_jpg.png", "face_png.png"))
    assert not np.array_equal(jpg, png)


def test_output_names_are_distinct_even_ignoring_case():
    from ctcnet.evaluate import output_names

    names = ["a/x.jpg", "b/x.jpg", "face.jpg", "face.png", "Face.PNG", "face_jpg.png", "solo.bmp"]
    out = output_names(names)
    assert len({n.lower() for n in out}) == len(names)
    assert out[:2] == ["a/x.png", "b/x.png"]  # different folders do not clash
    assert out[-1] == "solo.png" and out[-2] == "face_jpg.png"  # a real name keeps its name
    assert all(n.endswith(".png") for n in out)
    assert output_names(names) == out  # deterministic


def test_eval_result_is_plain_data_with_a_dataframe_on_request(tmp_path):
    from ctcnet.evaluate import EvalResult, format_summary, summarize

    rows = [{"name": f"{i}.png", "psnr": 25.0 + i, "ssim": 0.7, "bicubic_psnr": 24.0,
             "bicubic_ssim": 0.6} for i in range(3)]
    result = EvalResult(rows)
    assert result["psnr"].tolist() == [25.0, 26.0, 27.0] and result["name"][0] == "0.png"
    with pytest.raises(KeyError, match="no column 'PSNR'"):
        result["PSNR"]
    frame = result.to_dataframe()
    assert list(frame.columns) == ["name", "psnr", "ssim", "bicubic_psnr", "bicubic_ssim"]
    assert summarize(frame).equals(summarize(result))
    assert summarize(result).loc["gain", "PSNR"] == pytest.approx(2.0)
    result.write_csv(tmp_path / "s.csv")
    assert (tmp_path / "s.csv").read_text().splitlines()[1] == "0.png,25.0000,0.7000,24.0000,0.6000"
    single = format_summary(EvalResult(rows[:1]))
    assert "no confidence interval" in single and "at least 2" in single


def test_comparing_two_evaluations_pairs_images_by_name():
    from ctcnet.evaluate import EvalResult

    def result(names, psnrs, protocol="ctcnet"):
        return EvalResult([{"name": n, "psnr": p, "ssim": 0.5, "bicubic_psnr": 20.0,
                            "bicubic_ssim": 0.4} for n, p in zip(names, psnrs)], protocol)

    full = result(["a", "b", "c", "d"], [30.0, 25.0, 28.0, 22.0])
    shuffled_ablation = result(["d", "c", "b", "a"], [21.5, 27.5, 24.5, 29.5])
    assert tuple(full.compare(shuffled_ablation)) == pytest.approx((0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="different images"):
        full.compare(result(["a", "b", "c", "e"], [1.0] * 4))
    with pytest.raises(ValueError, match="protocols differ"):
        full.compare(result(["a", "b", "c", "d"], [1.0] * 4, protocol="dic"))


def test_eval_precision_flag(tmp_path, tiny_ckpt, capsys):
    data = faces(tmp_path / "d", n=2)
    code, out, err = run(capsys, "eval", "--checkpoint", tiny_ckpt, "--data", data,
                         "--precision", "bf16")
    assert code == 0, err
    assert "precision: bf16" in out and "2 images" in out
    code, _, err = run(capsys, "eval", "--checkpoint", tiny_ckpt, "--data", data,
                       "--precision", "fp16", "--device", "cpu")
    assert_one_line_error(code, err, "fp16")


def test_eval_bad_inputs(tmp_path, tiny_ckpt, capsys):
    data = faces(tmp_path / "d")
    bad = faces(tmp_path / "bad", n=1)
    (bad / "broken.png").write_bytes((data / "0.png").read_bytes()[:200])
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.pt").write_bytes(b"junk")
    # hand-edited files carry no digest (a stale one would call them damaged, rightly)
    other = torch.load(tiny_ckpt, weights_only=True)
    other["model"] = build_model("reduced").state_dict()
    other.pop("digest")
    torch.save(other, tmp_path / "other.pt")
    missing = torch.load(tiny_ckpt, weights_only=True)
    del missing["model"]["tail.bias"]
    missing.pop("digest")
    torch.save(missing, tmp_path / "missing.pt")
    (tmp_path / "file").write_text("x")
    cases = [
        ([tmp_path / "nope.pt", data], [], "checkpoint not found"),
        ([tmp_path / "junk.pt", data], [], "not a PyTorch checkpoint"),
        ([tmp_path / "other.pt", data], [], "fit preset 'reduced'"),
        ([tmp_path / "missing.pt", data], [], "1 missing (tail.bias)"),
        ([tiny_ckpt, tmp_path / "nowhere"], [], "evaluation folder not found"),
        ([tiny_ckpt, tmp_path / "empty"], [], "no images"),
        ([tiny_ckpt, bad], [], "broken.png"),
        ([tiny_ckpt, data], ["--out", tmp_path / "file" / "x"], "cannot write to output folder"),
    ]
    for (ckpt, folder), extra, pattern in cases:
        out_dir = tmp_path / "e"
        argv = ["eval", "--checkpoint", ckpt, "--data", folder, "--out", out_dir, *extra]
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, pattern)
        assert not out_dir.exists()  # nothing half-written


# ---------------------------------------------------------------------------- upscale
def test_upscale_mixed_inputs(tmp_path, tiny_ckpt, capsys):
    skimage_data = pytest.importorskip("skimage.data")
    astro = Image.fromarray(skimage_data.astronaut()).resize((96, 96), Image.BICUBIC)
    astro.save(tmp_path / "astro.png")
    Image.new("RGB", (60, 40), (90, 90, 90)).save(tmp_path / "wall.png")
    (tmp_path / "notes.png").write_text("not an image")
    out = tmp_path / "out"
    code, stdout, err = run(
        capsys, "upscale", tmp_path / "astro.png", "--checkpoint", tiny_ckpt, "-o", out,
        "--scale", "2",
    )
    assert code == 0, err
    assert "1 face: 1 super-resolved" in stdout and (out / "astro_x2.png").is_file()
    inputs = [tmp_path / n for n in ("wall.png", "notes.png", "missing.png", "astro.png")]
    argv = ["upscale", *inputs, "--checkpoint", tiny_ckpt, "-o", out, "--scale", "2"]
    code, stdout, err = run(capsys, *argv)
    assert code == 1  # some inputs failed, the good ones were still processed
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)
    assert "not a recognised image" in lines[0] and "file not found" in lines[1]
    assert "wall.png: no face found; enlarged x2" in stdout  # a photo without faces is enlarged
    assert "astro.png: 1 face" in stdout


def test_upscale_bad_setup(tmp_path, tiny_ckpt, capsys):
    (tmp_path / "file").write_text("x")
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    code, _, err = run(
        capsys,
        "upscale",
        tmp_path / "a.png",
        "--checkpoint",
        tiny_ckpt,
        "-o",
        tmp_path / "file" / "out",
    )
    assert_one_line_error(code, err, "cannot write to output folder")
    code, _, err = run(
        capsys,
        "upscale",
        tmp_path / "a.png",
        "--checkpoint",
        tmp_path / "none.pt",
        "-o",
        tmp_path / "out",
    )
    assert_one_line_error(code, err, "checkpoint not found")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- errors
def test_main_says_every_ctcnet_error_in_one_line_and_lets_a_bug_through(monkeypatch, capsys):
    import ctcnet.cli as cli
    from ctcnet.errors import CTCNetError, DataFolderError

    for raised in (CTCNetError("first line\nsecond"), DataFolderError("cannot write x"),
                   OSError(28, "No space left on device", "/x/last.pt")):
        def fail(args, raised=raised):
            raise raised

        monkeypatch.setattr(cli, "cmd_info", fail)
        code, _, err = run(capsys, "info")
        assert code == 1 and err.count("\n") == 1 and "Errno" not in err, err
    assert err == "error: no space left on device: /x/last.pt\n"

    def bug(args):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr(cli, "cmd_info", bug)
    with pytest.raises(ValueError, match="a bug"):  # a traceback, not a hidden one-liner
        main(["info"])


# ---------------------------------------------------------------------------- wording
def test_upscale_of_a_1px_image_does_not_call_it_larger_than_128_px(tmp_path, tiny_ckpt, capsys):
    Image.new("RGB", (1, 1), (120, 90, 80)).save(tmp_path / "dot.png")
    code, stdout, err = run(
        capsys, "upscale", tmp_path / "dot.png", "--checkpoint", tiny_ckpt, "-o", tmp_path / "o"
    )
    assert code == 0, err
    assert "larger than" not in stdout and "1 face: 1 super-resolved" in stdout, stdout


def test_resume_with_a_changed_set_names_the_set_flag(tmp_path, capsys):
    data = faces(tmp_path / "d", n=2, size=32)
    args = ["train", "--preset", "tiny", "--data", data, "--val", "none", "--hr-size", "32",
            "--steps", "1", "--batch-size", "2", "--device", "cpu", "--out", tmp_path / "r"]
    code, _, err = run(capsys, *args)
    assert code == 0, err
    code, _, err = run(capsys, *args, "--resume", "--set", "use_fsau=false")
    assert_one_line_error(code, err, "(--set)")
    assert "--overrides" not in err


def test_a_bad_positive_integer_is_said_without_a_function_name(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--out", "x", "--steps", "abc"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "_positive" not in err
    assert "argument --steps: must be a positive integer, got 'abc'" in err


def test_pillow_decompression_bomb_warning_is_one_line_naming_the_file(
        tmp_path, tiny_ckpt, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)  # warns from 600 pixels, refuses at 1200
    Image.new("RGB", (30, 30), (120, 90, 80)).save(tmp_path / "big.png")
    code, _, err = run(  # --scale 1: an enlarged 30x30 photo would pass the lowered limit
        capsys, "upscale", tmp_path / "big.png", "--checkpoint", tiny_ckpt, "-o", tmp_path / "o",
        "--scale", "1",
    )
    assert code == 0, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "big.png" in lines[0], err
    assert "900 pixels" in lines[0]


# ---------------------------------------------------------------------------- export / data
def test_export_strips_the_optimizer(tmp_path, capsys):
    data = faces(tmp_path / "d", n=2, size=32)
    argv = [
        "train",
        "--preset",
        "tiny",
        "--data",
        data,
        "--hr-size",
        "32",
        "--steps",
        "1",
        "--batch-size",
        "1",
        "--device",
        "cpu",
        "--out",
        tmp_path / "r",
    ]
    assert run(capsys, *argv)[0] == 0
    code, out, err = run(capsys, "export", tmp_path / "r" / "last.pt", tmp_path / "w" / "m.pt")
    assert code == 0, err
    assert load_model(tmp_path / "w" / "m.pt").config.base_width == 8
    code, _, err = run(capsys, "export", tmp_path / "nope.pt", tmp_path / "w" / "n.pt")
    assert_one_line_error(code, err, "checkpoint not found")
    assert not (tmp_path / "w" / "n.pt").exists()


def test_export_into_a_folder_is_refused_in_one_line(tmp_path, tiny_ckpt, capsys):
    (tmp_path / "folder").mkdir()
    code, _, err = run(capsys, "export", tiny_ckpt, tmp_path / "folder")
    assert_one_line_error(code, err, "is a folder")
    assert "Errno" not in err and list((tmp_path / "folder").iterdir()) == []


@pytest.mark.parametrize(
    "content", [b"hello\nthis is text\n", b"e", b'{"a": 1}\n', b""],
    ids=["text", "one-letter", "json", "empty"],
)
def test_text_file_as_checkpoint_says_it_is_not_a_checkpoint(tmp_path, capsys, content):
    notes = tmp_path / "notes.txt"
    notes.write_bytes(content)
    for argv in (["eval", "--checkpoint", notes, "--data", faces(tmp_path / "d", n=1)],
                 ["upscale", tmp_path / "d" / "0.png", "--checkpoint", notes, "-o", tmp_path / "o"],
                 ["export", notes, tmp_path / "x.pt"]):
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, "not a PyTorch checkpoint" if content else "empty")
        assert "101" not in err and "pop from empty list" not in err and "weights_only" not in err


def test_data_prepare_bad_inputs(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = run(
        capsys,
        "data",
        "prepare",
        "celeba",
        "--root",
        tmp_path / "r",
        "--source",
        tmp_path / "missing",
    )
    assert_one_line_error(code, err, "source not found")
    (tmp_path / "src").mkdir()
    code, _, err = run(
        capsys,
        "data",
        "prepare",
        "helen",
        "--root",
        tmp_path / "file" / "r",
        "--source",
        tmp_path / "src",
    )
    assert_one_line_error(code, err, "cannot write to data root")


def test_data_offline_faces_is_wired(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "offline-faces", "--help"])
    assert info.value.code == 0
    assert "--root" in capsys.readouterr().out


def test_eval_accepts_auto_precision_through_the_api(tmp_path):
    # evaluate(precision="auto") resolves to what the device runs fast, as the CLI flag does.
    from PIL import Image

    from ctcnet import build_model
    from ctcnet.evaluate import evaluate

    Image.new("RGB", (128, 128), (120, 90, 60)).save(tmp_path / "face.png")
    means = evaluate(build_model("tiny").eval(), tmp_path, precision="auto").means()
    assert means["psnr"] == means["psnr"]  # a number, not NaN

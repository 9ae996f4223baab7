"""tools/gpu_check.sh and benchmarks/bench_model.py refuse bad input with one line, before any work.

(The full CPU smoke of gpu_check.sh takes over a minute on 2 shared cores, so it is run by hand:
``OUT=/tmp/x tools/gpu_check.sh``; see benchmarks/RESULTS.md.)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env=env)


def test_gpu_check_is_valid_bash_and_explains_itself():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    shown = _run("--help")
    assert shown.returncode == 0
    assert "--faces DIR" in shown.stdout and "CUDA" in shown.stdout


def test_gpu_check_rejects_an_unknown_argument_with_one_line_error(tmp_path):
    result = _run("--fast", "--out", str(tmp_path / "report.md"))
    assert result.returncode == 2
    assert result.stderr.strip() == "gpu_check: unknown argument --fast (see --help)"
    assert not (tmp_path / "report.md").exists()  # nothing written before the check


def test_gpu_check_refuses_a_faces_folder_without_splits(tmp_path):
    (tmp_path / "faces" / "train").mkdir(parents=True)  # test/ missing
    result = _run("--faces", str(tmp_path / "faces"), "--out", str(tmp_path / "report.md"))
    assert result.returncode == 2
    assert "has no train/ and test/ folders" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_bench_refuses_cuda_without_cuda_in_one_line():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_model.py"), "--device", "cuda"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("CUDA is not available on this machine")

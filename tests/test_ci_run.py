""".ci/run's own logic, with every step replaced by a stand-in: the order of the steps, the table
of step times at the end (printed and written to a file), the background install checks joined at
the end, their failure failing the run, and a failing foreground step stopping the background."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_MAKE = """#!/usr/bin/env bash
echo "make $*" >> "$CALLS"
[[ "$1" == test ]] && echo "3 passed in 1.00s"
[[ "$1" == "${FAIL_STEP:-none}" ]] && exit 3
exit 0
"""

# Writes its pid (it is a session leader), one row per check, and sleeps SLEEP_BG seconds.
FAKE_CHECKS = """#!/usr/bin/env bash
log_dir=$1; echo $$ > "$log_dir/install_checks.pid"
failed=0
for n in colab-install plain-install-oldest plain-install-newest; do
  t0=$(date +%s); echo "output of $n" > "$log_dir/$n.log"; sleep "${SLEEP_BG:-0}"
  rc=0; [[ $n == "${FAIL_CHECK:-none}" ]] && rc=1
  printf '%s\\tbackground\\t%d\\t%d\\t%d\\t%s\\n' "$n" $((t0 - CI_START)) 0 "$rc" 0.5 \\
    >> "$log_dir/timings.tsv"
  [[ $rc -eq 0 ]] || failed=1
done
[[ -n "$VENV_READY" && "$UV" == /bin/true ]] && echo "uv and venv marker passed" > "$MARK.env"
echo done > "$MARK"
exit $failed
"""


@pytest.fixture
def fake_repo(tmp_path):
    if shutil.which("setsid") is None:
        pytest.skip("setsid (util-linux) is not installed")
    repo, bin_dir = tmp_path / "repo", tmp_path / "bin"
    (repo / ".ci").mkdir(parents=True)
    (repo / ".venv" / "bin").mkdir(parents=True)
    bin_dir.mkdir()
    shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
    files = {repo / ".ci" / "install_checks": FAKE_CHECKS, bin_dir / "make": FAKE_MAKE,
             repo / ".venv" / "bin" / "python": '#!/bin/sh\necho "python $*" >> "$CALLS"\n'}
    for path, text in files.items():
        path.write_text(text)
        path.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CHROMIUM": "x",
           "CHROMEDRIVER": "y", "CALLS": str(tmp_path / "calls"), "MARK": str(tmp_path / "mark"),
           "CI_TIMINGS": str(tmp_path / "timings.md"), "CI_UV": "/bin/true"}
    for key in ("CI_FRESH_CLONE", "FAIL_STEP", "FAIL_CHECK", "SLEEP_BG"):
        env.pop(key, None)
    return repo, env, tmp_path


def run_ci(repo, env, **extra):
    return subprocess.run(["bash", ".ci/run"], cwd=repo, env={**env, **extra},
                          capture_output=True, text=True, timeout=120)


def test_steps_run_in_order_and_the_table_lists_each_with_its_time(fake_repo):
    repo, env, tmp = fake_repo
    proc = run_ci(repo, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = (tmp / "calls").read_text().splitlines()
    makes = [c.split()[1] for c in calls if c.startswith("make ")]
    # smoke-full runs in the background beside the browser checks: after the book, in any order
    # with them
    assert makes[:3] == ["venv", "test", "book"]
    assert sorted(makes[3:]) == ["check-browser", "check-colab", "smoke-full"]
    assert "make book BROWSER_CHECK=no BOOK_TIMINGS_FLAGS=--require-executed" in calls
    table = (tmp / "timings.md").read_text()
    assert table in proc.stdout
    for step in ("uv-bootstrap", "venv", "test", "book", "browser", "browser-mathjax-test", "colab-view",
                 "colab-view-tests", "smoke-full-join", "install-checks-join"):
        assert f"| {step} | foreground |" in table, step
    assert "| smoke-full | background |" in table
    for check in ("colab-install", "plain-install-oldest", "plain-install-newest"):
        assert f"| {check} | background |" in table, check
        assert f"output of {check}" in proc.stdout  # its log is shown when joined
    assert "| **total (wall)** |" in table
    assert proc.stdout.rstrip().endswith("CI: PASSED")
    assert "pytest: 3 passed in 1.00s" in proc.stdout
    assert (tmp / "mark.env").exists()  # the checks got the uv to use and the venv marker


def test_a_failed_install_check_fails_the_run_after_the_foreground(fake_repo):
    repo, env, tmp = fake_repo
    proc = run_ci(repo, env, FAIL_CHECK="plain-install-newest")
    assert proc.returncode == 1
    assert "an install check failed" in proc.stderr
    assert "| plain-install-newest | background | " in proc.stdout
    assert "make smoke-full" in (tmp / "calls").read_text()  # the foreground ran to its end


def test_a_failed_smoke_fails_the_run_after_the_browser_checks(fake_repo):
    repo, env, tmp = fake_repo
    proc = run_ci(repo, env, FAIL_STEP="smoke-full")
    assert proc.returncode == 3
    assert "a chapter failed in full mode" in proc.stderr
    assert "make check-colab" in (tmp / "calls").read_text()  # the browser checks ran to the end
    assert "| smoke-full | background | " in proc.stdout


def test_a_failed_foreground_step_stops_the_background_checks(fake_repo):
    repo, env, tmp = fake_repo
    start = time.monotonic()
    proc = run_ci(repo, env, FAIL_STEP="book", SLEEP_BG="30")
    assert proc.returncode == 3
    assert time.monotonic() - start < 25, "waited for the background checks"
    assert "stopping the background install checks" in proc.stdout
    assert "| book | foreground | " in proc.stdout and "CI: FAILED (exit 3)" in proc.stdout
    time.sleep(1)
    assert not (tmp / "mark").exists(), "the background checks went on after the run"
    assert "make smoke-full" not in (tmp / "calls").read_text()

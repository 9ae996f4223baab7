"""The package's layers import only downwards: course -> analysis -> core."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "ctcnet"


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the ctcnet modules that ``path`` imports (relative imports resolved)."""
    here = path.relative_to(PKG.parent).with_suffix("").parts
    package = here[:-1]  # the package a relative import starts from (also for __init__.py)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {n for n in found if n.startswith("ctcnet")}


def _layer(module_path: Path) -> str:
    parts = module_path.relative_to(PKG).parts
    return parts[0] if parts[0] in ("course", "analysis") else "core"


def test_core_never_imports_analysis_or_course_and_analysis_never_imports_course():
    allowed = {"core": {"core"}, "analysis": {"core", "analysis"},
               "course": {"core", "analysis", "course"}}
    wrong = []
    for path in sorted(PKG.rglob("*.py")):
        layer = _layer(path)
        for name in _imported_modules(path):
            parts = name.split(".")
            target = parts[1] if len(parts) > 1 and parts[1] in ("course", "analysis") else "core"
            if target not in allowed[layer]:
                wrong.append(f"{path.relative_to(PKG.parent)} ({layer}) imports {name}")
    assert not wrong, "\n".join(wrong)


def test_layout_check_sees_relative_imports():
    # The checker must resolve `from ..course import x` inside ctcnet/analysis to ctcnet.course.
    names = _imported_modules(PKG / "course" / "explorer.py")
    assert any(n.startswith("ctcnet.analysis") for n in names)
    assert any(n.startswith("ctcnet.runtime") for n in names)

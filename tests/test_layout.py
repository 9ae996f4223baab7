"""The package's layers, as ARCHITECTURE.md draws them, are the layers of the code.

The layer table is read from ARCHITECTURE.md itself, so the document and the test cannot drift
apart. Every import of a ctcnet module counts, also one inside a function: a deferred import is
still an arrow. Run this file as a script to print every module's layer and what it imports.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "ctcnet"

#: Modules whose function-level imports are being reworked on other branches (training, the
#: attribution analysis, the course figures); remove an entry once its branch has landed.
PENDING_DEFERRED_IMPORTS = {
    "ctcnet/train.py",
    "ctcnet/analysis/attribution.py",
    "ctcnet/course/figures.py",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _imports(path: Path) -> list[tuple[ast.stmt, set[str]]]:
    """Each import statement of ``path`` with the ctcnet modules it names (relative imports
    resolved; ``from .weights import load_model`` names ``ctcnet.weights``)."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # imports under `if TYPE_CHECKING:` exist for annotations only and never run: no edge
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for n in ast.walk(node)}  # fmt: skip
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            names = {name} | {f"{name}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names = {alias.name for alias in node.names}
        else:
            continue
        found.append((node, {n for n in names if n in MODULES}))
    return found


def import_graph() -> dict[str, set[str]]:
    """ctcnet module -> the ctcnet modules it imports (itself excluded)."""
    return {
        name: set().union(*(names for _, names in _imports(path))) - {name}
        for name, path in MODULES.items()
    }


def layers() -> list[tuple[str, list[str]]]:
    """``(layer, [path under ctcnet/, ...])`` from the table of ARCHITECTURE.md, top first."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    block = re.search(r"```text\n(.*?)```", text, re.S)
    assert block, "ARCHITECTURE.md has no ```text block with the layer table"
    table = []
    for line in block.group(1).splitlines():
        words = line.split()
        if not words:
            continue
        places = []
        for word in words[1:]:
            if not (word.endswith(".py") or word.endswith("/")):
                break
            places.append(word)
        table.append((words[0], places))
    return table


def rank_of_modules() -> dict[str, tuple[int, str]]:
    """ctcnet module -> (rank, layer); rank 0 is the ground."""
    table = layers()
    ranks: dict[str, tuple[int, str]] = {}
    for name, path in MODULES.items():
        where = path.relative_to(PKG).as_posix()
        for position, (layer, places) in enumerate(table):
            if any(where == p or (p.endswith("/") and where.startswith(p)) for p in places):
                ranks[name] = (len(table) - 1 - position, layer)
                break
    return ranks


def test_every_module_has_a_layer():
    ranks = rank_of_modules()
    unplaced = sorted(set(MODULES) - set(ranks))
    assert not unplaced, f"ARCHITECTURE.md's layer table does not place {unplaced}"
    assert [layer for layer, _ in layers()][-1] == "ground"


def test_imports_only_point_down_or_sideways():
    ranks = rank_of_modules()
    wrong = [
        f"{name} ({ranks[name][1]}) imports {target} ({ranks[target][1]})"
        for name, targets in import_graph().items()
        for target in sorted(targets)
        if ranks[target][0] > ranks[name][0]
    ]
    assert not wrong, "\n".join(wrong)


def test_the_module_import_graph_has_no_cycle():
    graph = import_graph()
    state: dict[str, str] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(cycles)


def test_data_imports_only_the_standard_library_third_parties_and_lower_core_modules():
    ranks = rank_of_modules()
    data_rank = ranks["ctcnet.data"][0]
    wrong = [
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        if name.startswith("ctcnet.data")
        for target in sorted(targets)
        if not target.startswith("ctcnet.data") and ranks[target][0] >= data_rank
    ]
    assert not wrong, "\n".join(wrong)


def _deferral_comment(lines: list[str], lineno: int) -> str | None:
    """The comment that explains an import at ``lineno`` (1-based): on its own line, or on the
    nearest line above that is neither another import nor ``try:``."""
    own = lines[lineno - 1]
    if "#" in own:
        return own.split("#", 1)[1].strip()
    for line in reversed(lines[: lineno - 1]):
        stripped = line.strip()
        if stripped.startswith("#"):
            return stripped.lstrip("#").strip()
        if not (stripped.startswith(("import ", "from ")) or stripped == "try:"):
            return None
    return None


def test_imports_sit_at_the_top_unless_a_comment_says_what_they_defer():
    unexplained = []
    for path in MODULES.values():
        where = path.relative_to(ROOT).as_posix()
        if where in PENDING_DEFERRED_IMPORTS:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = [node for node in tree.body]
        top += [n for node in tree.body if isinstance(node, ast.Try) for n in node.body]
        top_lines = {node.lineno for node in top}
        lines = path.read_text(encoding="utf-8").splitlines()
        for node, _ in _imports(path):
            if node.lineno in top_lines:
                continue
            if not _deferral_comment(lines, node.lineno):
                unexplained.append(f"{where}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not unexplained, "imports inside functions without a reason:\n" + "\n".join(unexplained)


def test_the_checker_resolves_relative_imports_and_sees_deferred_ones():
    names = set().union(*(n for _, n in _imports(PKG / "course" / "explorer.py")))
    assert "ctcnet.analysis.attention" in names and "ctcnet.course.book" in names
    assert "ctcnet.weights" in import_graph()["ctcnet"]  # `from .weights import ...` in __init__
    assert "ctcnet.train" in import_graph()["ctcnet.cli"]  # imported inside cmd_train


if __name__ == "__main__":
    ranks = rank_of_modules()
    for module, targets in sorted(import_graph().items(), key=lambda kv: (-ranks[kv[0]][0], kv[0])):
        print(f"{ranks[module][1]:12s} {module:34s} -> {', '.join(sorted(targets)) or '-'}")


# The network's top-level children; a string like "decoder.2" or "encoder.0.fsau" names a module path.
_MODULE_PATH = re.compile(
    r"^(head|encoder|downsample|bottleneck|upsample|resampler|fusion|decoder|tail)\.\d+(\.|$)"
)
# Where module paths belong: the model itself and the map of the authors' checkpoint keys.
_PATH_HOMES = {"ctcnet/model.py", "ctcnet/weights/official.py"}


def _non_docstring_strings(tree: ast.Module) -> list[ast.Constant]:
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }  # fmt: skip
    return [node for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docstrings]  # fmt: skip


def test_no_module_path_of_the_network_is_spelled_outside_the_model_and_the_key_map():
    spelled = []
    for path in MODULES.values():
        where = path.relative_to(ROOT).as_posix()
        if where in _PATH_HOMES:
            continue
        for node in _non_docstring_strings(ast.parse(path.read_text(encoding="utf-8"))):
            if _MODULE_PATH.match(node.value):
                spelled.append(f"{where}:{node.lineno}: {node.value!r}")
    assert not spelled, "module paths spelled as strings:\n" + "\n".join(spelled)


def test_the_module_path_check_sees_a_default_argument():
    tree = ast.parse('def f(layer="decoder.2"):\n    """Uses "encoder.0.fsau" in prose."""\n')
    found = [n.value for n in _non_docstring_strings(tree) if _MODULE_PATH.match(n.value)]
    assert found == ["decoder.2"]

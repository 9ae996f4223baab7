"""Execute in full mode, at toy sizes, the chapters whose code differs from small mode, so that the
GPU (Colab) code paths cannot rot on a CPU.

    python tools/smoke_full_mode.py              # the plan below, both passes (`make smoke-full`)
    python tools/smoke_full_mode.py --plan       # print the plan and why, execute nothing
    python tools/smoke_full_mode.py --all        # every notebook, as before this plan existed
    python tools/smoke_full_mode.py book/10_evaluation.ipynb [--stand-in-official] [--keep DIR]

The book build (`make book`) executes every notebook in small mode. Full mode changes a chapter in
two ways only: the sizes in ``ctcnet.course.book.settings()`` (more steps, faces, repeats), and the
code that branches on the mode. Sizes alone run the same lines (with ``CTCNET_BOOK_CAP=smoke`` they
are even below small mode's), so executing such a chapter again proves nothing the book build has
not. This tool reads every notebook's code (Python's ``ast``) and executes in full mode only those
that

* read the mode or the size cap (``X.mode``, ``X.cap``, ``$CTCNET_BOOK_MODE``/``$CTCNET_BOOK_CAP``),
* call ``settings()``, ``subject()`` or ``reproduction_plan()`` (library code that branches on the
  mode), or
* branch on a size (``if``/``while``/conditional expression/comprehension filter/``assert`` over a
  ``BookSettings`` field such as ``S.eval_images``: a size can open a path small mode never takes),

or whose code does not parse (then it is run, to be safe). Two passes, executed together on
``--jobs`` kernels:

* fall-back: ``CTCNET_BOOK_MODE=full`` and ``CTCNET_BOOK_CAP=smoke`` (every size capped at a toy
  value); without the authors' weights and CelebA, ``subject()`` falls back to the shipped model
  and prints its notice;
* stand-in: the same, for the notebooks that call ``subject()``, with an untrained ``official``
  network written in the authors' checkpoint format and the offline test faces standing in for
  CelebA (``$CTCNET_OFFICIAL_CHECKPOINT``, ``$CTCNET_CELEBA``): the authors'-weights path. Such a
  notebook gets the fall-back pass too only when it asks which path ``subject()`` took
  (``.official``, ``.notice``): otherwise both passes would run the same lines.

Branches that no CPU smoke can take are listed by ``--plan``: conditions on ``X.cap == "none"``
(full mode at its real sizes) and on a ``"cuda"`` device. Nothing is downloaded and the stored,
output-free notebooks are not touched. Prints pass/fail, wall and CPU seconds of each notebook
(``--cell-times N``: its N slowest cells) and a summary; exit code 1 if any notebook failed.
"""

import argparse
import ast
import json
import os
import re
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path

BOOK = Path(__file__).resolve().parent.parent / "book"
SMOKE_ENV = {"CTCNET_BOOK_MODE": "full", "CTCNET_BOOK_CAP": "smoke"}
#: set for the stand-in pass; kept away from the fall-back pass's kernels
STAND_IN_KEYS = ("CTCNET_OFFICIAL_CHECKPOINT", "CTCNET_CELEBA")

#: What makes a chapter's code differ between the modes (see the module docstring).
MODE_ATTRS = {"mode", "cap"}
MODE_CALLS = {"settings", "subject", "reproduction_plan"}
MODE_ENV = {"CTCNET_BOOK_MODE", "CTCNET_BOOK_CAP"}
#: What tells a chapter which path ``subject()`` took (the authors' weights, or the fall-back).
SUBJECT_ATTRS = {"official", "notice"}
#: ``BookSettings`` fields that are sizes (kept in step with the dataclass by a test).
SIZE_FIELDS = {"train_steps", "train_batch", "train_patch", "eval_images", "lam_steps",
               "attribution_windows", "erf_inputs", "timing_repeats"}


def default_notebooks() -> list[Path]:
    """Every numbered chapter of the book, then the GPU appendix."""
    chapters = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
    return chapters + sorted(BOOK.glob("appendix_*.ipynb"))


# ------------------------------------------------------------------------------------- the plan
@dataclass
class Dependence:
    """How one notebook's code depends on the mode."""

    path: Path
    reasons: list[str] = field(default_factory=list)  # why it must run in full mode
    calls_subject: bool = False  # takes the authors'-weights path when they are here
    asks_which_subject: bool = False  # reads .official / .notice: branches on the path taken
    unreachable: list[str] = field(default_factory=list)  # branches no CPU smoke can take

    @property
    def differs(self) -> bool:
        return bool(self.reasons)


def _code_cells(path: Path) -> list[str]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in notebook["cells"] if c["cell_type"] == "code"]


def _parse(source: str) -> ast.Module | None:
    """The cell as Python; IPython lines (``!cmd``, ``%magic``) are blanked first."""
    lines = ["" if re.match(r"\s*[!%]", line) else line for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _tests(tree: ast.AST):
    """The conditions of every branch in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.If, ast.IfExp, ast.While, ast.Assert)):
            yield node.test
        elif isinstance(node, ast.comprehension):
            yield from node.ifs
        elif isinstance(node, ast.match_case) and node.guard is not None:
            yield node.guard


def _called_name(node: ast.Call) -> str | None:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)


def _is_constant(node: ast.AST, value: str) -> bool:
    return isinstance(node, ast.Constant) and node.value == value


def _unreachable(node: ast.AST) -> bool:
    """``X.cap == "none"`` (full mode at its real sizes) or a comparison with ``"cuda"``."""
    if not isinstance(node, ast.Compare):
        return False
    operands = [node.left, *node.comparators]
    return any(_is_constant(c, "cuda") for c in operands) or (
        isinstance(node.left, ast.Attribute) and node.left.attr == "cap"
        and any(_is_constant(c, "none") for c in node.comparators))


def mode_dependence(path: Path) -> Dependence:
    """Why ``path`` must be executed in full mode (no reasons: its code is the same in both modes,
    only the sizes differ, and the small-mode book build executes it). Cells are numbered as the
    code cells of the notebook, from 1."""
    dep = Dependence(Path(path))
    for cell, source in enumerate(_code_cells(path), start=1):
        tree = _parse(source)
        if tree is None:
            dep.reasons.append(f"code cell {cell}: does not parse as Python (run it to be safe)")
            continue
        what: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in MODE_ATTRS:
                what.append(f"reads .{node.attr}")
            elif isinstance(node, ast.Attribute) and node.attr in SUBJECT_ATTRS:
                what.append(f"reads .{node.attr}")
                dep.asks_which_subject = True
            elif isinstance(node, ast.Call) and _called_name(node) in MODE_CALLS:
                what.append(f"calls {_called_name(node)}()")
                dep.calls_subject |= _called_name(node) == "subject"
            elif isinstance(node, ast.Constant) and node.value in MODE_ENV:
                what.append(f"reads ${node.value}")
            if _unreachable(node):
                dep.unreachable.append(f"code cell {cell} line {node.lineno}: {ast.unparse(node)}")
        for test in _tests(tree):
            what += [f"branches on .{n.attr}" for n in ast.walk(test)
                     if isinstance(n, ast.Attribute) and n.attr in SIZE_FIELDS]
        if what:
            dep.reasons.append(f"code cell {cell}: " + ", ".join(dict.fromkeys(what)))
    return dep


@dataclass(frozen=True)
class Task:
    path: Path
    stand_in: bool  # True: the authors'-weights path, with the untrained stand-in


def plan(notebooks: list[Path], everything: bool = False) -> tuple[list[Task], list[Dependence]]:
    """The executions: the stand-in pass over the notebooks that call ``subject()``; the fall-back
    pass over the other notebooks whose code differs between the modes, and over those that call
    ``subject()`` and ask which path it took (``.official``, ``.notice``); every notebook with
    ``everything``.

    A chapter that calls ``subject()`` but never asks which path it took runs the same lines on
    either path, so its stand-in pass covers them; what differs is inside ``subject()``, whose
    fall-back tests/test_full_mode.py checks."""
    deps = [mode_dependence(p) for p in notebooks]
    tasks = [Task(d.path, True) for d in deps if d.calls_subject]
    tasks += [Task(d.path, False) for d in deps
              if everything or (d.differs and (not d.calls_subject or d.asks_which_subject))]
    return tasks, deps


def print_plan(deps: list[Dependence], tasks: list[Task]) -> None:
    runs = {(t.path, t.stand_in) for t in tasks}
    print("Full-mode smoke plan (tools/smoke_full_mode.py):")
    for d in deps:
        passes = [name for name, flag in (("fall-back", False), ("stand-in", True))
                  if (d.path, flag) in runs]
        label = " + ".join(passes) if passes else "not run: same code in both modes (sizes only)"
        if passes == ["stand-in"]:
            label += " (no fall-back pass: the chapter never asks which path subject() took)"
        print(f"  {d.path.name}: {label}")
        for reason in d.reasons:
            print(f"      {reason}")
        for where in d.unreachable:
            print(f"      not reachable by a CPU smoke: {where}")


# -------------------------------------------------------------------------------- execution
def stand_in_official(folder: Path) -> dict[str, str]:
    """Environment that makes ``subject()`` find "the authors' weights and CelebA": an untrained
    ``official`` CTCNet in the authors' format and the offline test faces (128x128 PNGs)."""
    import torch

    import ctcnet
    from ctcnet.course.book import faces
    from ctcnet.data.offline_faces import default_root
    from ctcnet.model import reference_init_
    from ctcnet.weights import export_official_state_dict

    torch.manual_seed(0)
    model = reference_init_(ctcnet.build_model("official"))
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / "stand_in_best.pth"
    torch.save(export_official_state_dict(model), checkpoint)
    faces("test", 1)  # builds the offline face set on first use
    return {"CTCNET_OFFICIAL_CHECKPOINT": str(checkpoint), "CTCNET_CELEBA": str(default_root() / "test")}


def _cell_seconds(cell) -> float | None:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def _first_error_line(exc: BaseException) -> str:
    """The line that says what went wrong: the exception line of a cell's traceback, or the
    first line of nbclient's own message (a timeout, a dead kernel)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"[\w.]*(Error|Exception|Interrupt|Exit)\b", line)]
    return (errors[-1] if errors else lines[0] if lines else type(exc).__name__)[:300]


def run_one(path: Path, timeout: int, keep: Path | None, env: dict[str, str] | None = None,
            drop: tuple[str, ...] = (), threads: int | None = None, cell_times: int = 0,
            ) -> tuple[bool, float, float, str]:
    """Execute ``path`` in a new kernel, its environment this process's less ``drop`` and updated
    with ``env``; return (passed,
    wall seconds, the kernel's CPU seconds, first error line and the slowest cells)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    kernel_env = {k: v for k, v in os.environ.items() if k not in drop} | (env or {})
    if threads:  # several kernels at once: one thread each (the sizes are toys)
        kernel_env["OMP_NUM_THREADS"] = kernel_env["MKL_NUM_THREADS"] = str(threads)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        client.execute(env=kernel_env)
        ok, why = True, ""
    except (CellExecutionError, DeadKernelError, TimeoutError, RuntimeError) as exc:
        ok, why = False, _first_error_line(exc)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernel, once it has been reaped
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    if cell_times:
        code = [c for c in notebook.cells if c.cell_type == "code"]
        timed = sorted(((s, i) for i, c in enumerate(code, start=1)
                        if (s := _cell_seconds(c)) is not None), reverse=True)[:cell_times]
        slowest = ", ".join(f"cell {i} {s:.1f} s" for s, i in timed)
        why = (why + "\n    " if why else "") + f"slowest: {slowest}"
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, keep / path.name)
    return ok, seconds, cpu, why


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="run exactly these (one pass; default: the plan)")
    parser.add_argument("--all", action="store_true",
                        help="the fall-back pass over every notebook, not only those that differ")
    parser.add_argument("--plan", action="store_true", help="print the plan; execute nothing")
    parser.add_argument("--stand-in-official", action="store_true",
                        help="with NOTEBOOKS: take the authors'-weights path with the stand-in")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="kernels at once (default: 2, or 1 on one CPU); each gets "
                             "OMP_NUM_THREADS=1 when more than one")
    parser.add_argument("--keep", type=Path, help="write the executed copies to this folder")
    parser.add_argument("--timeout", type=int, default=600, help="per-cell timeout (s)")
    parser.add_argument("--cell-times", type=int, default=0, metavar="N",
                        help="also print each notebook's N slowest cells")
    args = parser.parse_args(argv)

    if args.notebooks:
        tasks = [Task(p, args.stand_in_official) for p in args.notebooks]
    else:
        tasks, deps = plan(default_notebooks(), everything=args.all)
        print_plan(deps, tasks)
        if args.plan:
            return 0
    stand_in_env: dict[str, str] = {}
    if any(t.stand_in for t in tasks):
        stand_in_env = stand_in_official(Path(tempfile.mkdtemp(prefix="ctcnet-stand-in-")))
    jobs = max(1, min(args.jobs, len(tasks)))
    threads = 1 if jobs > 1 else None
    results = []
    begin = time.perf_counter()
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures = {}
        for task in tasks:  # stand-in tasks first: the authors' network is the heavy one
            keep = args.keep / ("stand_in" if task.stand_in else "fall_back") if args.keep else None
            env = dict(SMOKE_ENV, **(stand_in_env if task.stand_in else {}))
            drop = () if task.stand_in or not stand_in_env else STAND_IN_KEYS
            futures[pool.submit(run_one, task.path, args.timeout, keep, env, drop, threads,
                                args.cell_times)] = task
        for future in as_completed(futures):
            task = futures[future]
            try:
                ok, seconds, cpu, why = future.result()
            except Exception as exc:  # the worker itself died
                ok, seconds, cpu, why = False, 0.0, 0.0, f"{type(exc).__name__}: {exc}"[:300]
            results.append((task, ok, seconds))
            which = "stand-in " if task.stand_in else "fall-back"
            print(f"{'PASS' if ok else 'FAIL'} {which} {seconds:7.1f} s wall {cpu:7.1f} s CPU  "
                  f"{task.path}" + (f"\n    {why}" if why else ""), flush=True)
    failed = sum(not ok for _, ok, _ in results)
    total = sum(s for _, _, s in results)
    n_stand_in = sum(t.stand_in for t, _, _ in results)
    print(f"full mode, sizes capped (smoke): {len(results) - failed} passed, {failed} failed "
          f"({len(results) - n_stand_in} fall-back, {n_stand_in} with the stand-in for the "
          f"authors' weights); {total:.0f} s of notebook time, {time.perf_counter() - begin:.0f} s "
          f"wall on {jobs} kernel(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

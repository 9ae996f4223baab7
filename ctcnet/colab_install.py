"""Install what ctcnet needs and the running Python lacks, and change nothing it already has.

Colab (and Kaggle, and a lab's image) ships its own torch, numpy and OpenCV, built to work with
each other and with torchvision, torchaudio and the rest of the image. Letting pip resolve
``ctcnet``'s requirements would upgrade, downgrade or reinstall some of them (gigabytes for
torch, a broken torchvision, a second OpenCV distribution overwriting the first one's ``cv2``).
So the install cell of every chapter installs the package alone (``pip install --no-deps``) and
then runs this file, which

* reads the requirements of the installed ``ctcnet`` (and of the extras asked for) from its
  metadata;
* counts a requirement as met when *any* version of it is installed; an OpenCV requirement is met
  by any of the four OpenCV distributions (they all provide ``cv2``);
* prints one warning line for each installed package outside ctcnet's range (e.g. a torch older
  than the floor) and leaves it as it is;
* installs only the missing ones, with every installed distribution pinned to its version
  (``pip install --constraint``), so that their own dependencies cannot move anything either.

It uses the standard library only, and runs as a script (not ``python -m ctcnet.…``, which
would import the package and so torch before anything is checked)::

    python .../site-packages/ctcnet/colab_install.py [EXTRA ...] [--dry-run]

``ctcnet.colab_install.plan()`` is the same decision as a function (tests, CI).
"""

import sys

if __name__ == "__main__" and sys.path and sys.path[0].rstrip("/").endswith("ctcnet"):
    del sys.path[0]  # run as a script: the package's own modules must not shadow anything

import argparse  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from importlib import metadata  # noqa: E402

DIST = "ctcnet"
#: Distributions that all provide ``cv2``: any one of them meets an OpenCV requirement.
OPENCV = frozenset({"opencv-python", "opencv-contrib-python", "opencv-python-headless",
                    "opencv-contrib-python-headless"})
#: Why a package has its floor, for the warning line (the others get a generic one).
WHY = {"torch": "for torch.is_autocast_enabled(device_type) and torch.compile on Python 3.12"}

_REQ = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[(?P<extras>[^\]]*)\])?"
                  r"\s*\(?(?P<specs>[^;()]*)\)?\s*(?:;(?P<marker>.*))?$")
_SPEC = re.compile(r"^\s*(~=|===|==|!=|<=|>=|<|>)\s*([^\s,]+)\s*$")
_EXTRA_MARKER = re.compile(r"""^\s*extra\s*==\s*["']([^"']+)["']\s*$""")
# PEP 440 public versions, with an optional local part: what may be pinned in a constraint.
_VERSION = re.compile(r"^v?(\d+!)?\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?"
                      r"(\+[a-z0-9]+(\.[a-z0-9]+)*)?$", re.I)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Requirement:
    name: str  # canonical
    specs: list = field(default_factory=list)  # [(op, version)]
    extras: tuple = ()
    marker: str = ""

    def __str__(self) -> str:
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        return self.name + extras + ",".join(op + v for op, v in self.specs)


def parse_requirement(line: str) -> Requirement:
    """A ``Requires-Dist`` line, in the subset of PEP 508 that package metadata uses."""
    m = _REQ.match(line)
    if not m or "@" in (m.group("specs") or ""):
        raise ValueError(f"cannot parse the requirement {line!r}")
    specs = []
    for part in filter(None, (p.strip() for p in m.group("specs").split(","))):
        s = _SPEC.match(part)
        if not s:
            raise ValueError(f"cannot parse the version specifier {part!r} in {line!r}")
        specs.append((s.group(1), s.group(2)))
    extras = tuple(canonical(e) for e in (m.group("extras") or "").split(",") if e.strip())
    return Requirement(canonical(m.group("name")), specs, extras, (m.group("marker") or "").strip())


def _release(version: str, strip: bool = True) -> tuple:
    """The numeric release of a version: "2.3.1+cu121" -> (2, 3, 1), "2.3.0" -> (2, 3)."""
    m = re.match(r"^v?(?:\d+!)?(\d+(?:\.\d+)*)", version.strip())
    nums = [int(x) for x in m.group(1).split(".")] if m else []
    while strip and len(nums) > 1 and nums[-1] == 0:
        nums.pop()
    return tuple(nums)


def _key(version: str) -> tuple:
    """Sortable: the release, then -1 for a pre-release (2.3.0rc1 < 2.3 < 2.3.post1)."""
    rest = re.sub(r"^v?(?:\d+!)?\d+(?:\.\d+)*", "", version.strip()).split("+")[0]
    pre = re.match(r"^[.-]?(a|b|c|rc|alpha|beta|pre|preview|dev)", rest, re.I)
    return _release(version), -1 if pre else 0


def _padded(nums: tuple, n: int) -> tuple:
    return (nums + (0,) * n)[:n]


def satisfies(version: str, specs: list) -> bool:
    """True when ``version`` is inside every specifier (PEP 440 order of releases)."""
    v = _key(version)
    for op, want in specs:
        if want.endswith(".*"):  # ==2.3.*: a prefix match
            prefix = _release(want[:-2], strip=False)
            hit = _padded(_release(version, strip=False), len(prefix)) == prefix
            ok = hit if op == "==" else not hit
        elif op == "~=":  # ~=2.3 is >=2.3,==2.*
            w = _release(want, strip=False)
            n = max(1, len(w) - 1)
            ok = v >= _key(want) and _padded(_release(version, strip=False), n) == w[:n]
        else:
            w = _key(want)
            ok = {"==": v == w, "===": version == want, "!=": v != w, "<": v < w, "<=": v <= w,
                  ">": v > w, ">=": v >= w}[op]
        if not ok:
            return False
    return True


def _marker_applies(marker: str, extras: set) -> bool:
    if not marker:
        return True
    m = _EXTRA_MARKER.match(marker)
    if m:
        return canonical(m.group(1)) in extras
    try:  # any other marker (python_version, sys_platform...): packaging knows them all
        from packaging.markers import Marker  # deferred: only for uncommon markers; may be absent
    except ImportError:  # pip vendors it; without either, take the requirement
        try:
            from pip._vendor.packaging.markers import Marker  # deferred: pip's copy, the fallback
        except ImportError:
            return True
    envs = [{"extra": e} for e in sorted(extras)] or [{"extra": ""}]
    return any(Marker(marker).evaluate(env) for env in envs)


def requirements(dist: str = DIST, extras=(), requires=None) -> list:
    """The requirements of ``dist`` with ``extras`` (a self-reference like ``ctcnet[analysis]``
    in the ``book`` extra expands to that extra's requirements)."""
    lines = metadata.requires(dist) if requires is None else requires
    if lines is None:
        raise LookupError(f"{dist} is installed without metadata (no Requires-Dist)")
    parsed = [parse_requirement(line) for line in lines]
    wanted = {canonical(e) for e in extras}
    while True:  # until the self-references add no extra
        out, grew = {}, False
        for req in parsed:
            if not _marker_applies(req.marker, wanted):
                continue
            if req.name == canonical(dist):
                grew |= not set(req.extras) <= wanted
                wanted |= set(req.extras)
            else:
                out.setdefault(str(req), req)
        if not grew:
            return list(out.values())


def installed() -> dict:
    """Every installed distribution: {canonical name: version}."""
    found = {}
    for d in metadata.distributions():
        name = d.metadata["Name"] if d.metadata else None
        if name and canonical(name) not in found:
            found[canonical(name)] = d.version
    return found


@dataclass
class Plan:
    missing: list  # Requirement, to install
    outside: list  # (Requirement, installed name, version): present but outside the range
    present: dict  # canonical name -> version: what the runtime has and is left alone

    def warnings(self) -> list:
        lines = []
        for req, name, version in self.outside:
            want = ",".join(op + v for op, v in req.specs)
            why = f" ({WHY[req.name]})" if req.name in WHY else ""
            lines.append(f"WARNING: this runtime has {name} {version}; ctcnet needs "
                         f"{req.name}{want}{why}. It is left as it is: some chapters may fail "
                         f"(pick a newer runtime, or `pip install '{req.name}{want}'` yourself).")
        return lines


def plan(extras=(), dist: str = DIST, have=None, requires=None) -> Plan:
    """What to install and what to warn about, changing nothing."""
    have = installed() if have is None else {canonical(k): v for k, v in have.items()}
    missing, outside, seen = [], [], set()
    for req in requirements(dist, extras, requires):
        names = sorted(OPENCV) if req.name in OPENCV else [req.name]
        present = [(n, have[n]) for n in names if n in have]
        if not present:
            if req.name not in seen:
                missing.append(req)
            seen.add(req.name)
            continue
        if not any(satisfies(v, req.specs) for _, v in present):
            outside.append((req, *present[0]))
    return Plan(missing, outside, have)


def constraints(have: dict) -> str:
    """``name==version`` for every installed distribution pip can parse: nothing may move."""
    return "".join(f"{n}=={v}\n" for n, v in sorted(have.items()) if _VERSION.match(v))


_CONFLICTS = "ERROR: pip's dependency resolver does not currently take into account"
_CONFLICT = re.compile(r"^(?P<dist>\S+) \S+ requires (?P<req>[A-Za-z0-9._-]+)")


def quiet_pip_check(stderr: str, p: Plan) -> str:
    """pip's closing check flags ctcnet's own requirements that this file leaves unmet on
    purpose (an OpenCV distribution other than the one named, a torch outside the range, both
    already said): drop those lines, keep every other line pip printed."""
    known = {r.name for r, _, _ in p.outside} | set(OPENCV)
    lines, out = stderr.splitlines(keepends=True), []
    for i, line in enumerate(lines):
        m = _CONFLICT.match(line)
        if m and canonical(m.group("dist")) == DIST and canonical(m.group("req")) in known:
            continue
        if line.startswith(_CONFLICTS):  # the header: kept only if a conflict line follows
            rest = [ln for ln in lines[i + 1:] if _CONFLICT.match(ln)]
            if all(canonical(_CONFLICT.match(ln).group("dist")) == DIST
                   and canonical(_CONFLICT.match(ln).group("req")) in known for ln in rest):
                continue
        out.append(line)
    return "".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("extras", nargs="*", help="extras of ctcnet to install too (e.g. analysis)")
    ap.add_argument("--dry-run", action="store_true", help="say what would be installed")
    args = ap.parse_args(argv)
    try:
        p = plan(args.extras)
    except (LookupError, metadata.PackageNotFoundError, ValueError) as exc:
        print(f"ctcnet install: {exc}", file=sys.stderr)
        return 1
    for line in p.warnings():
        print(line, file=sys.stderr)
    kept = [n for n in ("torch", "numpy", *sorted(OPENCV)) if n in p.present]
    kept_text = ", ".join(f"{n} {p.present[n]}" for n in kept) or "nothing"
    if not p.missing:
        print(f"ctcnet install: nothing missing; kept {kept_text}")
        return 0
    todo = [str(r) for r in p.missing]
    if args.dry_run:
        print(f"ctcnet install: would install {' '.join(todo)}; keeps {kept_text}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        pins = os.path.join(tmp, "installed.txt")
        with open(pins, "w", encoding="utf-8") as f:
            f.write(constraints(p.present))
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--constraint", pins, *todo]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(quiet_pip_check(proc.stderr, p))
    if proc.returncode != 0:
        print(f"ctcnet install: pip could not install {' '.join(todo)} without changing a "
              "package this runtime already has (see pip's message above)", file=sys.stderr)
        return proc.returncode
    print(f"ctcnet install: installed {' '.join(todo)}; kept {kept_text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

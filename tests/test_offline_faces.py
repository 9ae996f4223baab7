"""Tests of the offline face set: the shipped manifest and the builder (no network by default)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import threading
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ctcnet.cli import main
from ctcnet.data import offline_faces as of
from ctcnet.data.fetch import file_digest

HEX64 = re.compile(r"^[0-9a-f]{64}$")


# ------------------------------------------------------------------ shipped manifest


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return of.load_manifest()


def test_manifest_well_formed(manifest: dict[str, Any]) -> None:
    assert manifest["version"] == 1
    assert manifest["hr_size"] == 128
    source_ids = [s["id"] for s in manifest["sources"]]
    assert len(source_ids) == len(set(source_ids))
    for src in manifest["sources"]:
        assert src["registry"] in ("pypi", "npm")
        assert src["kind"] in ("wheel", "sdist", "npm")
        assert HEX64.match(src["sha256"]), src["id"]
        assert src["licence_note"]
    face_ids = [f["id"] for f in manifest["faces"]]
    assert len(face_ids) == len(set(face_ids))
    for face in manifest["faces"]:
        assert face["source"] in source_ids
        assert HEX64.match(face["member_sha256"]), face["id"]
        left, top, size = face["box"]
        assert size >= 96, face["id"]
        assert face["split"] in ("train", "test")


def test_manifest_split_by_identity(manifest: dict[str, Any]) -> None:
    faces = manifest["faces"]
    train_ids = {f["identity"] for f in faces if f["split"] == "train"}
    test_ids = {f["identity"] for f in faces if f["split"] == "test"}
    assert not train_ids & test_ids
    assert len(test_ids) >= 15
    n_test = sum(f["split"] == "test" for f in faces)
    assert len(faces) >= 90
    assert 0.12 <= n_test / len(faces) <= 0.3


def test_manifest_same_member_same_checksum(manifest: dict[str, Any]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for face in manifest["faces"]:
        key = (face["source"], face["member"])
        assert seen.setdefault(key, face["member_sha256"]) == face["member_sha256"]


def test_validate_rejects_identity_in_both_splits(manifest: dict[str, Any]) -> None:
    bad = json.loads(json.dumps(manifest))
    first = bad["faces"][0]
    other = next(f for f in bad["faces"] if f["split"] != first["split"])
    other["identity"] = first["identity"]
    with pytest.raises(of.ManifestError, match="both splits"):
        of.validate_manifest(bad)


# ------------------------------------------------------------------ synthetic archives


def _png_bytes(seed: int, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(seed: int, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def synthetic(tmp_path: Path) -> dict[str, Any]:
    """A wheel-like zip and an npm-like tar.gz with generated photos, plus a manifest."""
    store = tmp_path / "store"
    store.mkdir()
    photos = {
        "pkg/data/a.png": _png_bytes(1, (200, 160)),
        "pkg/data/b.jpg": _jpeg_bytes(2, (300, 300)),
    }
    whl = store / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        for name, data in photos.items():
            zf.writestr(name, data)
    npm_photo = _png_bytes(3, (150, 150))
    tgz = store / "fake-npm-2.0.0.tgz"
    with tarfile.open(tgz, "w:gz") as tf:
        info = tarfile.TarInfo("package/demo/c.png")
        info.size = len(npm_photo)
        tf.addfile(info, io.BytesIO(npm_photo))
    manifest = {
        "version": 1,
        "hr_size": 128,
        "sources": [
            {
                "id": "fakepkg",
                "registry": "pypi",
                "package": "fakepkg",
                "version": "1.0",
                "kind": "wheel",
                "filename": whl.name,
                "sha256": file_digest(whl),
                "licence_note": "generated noise",
            },
            {
                "id": "fakenpm",
                "registry": "npm",
                "package": "fake-npm",
                "version": "2.0.0",
                "kind": "npm",
                "filename": tgz.name,
                "sha256": file_digest(tgz),
                "licence_note": "generated noise",
            },
        ],
        "faces": [
            # inside the image
            _face("fakepkg-a-0", "fakepkg", "pkg/data/a.png", photos, [10, 10, 120], "p1", "train"),
            # leaves the image on the left and the top: reflect padding
            _face(
                "fakepkg-a-1", "fakepkg", "pkg/data/a.png", photos, [-30, -20, 140], "p2", "test"
            ),
            _face("fakepkg-b-0", "fakepkg", "pkg/data/b.jpg", photos, [50, 40, 200], "p1", "train"),
            _face(
                "fakepkg-b-1", "fakepkg", "pkg/data/b.jpg", photos, [200, 200, 150], "p3", "test"
            ),
            _face(
                "fakenpm-c-0",
                "fakenpm",
                "package/demo/c.png",
                {"package/demo/c.png": npm_photo},
                [0, 0, 150],
                "p4",
                "train",
            ),
        ],
    }
    calls: list[str] = []

    def fetcher(source: dict[str, Any], dest: Path) -> Path:
        calls.append(source["id"])
        target = Path(dest) / source["filename"]
        shutil.copyfile(store / source["filename"], target)
        return target

    return {
        "manifest": manifest,
        "fetcher": fetcher,
        "calls": calls,
        "photos": {**photos, "package/demo/c.png": npm_photo},
        "root": tmp_path / "out",
    }


def _face(
    fid: str,
    src: str,
    member: str,
    photos: dict[str, bytes],
    box: list[int],
    ident: str,
    split: str,
) -> dict[str, Any]:
    return {
        "id": fid,
        "source": src,
        "member": member,
        "member_sha256": _sha(photos[member]),
        "box": box,
        "identity": ident,
        "split": split,
    }


def _all_pngs(root: Path) -> list[Path]:
    return sorted(root.glob("train/*.png")) + sorted(root.glob("test/*.png"))


def test_build_writes_128px_pngs(synthetic: dict[str, Any]) -> None:
    man = synthetic["manifest"]
    root = of.build_offline_faces(
        synthetic["root"], manifest=man, progress=False, fetcher=synthetic["fetcher"]
    )
    for face in man["faces"]:
        path = root / face["split"] / f"{face['id']}.png"
        with Image.open(path) as img:
            assert img.format == "PNG"
            assert img.size == (128, 128)
            assert img.mode == "RGB"
    assert len(_all_pngs(root)) == len(man["faces"])
    assert not list(root.rglob("*.tmp"))
    readme = (root / "README.txt").read_text()
    assert "fakepkg" in readme and "fake-npm" in readme and "generated noise" in readme
    info = of.offline_faces_info(root, man)
    assert info["faces"] == {"train": 3, "test": 2}
    assert info["identities"] == {"train": 2, "test": 2}
    assert info["complete"]


def test_crop_matches_reference_bicubic(synthetic: dict[str, Any]) -> None:
    man = synthetic["manifest"]
    root = of.build_offline_faces(
        synthetic["root"], manifest=man, progress=False, fetcher=synthetic["fetcher"]
    )
    src = Image.open(io.BytesIO(synthetic["photos"]["pkg/data/b.jpg"])).convert("RGB")
    expected = src.crop((50, 40, 250, 240)).resize((128, 128), Image.Resampling.BICUBIC)
    got = Image.open(root / "train" / "fakepkg-b-0.png")
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_second_build_downloads_and_writes_nothing(synthetic: dict[str, Any]) -> None:
    kw = {"manifest": synthetic["manifest"], "progress": False, "fetcher": synthetic["fetcher"]}
    root = of.build_offline_faces(synthetic["root"], **kw)
    mtimes = {p: p.stat().st_mtime_ns for p in _all_pngs(root)}
    n_calls = len(synthetic["calls"])
    of.build_offline_faces(synthetic["root"], **kw)
    assert len(synthetic["calls"]) == n_calls  # archives cached with the right sha256
    assert {p: p.stat().st_mtime_ns for p in _all_pngs(root)} == mtimes


def test_built_crop_with_overflow_uses_reflection(synthetic: dict[str, Any]) -> None:
    man = synthetic["manifest"]
    root = of.build_offline_faces(
        synthetic["root"], manifest=man, progress=False, fetcher=synthetic["fetcher"]
    )
    src = np.asarray(Image.open(io.BytesIO(synthetic["photos"]["pkg/data/a.png"])).convert("RGB"))
    padded = np.pad(src, ((20, 0), (30, 0), (0, 0)), mode="reflect")
    ref = Image.fromarray(np.ascontiguousarray(padded[:140, :140]))
    ref = ref.resize((128, 128), Image.Resampling.BICUBIC)
    got = np.asarray(Image.open(root / "test" / "fakepkg-a-1.png"))
    np.testing.assert_array_equal(got, np.asarray(ref))
    zero_padded = np.pad(src, ((20, 0), (30, 0), (0, 0)), mode="constant")[:140, :140]
    ref_zero = Image.fromarray(np.ascontiguousarray(zero_padded))
    ref_zero = np.asarray(ref_zero.resize((128, 128), Image.Resampling.BICUBIC))
    assert not np.array_equal(got, ref_zero)


def test_member_checksum_mismatch_names_member(synthetic: dict[str, Any]) -> None:
    man = synthetic["manifest"]
    man["faces"][2]["member_sha256"] = "0" * 64  # fakepkg-b-0 -> pkg/data/b.jpg
    man["faces"][3]["member_sha256"] = "0" * 64
    with pytest.raises(of.ChecksumError, match=r"pkg/data/b\.jpg"):
        of.build_offline_faces(
            synthetic["root"], manifest=man, progress=False, fetcher=synthetic["fetcher"]
        )
    root = synthetic["root"]
    assert not (root / "train" / "fakepkg-b-0.png").exists()
    assert not list(root.rglob("*.tmp"))
    for png in _all_pngs(root):  # whatever was written before the error is complete
        with Image.open(png) as img:
            img.load()
            assert img.size == (128, 128)


def test_archive_checksum_mismatch(synthetic: dict[str, Any]) -> None:
    man = synthetic["manifest"]
    man["sources"][0]["sha256"] = "f" * 64
    with pytest.raises(of.ChecksumError, match=r"fakepkg-1\.0-py3-none-any\.whl"):
        of.build_offline_faces(
            synthetic["root"], manifest=man, progress=False, fetcher=synthetic["fetcher"]
        )
    assert not (synthetic["root"] / "archives" / "fakepkg-1.0-py3-none-any.whl").exists()


def test_interrupted_build_completes(
    synthetic: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    man = synthetic["manifest"]
    real_crop = of.crop_square
    count = {"n": 0}

    def failing_crop(*args: Any, **kwargs: Any) -> Image.Image:
        count["n"] += 1
        if count["n"] > 2:
            raise KeyboardInterrupt("simulated interruption")
        return real_crop(*args, **kwargs)

    monkeypatch.setattr(of, "crop_square", failing_crop)
    with pytest.raises(KeyboardInterrupt):
        of.build_offline_faces(
            synthetic["root"], manifest=man, progress=False, fetcher=synthetic["fetcher"]
        )
    assert len(_all_pngs(synthetic["root"])) == 2
    assert not list(synthetic["root"].rglob("*.tmp"))
    monkeypatch.setattr(of, "crop_square", real_crop)

    # a half-written temp file and a truncated PNG, as a crash mid-write could leave them
    stale = synthetic["root"] / "train" / ".fakepkg-b-0-abc.tmp"
    stale.write_bytes(b"\x89PNG garbage")
    truncated = synthetic["root"] / "train" / "fakenpm-c-0.png"
    truncated.write_bytes(b"\x89PNG\r\n\x1a\n")

    of.build_offline_faces(
        synthetic["root"], manifest=man, progress=False, fetcher=synthetic["fetcher"]
    )
    pngs = _all_pngs(synthetic["root"])
    assert len(pngs) == len(man["faces"])
    assert not list(synthetic["root"].rglob("*.tmp"))
    for png in pngs:
        with Image.open(png) as img:
            img.load()
            assert img.size == (128, 128)
    assert count["n"] == 3  # the first two faces were not cropped again


def test_changed_box_or_split_is_rebuilt(synthetic: dict[str, Any]) -> None:
    man = synthetic["manifest"]
    kw = {"progress": False, "fetcher": synthetic["fetcher"]}
    root = of.build_offline_faces(synthetic["root"], manifest=man, **kw)
    before = np.asarray(Image.open(root / "train" / "fakepkg-a-0.png"))
    man["faces"][0]["box"] = [20, 10, 120]
    man["faces"][4]["split"] = "test"
    man["faces"][4]["identity"] = "p5"
    of.build_offline_faces(synthetic["root"], manifest=man, **kw)
    after = np.asarray(Image.open(root / "train" / "fakepkg-a-0.png"))
    assert not np.array_equal(before, after)
    assert (root / "test" / "fakenpm-c-0.png").is_file()
    assert not (root / "train" / "fakenpm-c-0.png").exists()


def test_npm_missing_builds_pypi_part_and_warns(
    synthetic: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    man = synthetic["manifest"]
    real_which = shutil.which
    monkeypatch.setattr(
        of.shutil, "which", lambda name, *a, **k: None if name == "npm" else real_which(name)
    )
    fetched: list[str] = []

    def fake_default(source: dict[str, Any], dest: Path) -> Path:
        fetched.append(source["id"])
        return synthetic["fetcher"](source, dest)

    monkeypatch.setattr(of, "fetch_archive", fake_default)
    with pytest.warns(of.NpmMissingWarning, match="npm"):
        root = of.build_offline_faces(synthetic["root"], manifest=man, progress=False)
    assert fetched == ["fakepkg"]
    assert len(_all_pngs(root)) == 4
    assert not (root / "train" / "fakenpm-c-0.png").exists()


def test_registry_unreachable_is_one_line_error(
    synthetic: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    man = synthetic["manifest"]
    man["sources"] = man["sources"][:1]
    man["faces"] = [f for f in man["faces"] if f["source"] == "fakepkg"]
    man["sources"][0]["package"] = "ctcnet-no-such-package-for-tests"
    # an index that cannot be reached: fails fast without touching the network
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    with pytest.raises(of.RegistryUnavailableError) as err:
        of.build_offline_faces(synthetic["root"], manifest=man, progress=False)
    assert isinstance(err.value, RuntimeError)
    msg = str(err.value)
    assert "\n" not in msg
    assert "ctcnet-no-such-package-for-tests==1.0" in msg


class _Index(http.server.BaseHTTPRequestHandler):
    """A PyPI stand-in: a PEP 691 project page and the files it lists."""

    files: dict[str, bytes] = {}
    listed: dict[str, str] = {}  # filename -> sha256 the page states

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.startswith("/simple/"):
            body = json.dumps({"files": [
                {"filename": name, "url": f"/files/{name}", "hashes": {"sha256": sha}}
                for name, sha in self.listed.items()
            ]}).encode()
            kind = "application/vnd.pypi.simple.v1+json"
        elif self.path.startswith("/files/") and self.path[7:] in self.files:
            body, kind = self.files[self.path[7:]], "application/octet-stream"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def index(monkeypatch: pytest.MonkeyPatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_port}/simple")
    yield _Index
    server.shutdown()


def _sdist_whose_build_would_leave_a_mark(mark: Path) -> bytes:
    setup = f"open({str(mark)!r}, 'w').write('built')\nfrom setuptools import setup\nsetup()\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in (("fakepkg-1.0/setup.py", setup.encode()),
                           ("fakepkg-1.0/data/a.png", _png_bytes(1, (200, 160)))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_offline_faces_fetch_never_runs_a_package_build_and_checks_the_digest_before_unpacking(
    index: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_process(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a process was started: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "run", no_process)
    monkeypatch.setattr(subprocess, "Popen", no_process)
    mark = tmp_path / "build-ran"
    sdist = _sdist_whose_build_would_leave_a_mark(mark)
    source = {"id": "fakepkg", "registry": "pypi", "package": "FakePkg", "version": "1.0",
              "kind": "sdist", "filename": "fakepkg-1.0.tar.gz", "sha256": _sha(sdist)}
    index.files = {"fakepkg-1.0.tar.gz": sdist}
    index.listed = {"fakepkg-1.0.tar.gz": _sha(sdist)}
    got = of.fetch_archive(source, tmp_path / "archives")
    assert got == tmp_path / "archives" / "fakepkg-1.0.tar.gz" and got.read_bytes() == sdist
    assert not mark.exists()

    # another file behind the same name: refused, and nothing is left that could be opened
    index.files = {"fakepkg-1.0.tar.gz": sdist + b"tampered"}
    with pytest.raises(of.ChecksumError, match="sha256 mismatch"):
        of.fetch_archive(source, tmp_path / "other")
    assert list((tmp_path / "other").iterdir()) == []
    # a file the index does not list: one line naming it
    with pytest.raises(of.RegistryUnavailableError, match="lists no fakepkg-2.0.tar.gz"):
        of.fetch_archive({**source, "filename": "fakepkg-2.0.tar.gz"}, tmp_path / "other")


def test_cli_handler(
    synthetic: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    man = synthetic["manifest"]
    monkeypatch.setattr("ctcnet.cli.load_manifest", lambda: man)
    monkeypatch.setattr(of, "fetch_archive", synthetic["fetcher"])
    monkeypatch.setattr(of.shutil, "which", lambda name, *a, **k: "/usr/bin/npm")
    assert main(["data", "offline-faces", "--root", str(synthetic["root"]), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "train:    3 faces" in out and "test :    2 faces" in out

    not_a_dir = synthetic["root"].parent / "file.txt"
    not_a_dir.write_text("x")
    assert main(["data", "offline-faces", "--root", str(not_a_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and "Traceback" not in err


def test_offline_faces_unwritable_root_is_one_line_naming_the_folder(
    synthetic: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr("ctcnet.cli.load_manifest", lambda: synthetic["manifest"])
    locked = synthetic["root"]
    # as root, chmod locks nothing: make the folder's creation fail the way it does for a user
    real_mkdir = Path.mkdir

    def denied(self: Path, *args: Any, **kwargs: Any) -> None:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", denied)
    assert main(["data", "offline-faces", "--root", str(locked), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: cannot create offline faces folder {locked}: permission denied\n"
    assert "Errno" not in err


def test_offline_faces_write_failure_mid_build_is_one_line_without_errno(
    synthetic: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr("ctcnet.cli.load_manifest", lambda: synthetic["manifest"])
    monkeypatch.setattr(of, "fetch_archive", synthetic["fetcher"])

    def denied(image: Image.Image, path: Path, *args: Any) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(of, "save_png", denied)
    assert main(["data", "offline-faces", "--root", str(synthetic["root"]), "--no-progress"]) == 1
    err = capsys.readouterr().err
    first = synthetic["root"] / "train" / "fakepkg-a-0.png"
    assert err == f"error: permission denied: {first}\n"


# ------------------------------------------------------------------ real archives (opt-in)


@pytest.mark.network
@pytest.mark.skipif(
    os.environ.get("CTCNET_NETWORK_TESTS") != "1", reason="set CTCNET_NETWORK_TESTS=1"
)
def test_real_archives_checksums(manifest: dict[str, Any], tmp_path: Path) -> None:
    checked = Counter()
    for src in manifest["sources"]:
        if src["registry"] == "npm" and shutil.which("npm") is None:
            continue
        path = of.fetch_archive(src, tmp_path)
        assert file_digest(path) == src["sha256"], src["filename"]
        checked[src["registry"]] += 1
        path.unlink()
    assert checked["pypi"] >= 1

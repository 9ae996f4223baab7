"""Does ``ctcnet upscale --scale S`` make faces better? Measured on faces with ground truth.

The photos are the source photos of the offline face set's **test** faces (21 faces in 17
photos; the model never saw them: faces of the training split are left out, so are their photos'
other faces from the score), fetched from the registries as ``ctcnet data offline-faces`` does.
For each test face and each face-size bin (its MTCNN box width, bin centres 10, 14, 18, 22, 28
and 40 px), a square of 6 face widths around the face is cut from the original photo and resized
(PIL Lanczos) so that the face is ``S x`` the bin centre wide: this is the ground truth. Shrinking
it ``S`` times with PIL bicubic (the degradation the model was trained on) gives the small photo,
in which the face has the bin's size. A face is used only where the original is large enough
(ground truth is never enlarged), so the larger bins hold fewer faces at ``S = 8``; ``S = 4``
covers them with more faces.

``ctcnet upscale --scale S`` enlarges every small photo back; the score is PSNR on Y (BT.601,
float) inside the face's box, against the ground truth, for the output and for the plain
enlargement (PIL bicubic, the command's background), and the gain is their difference, with a
paired bootstrap CI per bin (``ctcnet.metrics.paired_bootstrap_ci``). A face the detector
misses stays the plain enlargement (gain 0); the detection recall per bin is reported with the
former search (``min_size`` 20, no enlarged copy) beside it. ``jpeg`` repeats the x8 run on the
small photos saved as JPEG quality 75 (``jpeg90``: quality 90), a degradation the model was not
trained on. At x4 only
the two largest bins are run (the large windows are slow on a CPU)::

    python benchmarks/bench_upscale.py prepare --out /tmp/upbench
    python -m ctcnet upscale /tmp/upbench/x8/lr -o /tmp/upbench/x8/rule --scale 8
    python benchmarks/bench_upscale.py jpeg --data /tmp/upbench
    python -m ctcnet upscale /tmp/upbench/x8/lr_jpeg -o /tmp/upbench/x8/jpeg --scale 8
    python -m ctcnet upscale /tmp/upbench/x8/lr_jpeg90 -o /tmp/upbench/x8/jpeg90 --scale 8
    mkdir /tmp/upbench/x4/lr_big && cp /tmp/upbench/x4/lr/*_{28,40}.png /tmp/upbench/x4/lr_big/
    python -m ctcnet upscale /tmp/upbench/x4/lr_big -o /tmp/upbench/x4/rule --scale 4
    python benchmarks/bench_upscale.py report --data /tmp/upbench
    python benchmarks/bench_upscale.py padding --data /tmp/upbench   # windows of tiny photos
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

BINS = {10: "8-12", 14: "12-16", 18: "16-20", 22: "20-24", 28: "24-32", 40: "32-48"}
SCALES = (8, 4)
CONTEXT = 6  # the photo cut around a face is this many face widths wide
IOU_MATCH = 0.3


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    return inter / (aw * ah + bw * bh - inter)


def _square_iou(face_box, crop_box) -> float:
    """IoU of the 1.6x square around an (x, y, w, h) detection with a manifest crop box."""
    x, y, w, h = face_box
    side = max(w, h) * 1.6
    left, top, crop = crop_box
    return _iou((x + w / 2 - side / 2, y + h / 2 - side / 2, side, side), (left, top, crop, crop))


def held_out_photos():
    """``{(source, member): [test faces of the manifest]}`` and a reader of the originals."""
    from ctcnet.data.fetch import ArchiveReader
    from ctcnet.data.imageio import decode_image
    from ctcnet.data.offline_faces import (
        _ensure_archive,
        default_root,
        fetch_archive,
        load_manifest,
    )

    manifest = load_manifest()
    sources = {s["id"]: s for s in manifest["sources"]}
    archives = default_root() / "archives"
    photos: dict[tuple[str, str], list] = {}
    for face in manifest["faces"]:
        if face["split"] == "test":
            photos.setdefault((face["source"], face["member"]), []).append(face)

    def read(source: str, member: str) -> Image.Image:
        reader = ArchiveReader(_ensure_archive(sources[source], archives, fetch_archive, True))
        try:
            return decode_image(reader.read(member), member)
        finally:
            reader.close()

    return photos, read


def prepare(out: Path) -> None:
    from ctcnet.faces import detect_faces

    photos, read = held_out_photos()
    truth = {}
    for (source, member), faces in sorted(photos.items()):
        img = read(source, member)
        found = detect_faces(img, "mtcnn")
        for face in faces:
            best = max(found, key=lambda d: _square_iou(d.box, face["box"]), default=None)
            if best is None or _square_iou(best.box, face["box"]) < IOU_MATCH:
                print(f"{face['id']}: not found on the original, left out")
                continue
            x, y, w, h = best.box
            cx, cy = x + w / 2, y + h / 2
            half = CONTEXT * w / 2
            left, top = max(0, round(cx - half)), max(0, round(cy - half))
            right, bottom = min(img.width, round(cx + half)), min(img.height, round(cy + half))
            region = img.crop((left, top, right, bottom))
            for scale in SCALES:
                for centre, label in BINS.items():
                    g = scale * centre / w
                    if g > 1:
                        continue  # the original is too small to be ground truth at this size
                    width = int(region.width * g) // scale * scale
                    height = int(region.height * g) // scale * scale
                    gt = region.resize((round(region.width * g), round(region.height * g)),
                                       Image.LANCZOS).crop((0, 0, width, height))
                    small = gt.resize((width // scale, height // scale), Image.BICUBIC)
                    name = f"{face['id']}_{centre}.png"
                    for kind, image in (("gt", gt), ("lr", small)):
                        (out / f"x{scale}" / kind).mkdir(parents=True, exist_ok=True)
                        image.save(out / f"x{scale}" / kind / name)
                    box = [(x - left) * g, (y - top) * g, w * g, h * g]
                    truth.setdefault(f"x{scale}", {})[name] = {
                        "face": face["id"], "bin": label, "centre": centre, "box": box,
                    }
            print(f"{face['id']}: face {w:.0f} px in {member}", flush=True)
    (out / "truth.json").write_text(json.dumps(truth, indent=1))


def _psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    from ctcnet.metrics import rgb_to_y

    ya, yb = rgb_to_y(a, "basicsr").astype(np.float64), rgb_to_y(b, "basicsr").astype(np.float64)
    return float(10 * np.log10(255.0**2 / max(np.mean((ya - yb) ** 2), 1e-10)))


#: The runs: output folder, small photos read by the command, title. "jpeg" repeats x8 on the
#: small photos saved as JPEG quality 75 (a degradation the model was not trained on).
RUNS = {
    "rule": ("lr", "shipped rule"),
    "jpeg": ("lr_jpeg", "small photos saved as JPEG q75"),
    "jpeg90": ("lr_jpeg90", "small photos saved as JPEG q90"),
}


def prepare_jpeg(data: Path, scale: int = 8) -> None:
    """The small photos of ``x<scale>`` saved as JPEG quality 75 (``lr_jpeg``) and 90
    (``lr_jpeg90``), for the ``jpeg`` and ``jpeg90`` runs."""
    for folder, quality in (("lr_jpeg", 75), ("lr_jpeg90", 90)):
        (data / f"x{scale}" / folder).mkdir(exist_ok=True)
        for path in sorted((data / f"x{scale}" / "lr").glob("*.png")):
            Image.open(path).convert("RGB").save(
                data / f"x{scale}" / folder / f"{path.stem}.jpg", quality=quality
            )


def _rows(data: Path, scale: int, run: str) -> list[dict]:
    truth = json.loads((data / "truth.json").read_text())[f"x{scale}"]
    rows = []
    for name, t in truth.items():
        stem = name.removesuffix(".png")
        target = data / f"x{scale}" / run / f"{stem}.json"
        if not target.is_file():
            continue  # not run at this scale (e.g. only the large bins at x4)
        record = json.loads(target.read_text())
        gt = np.asarray(Image.open(data / f"x{scale}" / "gt" / name).convert("RGB"))
        folder = data / f"x{scale}" / RUNS[run][0]
        small = Image.open(next(folder.glob(f"{stem}.*"))).convert("RGB")
        plain = np.asarray(small.resize((gt.shape[1], gt.shape[0]), Image.BICUBIC))
        out = np.asarray(Image.open(data / f"x{scale}" / run / record["image"]).convert("RGB"))
        x, y, w, h = t["box"]
        x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
        x1, y1 = min(gt.shape[1], int(np.ceil(x + w))), min(gt.shape[0], int(np.ceil(y + h)))
        inside = (slice(y0, y1), slice(x0, x1))
        match = max(record["faces"], key=lambda f: _iou(f["output_box"], t["box"]), default=None)
        found = match is not None and _iou(match["output_box"], t["box"]) >= IOU_MATCH
        if record["detector"].startswith("none") and record["faces"]:  # a tiny photo: one face
            match, found = record["faces"][0], True
        rows.append({
            "name": name, "face": t["face"], "bin": t["bin"], "centre": t["centre"],
            "found": found, "sr": bool(found and match["super_resolved"]),
            "tiny": record["detector"].startswith("none"),
            "crop_side": match["crop_side"] if found else None,
            "plain": _psnr_y(plain[inside], gt[inside]), "out": _psnr_y(out[inside], gt[inside]),
        })
    return rows


def _recall_before(data: Path, scale: int) -> dict[str, int]:
    """Faces found by the former search (MTCNN, min_size 20, no enlarged copy), per bin, in the
    photos that are searched (larger than TINY_SIDE)."""
    from ctcnet.faces import detect_faces
    from ctcnet.upscale import TINY_SIDE

    truth = json.loads((data / "truth.json").read_text())[f"x{scale}"]
    found: dict[str, int] = {}
    for name, t in truth.items():
        if not (data / f"x{scale}" / "rule" / name.replace(".png", ".json")).is_file():
            continue  # scored only where the command ran
        small = np.asarray(Image.open(data / f"x{scale}" / "lr" / name).convert("RGB"))
        if max(small.shape[:2]) <= TINY_SIDE:
            continue  # taken whole as one face, then and now
        box = [v / scale for v in t["box"]]
        hit = any(_iou(f.box, box) >= IOU_MATCH for f in detect_faces(small, "mtcnn", 20))
        found[t["bin"]] = found.get(t["bin"], 0) + hit
    return found


def report(data: Path) -> None:
    from ctcnet.stats import paired_bootstrap_ci

    for scale in SCALES:
        before = _recall_before(data, scale)
        for run, (_, title) in RUNS.items():
            if not (data / f"x{scale}" / run).is_dir():
                continue
            rows = _rows(data, scale, run)
            print(f"\n--scale {scale}, {title}\n")
            print("| face size (px) | faces | tiny photos | searched: found (before) | "
                  "super-resolved | crop side (px) | plain PSNR-Y | gain (dB) [95% CI] | "
                  "worst face | faces < -0.05 dB |")
            print("|---|---|---|---|---|---|---|---|---|---|")
            for label in BINS.values():
                r = [x for x in rows if x["bin"] == label]
                if not r:
                    continue
                gain = np.array([x["out"] - x["plain"] for x in r])
                crops = [x["crop_side"] for x in r if x["crop_side"] is not None]
                crop = f"{np.median(crops):.0f}" if crops else "-"
                if len(r) >= 2:
                    ci = paired_bootstrap_ci([x["out"] for x in r], [x["plain"] for x in r])
                    gain_text = f"{ci.mean:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}]"
                else:
                    gain_text = f"{gain.mean():+.2f}"
                tiny = sum(x["tiny"] for x in r)
                searched = [x for x in r if not x["tiny"]]
                print(
                    f"| {label} | {len(r)} | {tiny} | {sum(x['found'] for x in searched)} of "
                    f"{len(searched)} ({before.get(label, 0)}) | {sum(x['sr'] for x in r)} | {crop} "
                    f"| {np.mean([x['plain'] for x in r]):.2f} | {gain_text} | {gain.min():+.2f} "
                    f"| {int((gain < -0.05).sum())} |"
                )
            (data / f"rows_x{scale}_{run}.json").write_text(json.dumps(rows, indent=1))


def padding(data: Path, scale: int = 8) -> None:
    """How the model's window is completed for the small photos under 16 px (the window leaves
    the photo on every side): numpy's "reflect", "edge", "symmetric" (shipped), or the photo
    resized to 16x16 and the output resized back. Gain in the face box, per photo."""
    from ctcnet import upscale
    from ctcnet.weights import load_model

    model = load_model(None)
    truth = json.loads((data / "truth.json").read_text())[f"x{scale}"]
    for name, t in truth.items():
        small = Image.open(data / f"x{scale}" / "lr" / name).convert("RGB")
        if max(small.size) >= upscale.LR_SIDE:
            continue
        lr = np.asarray(small)
        h, w = lr.shape[:2]
        gt = np.asarray(Image.open(data / f"x{scale}" / "gt" / name).convert("RGB"))
        plain = np.asarray(small.resize((w * scale, h * scale), Image.BICUBIC))
        x, y, bw, bh = t["box"]
        inside = (slice(max(0, int(y)), int(np.ceil(y + bh))),
                  slice(max(0, int(x)), int(np.ceil(x + bw))))
        gains = {}
        for mode in ("reflect", "edge", "symmetric", "resize"):
            out = plain.copy()
            if mode == "resize":
                side = max(h, w)
                square = np.pad(lr, ((0, side - h), (0, side - w), (0, 0)), mode="edge")
                window = Image.fromarray(square).resize((16, 16), Image.BICUBIC)
                sr = upscale.super_resolve(model, [window])[1][0]
                sr = np.asarray(Image.fromarray(sr).resize((side * scale,) * 2, Image.BICUBIC))
                mask = upscale.feather_mask(side * scale)[: h * scale, : w * scale, None]
                blend = plain * (1 - mask) + sr[: h * scale, : w * scale] * mask
                out = np.clip(np.round(blend), 0, 255).astype(np.uint8)
            else:
                px, py = (16 - w) // 2, (16 - h) // 2
                window = np.pad(lr, ((py, 16 - h - py), (px, 16 - w - px), (0, 0)), mode=mode)
                sr = upscale.super_resolve(model, [Image.fromarray(window)])[1][0]
                upscale._paste(out, sr, -px, -py, 16, scale)
            gains[mode] = _psnr_y(out[inside], gt[inside]) - _psnr_y(plain[inside], gt[inside])
        print(f"{name} {small.size}: " + ", ".join(f"{k} {v:+.2f}" for k, v in gains.items()),
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["prepare", "jpeg", "report", "padding"])
    parser.add_argument("--out", "--data", dest="data", type=Path, default=Path("/tmp/upbench"))
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.data)
    elif args.step == "jpeg":
        prepare_jpeg(args.data)
    elif args.step == "padding":
        padding(args.data)
    else:
        report(args.data)


if __name__ == "__main__":
    main()

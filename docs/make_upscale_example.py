"""Make ``docs/upscale_example.png``, the README's example of ``ctcnet upscale --scale 8``.

The photo is scikit-image's astronaut (Eileen Collins, NASA, public domain; a test-split photo of
the offline face set, so the shipped model never trained on it), shrunk 8 times with PIL bicubic
to 64x64 pixels: her face is about 11 px wide, the size CTCNet was trained for. It goes through
the same code as ``ctcnet upscale astronaut_64.png -o OUT --scale 8`` with the shipped weights.
Because the photo was shrunk from the 512-px original, the original is the ground truth for the
x8 enlargement: the figure shows the small photo, its plain enlargement (PIL bicubic), the output
of ``ctcnet upscale`` and the original, the whole photo above and the face region below, and the
script prints the PSNR on Y inside the face box for both enlargements::

    python docs/make_upscale_example.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage import data as skdata

from ctcnet.metrics import rgb_to_y
from ctcnet.upscale import upscale_photo
from ctcnet.weights import load_model

HERE = Path(__file__).resolve().parent
SCALE = 8
PANEL = 224  # side of each panel in the figure


def psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    ya, yb = rgb_to_y(a, "basicsr").astype(float), rgb_to_y(b, "basicsr").astype(float)
    return float(10 * np.log10(255.0**2 / np.mean((ya - yb) ** 2)))


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="ctcnet_example_"))
    original = Image.fromarray(skdata.astronaut())  # 512 x 512
    small = original.resize((512 // SCALE, 512 // SCALE), Image.BICUBIC)
    small.save(work / "astronaut_64.png")
    result = upscale_photo(work / "astronaut_64.png", load_model(None), work / "out", scale=SCALE)
    if not result.ok or not result.faces:
        raise SystemExit(f"upscale failed: {result.problems or 'no face found'}")
    face = max(result.faces, key=lambda f: f.box[2])
    enlarged = Image.open(result.image).convert("RGB")
    plain = small.resize(enlarged.size, Image.BICUBIC)

    x, y, w, h = (int(round(v)) for v in face.output_box)
    inside = (slice(max(y, 0), y + h), slice(max(x, 0), x + w))
    truth = np.asarray(original)
    scores = {
        name: psnr_y(np.asarray(image)[inside], truth[inside])
        for name, image in (("plain", plain), ("ctcnet", enlarged))
    }

    # the face region: a square of 2.2 face widths around the face box, in output pixels
    side = int(2.2 * max(w, h))
    cx, cy = x + w // 2, y + h // 2
    box = (cx - side // 2, cy - side // 2, cx - side // 2 + side, cy - side // 2 + side)
    panels = [
        ("input 64x64 (nearest)", small.resize(enlarged.size, Image.NEAREST)),
        (f"plain x8 (bicubic) {scores['plain']:.1f} dB", plain),
        (f"ctcnet upscale x8 {scores['ctcnet']:.1f} dB", enlarged),
        ("original 512x512", original),
    ]
    caption = 16
    figure = Image.new("RGB", (4 * PANEL + 3 * 6, 2 * PANEL + 6 + 2 * caption), "white")
    draw = ImageDraw.Draw(figure)
    for k, (label, image) in enumerate(panels):
        left = k * (PANEL + 6)
        whole = image.resize((PANEL, PANEL), Image.LANCZOS)
        ImageDraw.Draw(whole).rectangle(
            [v * PANEL / 512 for v in box], outline=(255, 220, 0), width=2
        )
        figure.paste(whole, (left, 0))
        figure.paste(image.crop(box).resize((PANEL, PANEL), Image.NEAREST), (left, PANEL + 6))
        draw.text((left + 4, 2 * PANEL + 8), label, fill=(0, 0, 0))
    target = HERE / "upscale_example.png"
    figure.save(target, optimize=True)
    print(
        f"wrote {target} ({target.stat().st_size / 1e3:.0f} kB): face box {w}x{h} output px "
        f"({face.box[2]:.0f} px in the 64-px photo, crop {face.crop_side:.0f} px, "
        f"super-resolved: {face.super_resolved}); PSNR-Y in the face box: plain "
        f"{scores['plain']:.2f} dB, ctcnet {scores['ctcnet']:.2f} dB "
        f"({scores['ctcnet'] - scores['plain']:+.2f} dB)"
    )


if __name__ == "__main__":
    main()

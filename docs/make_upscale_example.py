"""Make ``docs/upscale_example.png``, the README's example of ``ctcnet upscale``.

The photo is scikit-image's astronaut (Eileen Collins, NASA, public domain), scaled to 256 px so
that her face is small (about 45 px wide), as in a group photo. It goes through the same code as
``ctcnet upscale astronaut.png -o OUT`` with the shipped weights; the figure shows the photo with
the aligned crop, and the comparison strip that command writes (LR 16x16 | bicubic | SR | original
crop)::

    python docs/make_upscale_example.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage import data as skdata

from ctcnet.faces import crop_matrix
from ctcnet.upscale import upscale_photo
from ctcnet.weights import load_model

HERE = Path(__file__).resolve().parent


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="ctcnet_example_"))
    photo = Image.fromarray(skdata.astronaut()).resize((256, 256), Image.BICUBIC)
    photo.save(work / "astronaut.png")
    result = upscale_photo(work / "astronaut.png", load_model(None), work / "out")
    if not result.ok:
        raise SystemExit(f"upscale failed: {result.problems}")
    face = result.faces[0]
    strip = Image.open(face.files[1]).convert("RGB")  # LR | bicubic | SR | original crop

    # the photo with the aligned crop drawn on it, at the strip's height
    matrix = crop_matrix(face.face, align=True)
    corners = np.array([[0, 0], [128, 0], [128, 128], [0, 128]], float)
    corners = (corners - matrix[:, 2]) @ np.linalg.inv(matrix[:, :2]).T
    shown = photo.copy()
    ImageDraw.Draw(shown).polygon([tuple(c) for c in corners], outline=(255, 220, 0), width=2)
    shown = shown.resize((strip.height, strip.height), Image.BICUBIC)  # the photo is square

    figure = Image.new("RGB", (shown.width + 8 + strip.width, strip.height), "white")
    figure.paste(shown, (0, 0))
    figure.paste(strip, (shown.width + 8, 0))
    target = HERE / "upscale_example.png"
    figure.save(target, optimize=True)
    print(
        f"wrote {target} ({target.stat().st_size / 1e3:.0f} kB); face crop covers "
        f"{face.crop_side:.0f} photo pixels, pasted back: {face.pasted}"
    )


if __name__ == "__main__":
    main()

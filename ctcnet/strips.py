"""Comparison strips: images side by side with a caption under each, as people compare them.

``ctcnet eval --out`` writes one per face (LR | bicubic | SR | HR) and ``ctcnet upscale`` one per
face it super-resolves; the book draws its own figures with matplotlib (:mod:`ctcnet.course`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["comparison_strip"]


def comparison_strip(
    panels: list[np.ndarray | Image.Image], captions: list[str] | None = None, size: int = 128
) -> Image.Image:
    """Side-by-side panels (each resized to ``size`` with nearest neighbour if needed) with an
    optional caption row under them."""
    images = []
    for p in panels:
        im = Image.fromarray(p) if isinstance(p, np.ndarray) else p.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.NEAREST)
        images.append(im)
    caption_h = 14 if captions else 0
    strip = Image.new("RGB", (size * len(images), size + caption_h), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for k, im in enumerate(images):
        strip.paste(im, (k * size, 0))
        if captions:
            draw.text((k * size + 3, size + 1), captions[k], fill=(0, 0, 0))
    return strip

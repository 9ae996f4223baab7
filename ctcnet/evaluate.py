"""Evaluating a model on a folder of HR faces: per-image scores, comparison images, a summary.

Each HR image goes through the reference test degradation (PIL bicubic to 1/8, back up; spec
§8/§10), the model super-resolves the up-sampled input, and PSNR/SSIM are computed on the
truncated uint8 output under the chosen protocol (:mod:`ctcnet.metrics`), together with the
scores of the bicubic input itself as the baseline.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from ._atomic import atomic_write
from .data.datasets import FaceSRDataset
from .data.degradation import to_uint8
from .metrics import PROTOCOLS, psnr, ssim
from .model import CTCNet
from .runtime import autocast

__all__ = ["evaluate", "summarize", "format_summary", "comparison_strip", "save_png_atomic"]

COLUMNS = ("name", "psnr", "ssim", "bicubic_psnr", "bicubic_ssim")


def save_png_atomic(img: Image.Image | np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Save a PNG via a temporary file in the same folder and ``os.replace``."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    with atomic_write(path) as f:
        img.save(f, format="PNG")
    return Path(path)


def _save_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    with atomic_write(path, "w", newline="") as f:
        df.to_csv(f, index=False, float_format="%.4f")


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


@torch.no_grad()
def evaluate(
    model: CTCNet,
    data: str | os.PathLike[str] | FaceSRDataset,
    protocol: str = "ctcnet",
    out_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    limit: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Per-image PSNR / SSIM of ``model`` and of bicubic on a folder of HR faces.

    Parameters
    ----------
    model : CTCNet
        The model (put into eval mode here).
    data : str, os.PathLike or FaceSRDataset
        A folder of 128x128 HR faces (others are centre-cropped and resized) or a dataset.
    protocol : {"ctcnet", "dic", "basicsr"}, default "ctcnet"
        Metric protocol (:data:`ctcnet.metrics.PROTOCOLS`).
    out_dir : str or os.PathLike, optional
        When given: ``per_image.csv``, ``sr/<name>.png`` (the model outputs) and
        ``compare/<name>.png`` (LR nearest-upscaled | bicubic | SR | HR with captions).
    batch_size : int, default 8
        Images per forward pass.
    device : str or torch.device, optional
        Default: the device of the model's parameters.
    precision : {"fp32", "bf16", "fp16"}, default "fp32"
        Autocast precision of the forward pass.
    limit : int, default 0
        Evaluate only the first ``limit`` images (0 = all).
    progress : bool, default False
        Show a tqdm bar.

    Returns
    -------
    pandas.DataFrame
        One row per image: ``name, psnr, ssim, bicubic_psnr, bicubic_ssim``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    dataset = data if isinstance(data, FaceSRDataset) else FaceSRDataset(data)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    n = len(dataset) if limit <= 0 else min(limit, len(dataset))
    out = Path(out_dir) if out_dir is not None else None
    rows = []
    for start in tqdm(range(0, n, batch_size), desc="eval", disable=not progress):
        items = [dataset[i] for i in range(start, min(n, start + batch_size))]
        x = torch.stack([it["lr_up"] for it in items])
        hr = torch.stack([it["hr"] for it in items])
        with autocast(device, precision):
            sr = model(x.to(device))
        sr = sr.float().cpu()
        scores = zip(
            psnr(sr, hr, protocol, reduction="none"),
            ssim(sr, hr, protocol, reduction="none"),
            psnr(x, hr, protocol, reduction="none"),
            ssim(x, hr, protocol, reduction="none"),
        )
        for k, (p, s, bp, bs) in enumerate(scores):
            name = items[k]["name"]
            rows.append(
                {"name": name, "psnr": p, "ssim": s, "bicubic_psnr": bp, "bicubic_ssim": bs}
            )
            if out is not None:
                stem = str(Path(name).with_suffix(".png"))
                sr8 = to_uint8(sr[k])
                save_png_atomic(sr8, out / "sr" / stem)
                panels = [to_uint8(items[k]["lr"]), to_uint8(x[k]), sr8, to_uint8(hr[k])]
                captions = ["LR (nearest)", f"bicubic {bp:.2f}", f"SR {p:.2f} dB", "HR"]
                size = panels[-1].shape[0]
                save_png_atomic(comparison_strip(panels, captions, size), out / "compare" / stem)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        _save_csv_atomic(df, out / "per_image.csv")
    return df


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean PSNR / SSIM of bicubic and of the model (rows), with the gain of the model."""
    table = pd.DataFrame(
        {
            "PSNR": [df["bicubic_psnr"].mean(), df["psnr"].mean()],
            "SSIM": [df["bicubic_ssim"].mean(), df["ssim"].mean()],
        },
        index=["bicubic", "model"],
    )
    table.loc["gain"] = table.loc["model"] - table.loc["bicubic"]
    return table


def format_summary(df: pd.DataFrame, protocol: str = "ctcnet") -> str:
    """The summary table as text, headed by the protocol and the image count."""
    table = summarize(df)
    lines = [f"{len(df)} images, protocol {protocol!r}", f"{'':10s}{'PSNR (dB)':>11s}{'SSIM':>9s}"]
    for name, row in table.iterrows():
        lines.append(
            f"{name:10s}{row['PSNR']:>+11.3f}{row['SSIM']:>+9.4f}"
            if name == "gain"
            else f"{name:10s}{row['PSNR']:>11.3f}{row['SSIM']:>9.4f}"
        )
    return "\n".join(lines)

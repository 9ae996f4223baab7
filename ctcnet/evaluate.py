"""Evaluating a model on a folder of HR faces: per-image scores, comparison images, a summary.

Each HR image goes through the reference test degradation (PIL bicubic to 1/8, back up, as the
authors' test script does), the model super-resolves the up-sampled input, and PSNR/SSIM are
computed on the truncated uint8 output under the chosen protocol (:mod:`ctcnet.metrics`),
together with the scores of the bicubic input itself as the baseline. The model's gain over
bicubic comes with a paired bootstrap confidence interval
(:func:`ctcnet.stats.paired_bootstrap_ci`).

Only numpy, torch and Pillow are needed: results are plain Python data
(:class:`EvalResult`), written as CSV with the ``csv`` module. :meth:`EvalResult.to_dataframe`
and :func:`summarize` import pandas when they are called, for notebooks.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ._atomic import atomic_write
from .data.datasets import FaceSRDataset
from .data.imageio import save_png
from .metrics import PROTOCOLS, psnr, ssim
from .model import CTCNet
from .pixels import to_uint8
from .runtime import autocast, resolve_precision
from .stats import BootstrapCI, paired_bootstrap_ci
from .strips import comparison_strip

__all__ = [
    "EvalResult",
    "evaluate",
    "summarize",
    "format_summary",
    "output_names",
]

COLUMNS = ("name", "psnr", "ssim", "bicubic_psnr", "bicubic_ssim")


def output_names(names: Sequence[str], suffix: str = ".png") -> list[str]:
    """One output file name per input name, all distinct, even on a case-insensitive disk.

    An input keeps its name with ``suffix`` (``a/face.jpg`` -> ``a/face.png``) unless another
    input would get the same name; then every input of that clash keeps its extension in the
    stem (``face.jpg`` -> ``face_jpg.png``, ``face.png`` -> ``face_png.png``), and a counter
    (``_2``, ``_3``, ...) settles anything still taken. The result depends only on ``names``.
    """
    plain = [str(PurePosixPath(n).with_suffix(suffix)) for n in names]
    clashes = Counter(p.lower() for p in plain)
    taken = {p.lower() for p in plain if clashes[p.lower()] == 1}
    out = []
    for name, p in zip(names, plain):
        if clashes[p.lower()] == 1:
            out.append(p)
            continue
        path = PurePosixPath(name)
        ext = path.suffix.lstrip(".").lower()
        base = str(path.with_name(f"{path.stem}_{ext}" if ext else path.stem))
        candidate, k = base + suffix, 2
        while candidate.lower() in taken:
            candidate, k = f"{base}_{k}{suffix}", k + 1
        taken.add(candidate.lower())
        out.append(candidate)
    return out


@dataclass
class EvalResult:
    """Per-image scores of one evaluation: a list of rows, one per image.

    Each row is ``{"name", "psnr", "ssim", "bicubic_psnr", "bicubic_ssim"}``. ``result["psnr"]``
    is that column as a numpy array (``"name"``: a list), so ``result["psnr"].mean()`` works as
    on a DataFrame.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    protocol: str = "ctcnet"

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __getitem__(self, column: str) -> np.ndarray | list[str]:
        if column not in COLUMNS:
            raise KeyError(f"no column {column!r}; the columns are {', '.join(COLUMNS)}")
        if column == "name":
            return [row["name"] for row in self.rows]
        return np.array([row[column] for row in self.rows], dtype=np.float64)

    def means(self) -> dict[str, float]:
        """The mean of every score column."""
        return {c: float(np.mean(self[c])) if self.rows else float("nan") for c in COLUMNS[1:]}

    def gains(self, n_boot: int = 10_000, ci: float = 0.95, seed: int = 0) -> dict[str, BootstrapCI]:
        """Model minus bicubic, per metric (``"psnr"``, ``"ssim"``): the mean per-image gain and
        its paired bootstrap interval (:func:`ctcnet.stats.paired_bootstrap_ci`)."""
        return {
            m: paired_bootstrap_ci(self[m], self[f"bicubic_{m}"], n_boot=n_boot, ci=ci, seed=seed)
            for m in ("psnr", "ssim")
        }

    def compare(
        self, other: EvalResult, metric: str = "psnr", n_boot: int = 10_000, ci: float = 0.95,
        seed: int = 0,
    ) -> BootstrapCI:
        """This model minus ``other`` on ``metric`` (``"psnr"`` or ``"ssim"``), image by image:
        the mean difference and its paired bootstrap interval. The two evaluations are matched
        by image name, so they must cover the same images (in any order) under one protocol."""
        if metric not in ("psnr", "ssim"):
            raise ValueError(f"metric must be 'psnr' or 'ssim', got {metric!r}")
        if self.protocol != other.protocol:
            raise ValueError(f"protocols differ: {self.protocol!r} vs {other.protocol!r}")
        mine = dict(zip(self["name"], self[metric]))
        theirs = dict(zip(other["name"], other[metric]))
        if len(mine) != len(self) or len(theirs) != len(other):
            raise ValueError("image names repeat within an evaluation; cannot pair the images")
        if mine.keys() != theirs.keys():
            only = sorted(mine.keys() ^ theirs.keys())
            raise ValueError(
                f"the evaluations cover different images ({len(only)} in only one, e.g. {only[0]})"
            )
        names = sorted(mine)
        return paired_bootstrap_ci(
            [mine[n] for n in names], [theirs[n] for n in names], n_boot=n_boot, ci=ci, seed=seed
        )

    def to_dataframe(self):
        """The rows as a pandas DataFrame (needs the ``analysis`` extra)."""
        import pandas as pd  # optional: only notebooks ask for DataFrames

        return pd.DataFrame(self.rows, columns=list(COLUMNS))

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the rows as CSV (scores with 4 decimals), atomically."""
        with atomic_write(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for row in self.rows:
                writer.writerow([row["name"], *(f"{row[c]:.4f}" for c in COLUMNS[1:])])
        return Path(path)


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
) -> EvalResult:
    """Per-image PSNR / SSIM of ``model`` and of bicubic on a folder of HR faces.

    Parameters
    ----------
    model : CTCNet
        The model (put into eval mode here); a model prepared by
        :func:`ctcnet.optimize_for_inference` works too.
    data : str, os.PathLike or FaceSRDataset
        A folder of 128x128 HR faces (others are centre-cropped and resized) or a dataset.
    protocol : {"ctcnet", "dic", "basicsr"}, default "ctcnet"
        Metric protocol (:data:`ctcnet.metrics.PROTOCOLS`).
    out_dir : str or os.PathLike, optional
        When given: ``per_image.csv``, ``sr/<name>.png`` (the model outputs) and
        ``compare/<name>.png`` (LR nearest-upscaled | bicubic | SR | HR with captions). Names
        come from :func:`output_names`, so ``face.jpg`` and ``face.png`` never overwrite each
        other.
    batch_size : int, default 8
        Images per forward pass.
    device : str or torch.device, optional
        Default: the device of the model's parameters.
    precision : {"fp32", "bf16", "fp16", "auto"}, default "fp32"
        Autocast precision of the forward pass (``"auto"``: bf16 where the hardware is fast
        at it). The metrics are always computed on the uint8
        images.
    limit : int, default 0
        Evaluate only the first ``limit`` images (0 = all).
    progress : bool, default False
        Show a tqdm bar.

    Returns
    -------
    EvalResult
        One row per image: ``name, psnr, ssim, bicubic_psnr, bicubic_ssim``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    dataset = data if isinstance(data, FaceSRDataset) else FaceSRDataset(data)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    precision = resolve_precision(precision, device)[0]  # "auto" -> what this device runs fast
    model.eval()
    n = len(dataset) if limit <= 0 else min(limit, len(dataset))
    out = Path(out_dir) if out_dir is not None else None
    files = output_names(dataset.names[:n]) if out is not None else []
    result = EvalResult(protocol=protocol)
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
            result.rows.append(
                {"name": items[k]["name"], "psnr": p, "ssim": s, "bicubic_psnr": bp,
                 "bicubic_ssim": bs}
            )
            if out is not None:
                file = files[start + k]
                sr8 = to_uint8(sr[k])
                save_png(sr8, out / "sr" / file)
                panels = [to_uint8(items[k]["lr"]), to_uint8(x[k]), sr8, to_uint8(hr[k])]
                captions = ["LR (nearest)", f"bicubic {bp:.2f}", f"SR {p:.2f} dB", "HR"]
                size = panels[-1].shape[0]
                save_png(comparison_strip(panels, captions, size), out / "compare" / file)
    if out is not None:
        result.write_csv(out / "per_image.csv")
    return result


def summarize(result):
    """Mean PSNR / SSIM of bicubic and of the model (rows), with the gain of the model, as a
    pandas DataFrame (needs the ``analysis`` extra; :func:`format_summary` does not).
    ``result`` is an :class:`EvalResult` or its :meth:`~EvalResult.to_dataframe`."""
    import pandas as pd  # optional: only notebooks ask for DataFrames

    means = {c: float(np.mean(result[c])) for c in COLUMNS[1:]}
    table = pd.DataFrame(
        {
            "PSNR": [means["bicubic_psnr"], means["psnr"]],
            "SSIM": [means["bicubic_ssim"], means["ssim"]],
        },
        index=["bicubic", "model"],
    )
    table.loc["gain"] = table.loc["model"] - table.loc["bicubic"]
    return table


def format_summary(
    result: EvalResult, protocol: str | None = None, ci: float = 0.95, seed: int = 0
) -> str:
    """The summary as text: the protocol and image count, mean PSNR/SSIM of bicubic and of the
    model, and the model's gain with its paired bootstrap confidence interval at level ``ci``
    (when there are at least two images)."""
    protocol = protocol or result.protocol
    means = result.means()
    lines = [
        f"{len(result)} images, protocol {protocol!r}",
        f"{'':10s}{'PSNR (dB)':>11s}{'SSIM':>9s}",
        f"{'bicubic':10s}{means['bicubic_psnr']:>11.3f}{means['bicubic_ssim']:>9.4f}",
        f"{'model':10s}{means['psnr']:>11.3f}{means['ssim']:>9.4f}",
    ]
    try:
        gains = result.gains(ci=ci, seed=seed)
    except ValueError as exc:  # one image, or an inf PSNR: no interval, say why
        gain_p = means["psnr"] - means["bicubic_psnr"]
        gain_s = means["ssim"] - means["bicubic_ssim"]
        lines.append(f"{'gain':10s}{gain_p:>+11.3f}{gain_s:>+9.4f}")
        lines.append(f"(no confidence interval: {exc})")
        return "\n".join(lines)
    p, s = gains["psnr"], gains["ssim"]
    lines.append(f"{'gain':10s}{p.mean:>+11.3f}{s.mean:>+9.4f}")
    level = f"{100 * ci:g}% CI"
    lines.append(f"{level:10s}[{p.low:+.3f}, {p.high:+.3f}]  [{s.low:+.4f}, {s.high:+.4f}]")
    lines.append(f"(gain = model - bicubic; CI: paired bootstrap over the {len(result)} images)")
    return "\n".join(lines)

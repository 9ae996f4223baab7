"""Evaluating a model on a folder of HR faces: per-image scores, comparison images, a summary.

Each HR image goes through the reference test degradation (PIL bicubic to 1/8, back up, as the
authors' test script does), the model super-resolves the up-sampled input, and the chosen metrics
(:data:`ctcnet.metrics.METRICS`: PSNR and SSIM by default, VIF and LPIPS on request) are computed
on the truncated uint8 output under the chosen protocol (:mod:`ctcnet.metrics`), together with
the scores of the bicubic input itself as the baseline. The model's gain over bicubic comes with
a paired bootstrap confidence interval (:func:`ctcnet.stats.paired_bootstrap_ci`).

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
from PIL import Image
from tqdm.auto import tqdm

from ._atomic import atomic_write
from .data.datasets import FaceSRDataset
from .data.imageio import save_png
from .metrics import (
    DEFAULT_METRICS,
    METRICS,
    PROTOCOLS,
    lpips,
    parse_metrics,
    psnr,
    ssim,
    vif,
)
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
    "resize_note",
]


def columns_for(metrics: Sequence[str]) -> tuple[str, ...]:
    """The columns of an evaluation of ``metrics``: name, each metric, each bicubic baseline."""
    return ("name", *metrics, *(f"bicubic_{m}" for m in metrics))


#: The columns of the default evaluation (PSNR and SSIM).
COLUMNS = columns_for(DEFAULT_METRICS)


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


def resize_note(
    files: Sequence[str | os.PathLike[str]], size: int = 128, names: Sequence[str] | None = None
) -> str | None:
    """One line telling how many of ``files`` are not ``size`` x ``size`` and what evaluation does
    to them (:func:`~ctcnet.data.imageio.square_resize`: the largest centred square, resized with
    PIL bicubic), or ``None`` when all already are. Only the image headers are read."""
    odd, cropped, example = 0, 0, None
    for k, path in enumerate(files):
        try:
            with Image.open(path) as im:
                width, height = im.size
                if im.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF rotation by 90 degrees
                    width, height = height, width
        except OSError:
            continue  # unreadable files are reported by FaceSRDataset.validate
        if (width, height) == (size, size):
            continue
        odd += 1
        cropped += width != height
        if example is None:
            example = f"{names[k] if names is not None else Path(path).name}, {width}x{height}"
    if not odd:
        return None
    crop = f"centre-cropped to a square ({cropped} of them) and " if cropped else ""
    return (
        f"note: {odd} of {len(files)} images are not {size}x{size} (e.g. {example}): they are "
        f"{crop}resized to {size}x{size} with PIL bicubic before the degradation"
    )


@dataclass
class EvalResult:
    """Per-image scores of one evaluation: a list of rows, one per image.

    Each row has a ``"name"``, one score per metric of ``metrics`` and the bicubic baseline's
    (``"bicubic_psnr"``, ...); by default ``{"name", "psnr", "ssim", "bicubic_psnr",
    "bicubic_ssim"}``. ``result["psnr"]`` is that column as a numpy array (``"name"``: a list),
    so ``result["psnr"].mean()`` works as on a DataFrame.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    protocol: str = "ctcnet"
    metrics: tuple[str, ...] = DEFAULT_METRICS

    def __post_init__(self) -> None:
        self.metrics = parse_metrics(self.metrics)

    @property
    def columns(self) -> tuple[str, ...]:
        """``name``, the metrics, then their bicubic baselines."""
        return columns_for(self.metrics)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __getitem__(self, column: str) -> np.ndarray | list[str]:
        if column not in self.columns:
            raise KeyError(f"no column {column!r}; the columns are {', '.join(self.columns)}")
        if column == "name":
            return [row["name"] for row in self.rows]
        return np.array([row[column] for row in self.rows], dtype=np.float64)

    def means(self) -> dict[str, float]:
        """The mean of every score column."""
        return {
            c: float(np.mean(self[c])) if self.rows else float("nan") for c in self.columns[1:]
        }

    def gains(self, n_boot: int = 10_000, ci: float = 0.95, seed: int = 0) -> dict[str, BootstrapCI]:
        """Model minus bicubic, per metric (``"psnr"``, ...): the mean per-image difference and
        its paired bootstrap interval (:func:`ctcnet.stats.paired_bootstrap_ci`). For LPIPS,
        where lower is better, an improvement is a negative difference."""
        return {
            m: paired_bootstrap_ci(self[m], self[f"bicubic_{m}"], n_boot=n_boot, ci=ci, seed=seed)
            for m in self.metrics
        }

    def compare(
        self, other: EvalResult, metric: str = "psnr", n_boot: int = 10_000, ci: float = 0.95,
        seed: int = 0,
    ) -> BootstrapCI:
        """This model minus ``other`` on ``metric`` (one both evaluations computed), image by
        image: the mean difference and its paired bootstrap interval. The two evaluations are
        matched by image name, so they must cover the same images (in any order) under one
        protocol."""
        common = [m for m in self.metrics if m in other.metrics]
        if metric not in common:
            raise ValueError(
                f"metric must be one both evaluations computed ({', '.join(common)}), "
                f"got {metric!r}"
            )
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

        return pd.DataFrame(self.rows, columns=list(self.columns))

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the rows as CSV (scores with 4 decimals), atomically."""
        with atomic_write(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(self.columns)
            for row in self.rows:
                writer.writerow([row["name"], *(f"{row[c]:.4f}" for c in self.columns[1:])])
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
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    lpips_network: torch.nn.Module | None = None,
) -> EvalResult:
    """Per-image scores (PSNR / SSIM by default) of ``model`` and of bicubic on a folder of HR
    faces.

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
    metrics : str or sequence of str, default ("psnr", "ssim")
        Which of :data:`ctcnet.metrics.METRICS` to compute (``"psnr,ssim,vif,lpips"`` or
        ``"all"`` work too). PSNR, SSIM and VIF use the protocol's luma and border crop; LPIPS
        the whole RGB image.
    lpips_network : ctcnet.lpips.LPIPS, optional
        The LPIPS network; default :func:`ctcnet.lpips.load_lpips`, which downloads the weights
        on first use (:mod:`ctcnet.lpips`).

    Returns
    -------
    EvalResult
        One row per image: ``name``, each metric, each metric of bicubic
        (``name, psnr, ssim, bicubic_psnr, bicubic_ssim`` by default).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    metrics = parse_metrics(metrics)
    if "lpips" in metrics and lpips_network is None:
        from .lpips import load_lpips  # fetched before any image is scored

        lpips_network = load_lpips()
    dataset = data if isinstance(data, FaceSRDataset) else FaceSRDataset(data)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    precision = resolve_precision(precision, device)[0]  # "auto" -> what this device runs fast
    model.eval()
    n = len(dataset) if limit <= 0 else min(limit, len(dataset))
    out = Path(out_dir) if out_dir is not None else None
    files = output_names(dataset.names[:n]) if out is not None else []
    result = EvalResult(protocol=protocol, metrics=metrics)
    score = {
        "psnr": lambda a, b: psnr(a, b, protocol, reduction="none"),
        "ssim": lambda a, b: ssim(a, b, protocol, reduction="none"),
        "vif": lambda a, b: vif(a, b, protocol, reduction="none"),
        "lpips": lambda a, b: lpips(a, b, reduction="none", network=lpips_network, device=device),
    }
    for start in tqdm(range(0, n, batch_size), desc="eval", disable=not progress):
        items = [dataset[i] for i in range(start, min(n, start + batch_size))]
        x = torch.stack([it["lr_up"] for it in items])
        hr = torch.stack([it["hr"] for it in items])
        with autocast(device, precision):
            sr = model(x.to(device))
        sr = sr.float().cpu()
        sr8, x8, hr8 = to_uint8(sr), to_uint8(x), to_uint8(hr)  # every metric sees these pixels
        columns = {m: score[m](sr8, hr8) for m in metrics}
        columns.update({f"bicubic_{m}": score[m](x8, hr8) for m in metrics})
        for k, item in enumerate(items):
            row = {"name": item["name"], **{c: v[k] for c, v in columns.items()}}
            result.rows.append(row)
            if out is not None:
                file = files[start + k]
                save_png(sr8[k], out / "sr" / file)
                panels = [to_uint8(item["lr"]), x8[k], sr8[k], hr8[k]]
                m = metrics[0]  # the strip shows the first metric asked for
                fmt = ".2f" if m == "psnr" else ".3f"
                unit = " dB" if m == "psnr" else f" {m.upper()}"
                captions = ["LR (nearest)", f"bicubic {row[f'bicubic_{m}']:{fmt}}",
                            f"SR {row[m]:{fmt}}{unit}", "HR"]
                size = panels[-1].shape[0]
                save_png(comparison_strip(panels, captions, size), out / "compare" / file)
    if out is not None:
        result.write_csv(out / "per_image.csv")
    return result


def _metrics_of(result) -> tuple[str, ...]:
    if isinstance(result, EvalResult):
        return result.metrics
    return tuple(m for m in METRICS if m in result.columns)  # a DataFrame of to_dataframe()


def summarize(result):
    """Mean scores of bicubic and of the model (rows ``bicubic``, ``model``), with the model's
    gain (row ``gain`` = model - bicubic), one column per metric (``PSNR``, ``SSIM``, ``VIF``,
    ``LPIPS``), as a pandas DataFrame (needs the ``analysis`` extra; :func:`format_summary`
    does not). ``result`` is an :class:`EvalResult` or its :meth:`~EvalResult.to_dataframe`."""
    import pandas as pd  # optional: only notebooks ask for DataFrames

    table = pd.DataFrame(
        {
            m.upper(): [float(np.mean(result[f"bicubic_{m}"])), float(np.mean(result[m]))]
            for m in _metrics_of(result)
        },
        index=["bicubic", "model"],
    )
    table.loc["gain"] = table.loc["model"] - table.loc["bicubic"]
    return table


def format_summary(
    result: EvalResult, protocol: str | None = None, ci: float = 0.95, seed: int = 0
) -> str:
    """The summary as text: the protocol and image count, then one line per metric with the
    mean of bicubic and of the model, the model's gain (model - bicubic) and its paired
    bootstrap confidence interval at level ``ci`` (when there are at least two images and the
    scores are finite; otherwise a note says why there is none)."""
    protocol = protocol or result.protocol
    means = result.means()
    level = f"{100 * ci:g}% CI of the gain"
    lines = [
        f"{len(result)} images, protocol {protocol!r}",
        f"{'':11s}{'bicubic':>10s}{'model':>10s}{'gain':>10s}  {level}",
    ]
    notes: dict[str, list[str]] = {}  # reason -> metrics without an interval
    for m in result.metrics:
        info = METRICS[m]
        d = info.decimals
        base, mine = means[f"bicubic_{m}"], means[m]
        interval = ""
        try:
            gain = paired_bootstrap_ci(result[m], result[f"bicubic_{m}"], ci=ci, seed=seed)
            diff = gain.mean
            interval = f"  [{gain.low:+.{d}f}, {gain.high:+.{d}f}]"
        except ValueError as exc:  # one image, an inf PSNR, a NaN VIF: no interval, say why
            diff = mine - base
            notes.setdefault(str(exc), []).append(info.label)
        lines.append(f"{info.label:11s}{base:>10.{d}f}{mine:>10.{d}f}{diff:>+10.{d}f}{interval}")
    lines.extend(f"(no confidence interval for {', '.join(labels)}: {reason})"
                 for reason, labels in notes.items())
    lower = [METRICS[m].label for m in result.metrics if not METRICS[m].higher_is_better]
    tail = f"; {', '.join(lower)}: lower is better, a negative gain is an improvement" if lower else ""
    lines.append(
        f"(gain = model - bicubic; CI: paired bootstrap over the {len(result)} images{tail})"
    )
    return "\n".join(lines)

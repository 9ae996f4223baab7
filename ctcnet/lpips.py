"""LPIPS, the learned perceptual distance of Zhang et al. (CVPR 2018), AlexNet variant, v0.1.

"The Unreasonable Effectiveness of Deep Features as a Perceptual Metric" compares two images by
the features an ImageNet classifier computes from them: at each of five layers the features are
unit-normalised along the channels, their squared difference is weighted per channel by a
learned linear "head" (fitted to human judgements of which of two distortions looks closer to a
reference), averaged over the image and the layers' results are added. 0 means identical; the
face-SR literature reports it next to PSNR/SSIM because it follows perceived blur better.

The network here is written from the paper's description, with the pretrained weights loaded
from the files their authors distribute:

* **backbone**: torchvision's ImageNet AlexNet (``alexnet-owt-7be5be79.pth``, 233 MiB, from
  :data:`ALEXNET_URL`, sha256 :data:`ALEXNET_SHA256`); only its five convolutions are used;
* **linear heads, v0.1**: ``lpips/weights/v0.1/alex.pth`` (6 kB) inside the ``lpips`` 0.1.4
  wheel on PyPI (:data:`LPIPS_WHEEL_URL`, sha256 :data:`LPIPS_WHEEL_SHA256`; the member's own
  sha256 is :data:`LPIPS_HEADS_SHA256`, the same file in lpips 0.1.3, which the CTCNet authors
  list). The wheel is read as a zip archive: it is never installed and none of its code runs.

Both are fetched on first use into :func:`lpips_cache_dir` (a copy of the backbone that
torchvision or the ``lpips`` package already put in torch's hub cache is used as it is), their
digests checked, and loaded with ``torch.load(weights_only=True)``. Offline, the error says in
one line what to fetch and where to put it.

Inputs are RGB in [-1, 1] (``uint8 / 127.5 - 1``, as the ``lpips`` package's ``im2tensor``);
:func:`ctcnet.metrics.lpips` scores uint8 images the way PSNR/SSIM are scored.

What was checked, and how (``benchmarks/check_metrics_reference.py``, ``tests/test_lpips.py``):
the distance equals the ``lpips`` package's own ``LPIPS(net='alex', version='0.1')`` to float
precision **with the real v0.1 heads and one and the same random stand-in backbone** (the
ImageNet AlexNet could not be downloaded where this was written). The real backbone file's
digest is the one torchvision's file name abbreviates (``7be5be79``) and several independent
projects pin; that loading it gives the published LPIPS values was not checked there.
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._atomic import atomic_write
from .data.fetch import (
    ArchiveReader,
    download_url,
    ensure_writable_folder,
    verify_bytes,
    verify_file,
)
from .errors import ChecksumError, UnavailableError, WeightsUnavailableError

__all__ = [
    "ALEXNET_SHA256",
    "ALEXNET_URL",
    "LPIPS",
    "LPIPSWeights",
    "LPIPS_HEADS_SHA256",
    "LPIPS_WHEEL_SHA256",
    "LPIPS_WHEEL_URL",
    "fetch_lpips_heads",
    "fetch_lpips_weights",
    "load_lpips",
    "lpips_cache_dir",
    "standin_backbone",
    "standin_heads",
]

ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_SHA256 = "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02"

LPIPS_WHEEL_FILE = "lpips-0.1.4-py3-none-any.whl"
LPIPS_WHEEL_URL = (
    "https://files.pythonhosted.org/packages/9b/13/"
    "1df50c7925d9d2746702719f40e864f51ed66f307b20ad32392f1ad2bb87/" + LPIPS_WHEEL_FILE
)
LPIPS_WHEEL_SHA256 = "fd537af5828b69d2e6ffc0a397bd506dbc28ca183543617690844c08e102ec5e"
LPIPS_HEADS_MEMBER = "lpips/weights/v0.1/alex.pth"
LPIPS_HEADS_FILE = "lpips_v0.1_alex.pth"
LPIPS_HEADS_SHA256 = "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"

# AlexNet's convolutions as torchvision builds them: (in, out, kernel, stride, padding, whether a
# 3x3/2 max-pool comes first) and their index in torchvision's ``features`` Sequential.
_CONVS = (
    (3, 64, 11, 4, 2, False),
    (64, 192, 5, 1, 2, True),
    (192, 384, 3, 1, 1, True),
    (384, 256, 3, 1, 1, False),
    (256, 256, 3, 1, 1, False),
)
_TORCHVISION_INDEX = (0, 3, 6, 8, 10)
#: Smallest image side the five layers accept (conv1 and two 3x3/2 max-pools).
LPIPS_MIN_SIZE = 31


def lpips_cache_dir() -> Path:
    """Where the LPIPS weights go: ``$CTCNET_LPIPS_DIR`` or ``~/.cache/ctcnet/lpips``."""
    env = os.environ.get("CTCNET_LPIPS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ctcnet" / "lpips"


@dataclass(frozen=True)
class LPIPSWeights:
    """The two weight files LPIPS needs."""

    backbone: Path  # torchvision AlexNet state dict (features.* used)
    heads: Path  # lin0..lin4 of the v0.1 AlexNet heads


def _torch_hub_copy() -> Path | None:
    """torchvision's own cached AlexNet, if torchvision or lpips downloaded it before."""
    try:
        path = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
    except Exception:  # pragma: no cover - get_dir only reads environment variables
        return None
    return path if path.is_file() else None


def _backbone_hint(folder: Path) -> str:
    return (
        f"LPIPS needs torchvision's ImageNet AlexNet: fetch {ALEXNET_URL} (sha256 "
        f"{ALEXNET_SHA256[:16]}...) into {folder}/ where there is internet, or leave lpips out "
        "of --metrics"
    )


def _heads_hint(heads: Path) -> str:
    return (
        f"LPIPS needs its v0.1 heads: fetch {LPIPS_WHEEL_URL} (sha256 {LPIPS_WHEEL_SHA256[:16]}"
        f"...) and put its member {LPIPS_HEADS_MEMBER} at {heads}, or leave lpips out of --metrics"
    )


def fetch_lpips_heads(
    folder: str | os.PathLike[str] | None = None, *, progress: bool = True
) -> Path:
    """The v0.1 AlexNet heads file, taken out of the ``lpips`` wheel on first use (the wheel's
    and the member's sha256 are checked; the wheel is read as a zip, never installed)."""
    folder = Path(folder).expanduser() if folder is not None else lpips_cache_dir()
    heads = folder / LPIPS_HEADS_FILE
    if heads.is_file():
        return heads
    ensure_writable_folder(folder, "LPIPS cache folder")
    with tempfile.TemporaryDirectory(dir=folder, prefix=".wheel-") as tmp:
        try:
            wheel = download_url(
                LPIPS_WHEEL_URL, Path(tmp) / LPIPS_WHEEL_FILE, LPIPS_WHEEL_SHA256,
                progress=progress, expect_binary=True, hint=_heads_hint(heads),
            )
        except UnavailableError as exc:
            raise WeightsUnavailableError(str(exc)) from None
        with ArchiveReader(wheel) as archive:  # a zip read as data: nothing of it is run
            data = verify_bytes(
                archive.read(LPIPS_HEADS_MEMBER), LPIPS_HEADS_SHA256,
                what=archive.label(LPIPS_HEADS_MEMBER),
            )
    with atomic_write(heads, "wb") as handle:
        handle.write(data)
    return heads


def fetch_lpips_weights(
    folder: str | os.PathLike[str] | None = None, *, download: bool = True, progress: bool = True
) -> LPIPSWeights:
    """Find (or download and verify) the AlexNet backbone and the v0.1 heads.

    Parameters
    ----------
    folder : str or os.PathLike, optional
        Cache folder (default :func:`lpips_cache_dir`).
    download : bool, default True
        Download what is missing; with False a missing file is an error.
    progress : bool, default True
        Show download progress bars.

    Returns
    -------
    LPIPSWeights
        Paths of the backbone (the cache's copy, else torch hub's) and of the heads.

    Raises
    ------
    WeightsUnavailableError
        One line saying which file to fetch from where, and into which folder.
    ChecksumError
        A downloaded file had another digest (it is removed).
    """
    folder = Path(folder).expanduser() if folder is not None else lpips_cache_dir()
    backbone = folder / ALEXNET_FILE
    if not backbone.is_file():
        backbone = _torch_hub_copy() or backbone
    heads = folder / LPIPS_HEADS_FILE
    if not download:
        for path, hint in ((backbone, _backbone_hint(folder)), (heads, _heads_hint(heads))):
            if not path.is_file():
                raise WeightsUnavailableError(f"LPIPS weights not found: {path}; {hint}")
    heads = fetch_lpips_heads(folder, progress=progress)
    if not backbone.is_file():
        try:
            download_url(
                ALEXNET_URL, backbone, ALEXNET_SHA256, progress=progress, expect_binary=True,
                hint=_backbone_hint(folder),
            )
        except UnavailableError as exc:
            raise WeightsUnavailableError(str(exc)) from None
    return LPIPSWeights(backbone, heads)


def _load_state(path: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsUnavailableError(f"{what} not found: {path}") from None
    except Exception as exc:  # unpickling refused, truncated zip, not a torch file at all
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} is not a readable {what} ({first})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a {what}: expected a state dict of tensors")
    return state


class LPIPS(nn.Module):
    """LPIPS distance with an AlexNet backbone and linear heads (Zhang et al. 2018, Fig. 3).

    ``forward(x, y)``: ``x``, ``y`` of shape ``(N, 3, H, W)``, RGB in [-1, 1], ``H, W >=``
    :data:`LPIPS_MIN_SIZE` → distances ``(N,)`` (0 for identical images).

    Per layer ``l`` (the five ReLU outputs of AlexNet, 64, 192, 384, 256, 256 channels):
    ``d_l = mean_hw( sum_c w_lc (x̂_lc − ŷ_lc)² )`` where ``x̂`` is the feature divided by its
    channel-wise L2 norm; the distance is ``sum_l d_l``. The inputs are first shifted and scaled
    from [-1, 1] to ImageNet statistics. Build it with :meth:`from_files` or :func:`load_lpips`;
    the bare constructor leaves the weights at PyTorch's initialisation.
    """

    CHANNELS = tuple(c[1] for c in _CONVS)

    def __init__(self) -> None:
        super().__init__()
        # ImageNet mean/std mapped to [-1, 1]: shift = 2·mean − 1, scale = 2·std
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.convs = nn.ModuleList(
            nn.Conv2d(cin, cout, k, stride=s, padding=p) for cin, cout, k, s, p, _ in _CONVS
        )
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.CHANNELS)
        self.requires_grad_(False)
        self.eval()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five unit-normalised ReLU feature maps of ``x`` (RGB in [-1, 1])."""
        h = (x - self.shift) / self.scale
        out = []
        for conv, (*_, pool_first) in zip(self.convs, _CONVS):
            if pool_first:
                h = nn.functional.max_pool2d(h, kernel_size=3, stride=2)
            h = torch.relu(conv(h))
            norm = torch.sqrt(torch.sum(h * h, dim=1, keepdim=True))
            out.append(h / (norm + 1e-10))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"LPIPS compares two (N, 3, H, W) batches of one shape, got {tuple(x.shape)} "
                f"and {tuple(y.shape)}"
            )
        if min(x.shape[-2:]) < LPIPS_MIN_SIZE:
            raise ValueError(
                f"LPIPS needs images of at least {LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE}, got "
                f"{x.shape[-2]}x{x.shape[-1]}"
            )
        total = x.new_zeros(x.shape[0])
        for head, fx, fy in zip(self.heads, self.features(x), self.features(y)):
            total = total + head((fx - fy) ** 2).mean(dim=(1, 2, 3))
        return total

    # ----------------------------------------------------------------------------- loading
    def load_backbone(self, state: dict[str, torch.Tensor], source: str = "backbone") -> None:
        """Copy the convolutions of a torchvision AlexNet state dict (``features.N.*``)."""
        for conv, index in zip(self.convs, _TORCHVISION_INDEX):
            for name in ("weight", "bias"):
                key = f"features.{index}.{name}"
                if key not in state:
                    raise ValueError(
                        f"{source} is not torchvision's AlexNet state dict (no {key})"
                    )
                target = getattr(conv, name)
                if state[key].shape != target.shape:
                    raise ValueError(
                        f"{source}: {key} has shape {tuple(state[key].shape)}, AlexNet's is "
                        f"{tuple(target.shape)}"
                    )
                target.copy_(state[key])

    def load_heads(self, state: dict[str, torch.Tensor], source: str = "heads") -> None:
        """Copy the linear heads from the ``lpips`` package's file (``linK.model.1.weight``)."""
        for k, head in enumerate(self.heads):
            key = f"lin{k}.model.1.weight"
            if key not in state:
                raise ValueError(f"{source} is not an LPIPS AlexNet heads file (no {key})")
            if state[key].shape != head.weight.shape:
                raise ValueError(
                    f"{source}: {key} has shape {tuple(state[key].shape)}, expected "
                    f"{tuple(head.weight.shape)} (heads of another backbone?)"
                )
            head.weight.copy_(state[key])

    @classmethod
    def from_files(
        cls,
        backbone: str | os.PathLike[str],
        heads: str | os.PathLike[str],
        *,
        verify: bool = True,
    ) -> LPIPS:
        """Build from a torchvision AlexNet file and an LPIPS heads file.

        With ``verify`` (default) both files must have the published sha256
        (:data:`ALEXNET_SHA256`, :data:`LPIPS_HEADS_SHA256`); ``verify=False`` accepts any files
        of the right layout, e.g. :func:`standin_backbone` in tests.
        """
        backbone, heads = Path(backbone), Path(heads)
        for path, what in ((backbone, "LPIPS backbone"), (heads, "LPIPS heads")):
            if not path.is_file():
                raise WeightsUnavailableError(f"{what} not found: {path}")
        if verify:
            for path, digest in ((backbone, ALEXNET_SHA256), (heads, LPIPS_HEADS_SHA256)):
                try:
                    verify_file(path, digest)
                except ChecksumError as exc:
                    raise ChecksumError(f"{exc}; delete it and fetch it again") from None
        model = cls()
        model.load_backbone(_load_state(backbone, "AlexNet state dict"), str(backbone))
        model.load_heads(_load_state(heads, "LPIPS heads file"), str(heads))
        return model


@functools.lru_cache(maxsize=2)
def _from_files_cached(backbone: str, heads: str) -> LPIPS:
    return LPIPS.from_files(backbone, heads)


def load_lpips(
    folder: str | os.PathLike[str] | None = None, *, download: bool = True, progress: bool = True
) -> LPIPS:
    """The pretrained LPIPS (AlexNet, v0.1): its weights found or fetched by
    :func:`fetch_lpips_weights`, verified, and kept in memory for the next call."""
    weights = fetch_lpips_weights(folder, download=download, progress=progress)
    return _from_files_cached(str(weights.backbone), str(weights.heads))


def standin_backbone(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random AlexNet convolutions in torchvision's layout (``features.N.weight/bias``).

    A stand-in for the ImageNet backbone where it cannot be downloaded: the LPIPS *computation*
    can be tested with it (against another implementation given the same weights), but its
    distances mean nothing perceptually. Drawn with numpy's PCG64 (He-normal weights, small
    biases), so every numpy version and machine makes the same tensors.
    """
    rng = np.random.default_rng(seed)
    state = {}
    for (cin, cout, k, *_), index in zip(_CONVS, _TORCHVISION_INDEX):
        std = np.sqrt(2.0 / (cin * k * k))
        weight = rng.standard_normal((cout, cin, k, k)) * std
        state[f"features.{index}.weight"] = torch.from_numpy(weight.astype(np.float32))
        state[f"features.{index}.bias"] = torch.from_numpy(
            (rng.standard_normal(cout) * 0.01).astype(np.float32)
        )
    return state


def standin_heads(seed: int = 1) -> dict[str, torch.Tensor]:
    """Random non-negative linear heads in the ``lpips`` package's layout
    (``linK.model.1.weight``), drawn with numpy's PCG64: with :func:`standin_backbone`, a fully
    offline LPIPS whose computation can be compared with another implementation."""
    rng = np.random.default_rng(seed)
    return {
        f"lin{k}.model.1.weight": torch.from_numpy(
            np.abs(rng.standard_normal((1, c, 1, 1)) * 0.1).astype(np.float32)
        )
        for k, c in enumerate(LPIPS.CHANNELS)
    }

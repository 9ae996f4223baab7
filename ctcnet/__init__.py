"""CTCNet for x8 face super-resolution: a faithful, configurable re-implementation.

Gao et al., "CTCNet: A CNN-Transformer Cooperation Network for Face Image Super-Resolution",
IEEE Transactions on Image Processing, 2023 (arXiv:2204.08696).

Quick start::

    import ctcnet
    model = ctcnet.load_model()                              # the shipped reduced weights
    model = ctcnet.load_model("official")                    # the authors' (ctcnet weights official)
    model = ctcnet.build_model("reduced")                    # untrained; or "official", "tiny"
    fast = ctcnet.optimize_for_inference(model, precision="auto")  # bf16 where native
"""

from .errors import CheckpointError, CTCNetError
from .model import PRESETS, CTCNet, CTCNetConfig, build_model
from .runtime import (
    autocast,
    grad_scaler_for,
    optimize_for_inference,
    optimize_for_training,
    pick_device,
)
from .weights import export_official_state_dict, load_model, load_official_checkpoint

__version__ = "0.1.0"

__all__ = [
    "CTCNet",
    "CTCNetConfig",
    "PRESETS",
    "build_model",
    "load_model",
    "CTCNetError",
    "CheckpointError",
    "load_official_checkpoint",
    "export_official_state_dict",
    "optimize_for_inference",
    "optimize_for_training",
    "grad_scaler_for",
    "autocast",
    "pick_device",
    "__version__",
]

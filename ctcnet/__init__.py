"""CTCNet for x8 face super-resolution: a faithful, configurable re-implementation.

Gao et al., "CTCNet: A CNN-Transformer Cooperation Network for Face Image Super-Resolution",
IEEE Transactions on Image Processing, 2023 (arXiv:2204.08696).

Quick start::

    import ctcnet
    model = ctcnet.build_model("reduced")                    # or "official", "tiny"
    model = ctcnet.load_official_checkpoint("best.pth")     # the authors' weights
    fast = ctcnet.optimize_for_inference(model, precision="auto")  # bf16 where native
"""

from .checkpoint import CheckpointError
from .model import PRESETS, CTCNet, CTCNetConfig, build_model
from .official import export_official_state_dict, load_official_checkpoint
from .runtime import (
    attention_maps,
    autocast,
    grad_scaler_for,
    optimize_for_inference,
    optimize_for_training,
    pick_device,
)

__version__ = "0.1.0"

__all__ = [
    "CTCNet",
    "CTCNetConfig",
    "PRESETS",
    "build_model",
    "CheckpointError",
    "load_official_checkpoint",
    "export_official_state_dict",
    "optimize_for_inference",
    "optimize_for_training",
    "grad_scaler_for",
    "attention_maps",
    "autocast",
    "pick_device",
    "__version__",
]

"""Weights: the files a CTCNet is loaded from, and the shipped ones (``*.pt`` beside this file).

``checkpoint`` (our format: save sealed with a digest, read, strip for release) ←
``official`` (the one map between the authors' ``state_dict`` keys and ours) ← ``download``
(the authors' released weights, fetched into the cache) ← ``load`` (:func:`resolve_weights`:
which file ``official``, ``reduced`` or a path means; :func:`load_model`). Nothing here imports
upwards: a module only imports those to its left.
"""

from .checkpoint import (
    FORMAT,
    VERSION,
    atomic_torch_save,
    check_finite,
    checkpoint_digest,
    describe_key_problems,
    get_rng_state,
    model_from_checkpoint,
    preset_of,
    read_checkpoint,
    save_checkpoint,
    set_rng_state,
    state_dict_shapes,
    strip_for_release,
)
from .download import (
    OFFICIAL_WEIGHTS_FOLDER,
    OfficialWeights,
    default_weights_dir,
    find_checkpoints,
    find_official_checkpoint,
    official_weights,
)
from .load import SHIPPED_PRESET, TRAIN_HINT, default_weights_path, load_model, resolve_weights
from .official import (
    OfficialEntry,
    export_official_state_dict,
    load_official_checkpoint,
    official_layout,
    official_to_ours,
)

__all__ = [
    "FORMAT",
    "OFFICIAL_WEIGHTS_FOLDER",
    "OfficialEntry",
    "OfficialWeights",
    "SHIPPED_PRESET",
    "TRAIN_HINT",
    "VERSION",
    "atomic_torch_save",
    "check_finite",
    "checkpoint_digest",
    "default_weights_dir",
    "default_weights_path",
    "describe_key_problems",
    "export_official_state_dict",
    "find_checkpoints",
    "find_official_checkpoint",
    "get_rng_state",
    "load_model",
    "load_official_checkpoint",
    "model_from_checkpoint",
    "official_layout",
    "official_to_ours",
    "official_weights",
    "preset_of",
    "read_checkpoint",
    "resolve_weights",
    "save_checkpoint",
    "set_rng_state",
    "state_dict_shapes",
    "strip_for_release",
]

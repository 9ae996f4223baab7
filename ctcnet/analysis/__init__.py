"""Analysis tools for CTCNet: cost (parameters, FLOPs under three conventions, scaling,
timing), receptive fields (theoretical and effective), attributions (LAM and captum) and
attention maps. Their figures for the book are in :mod:`ctcnet.course.plotting`.

The submodules import pandas (and captum/matplotlib where needed), the ``analysis`` extra of the
package; ``import ctcnet`` alone does not need them.
"""

from .attention import (
    attention_stats,
    channel_attention_weights,
    effective_rank,
    fsau_maps,
    landmark_mask,
    mdta_matrices,
    mdta_measures,
    region_contrast,
)
from .attribution import (
    BicubicUpsample,
    LAMResult,
    captum_attributions,
    diffusion_index,
    gini,
    lam,
    window_objective,
)
from .cost import (
    compare_conventions,
    count_flops,
    count_params,
    flops_by_module,
    fvcore_style_macs,
    mdta_flops,
    profile_modules,
    scaling_table,
    spatial_attention_flops,
    thop_style_flops,
)
from .receptive_field import (
    ERFResult,
    ReceptiveField,
    ReceptiveFieldError,
    effective_receptive_field,
    erf_radius,
    theoretical_receptive_field,
    trace_receptive_fields,
)

__all__ = [
    "count_params",
    "count_flops",
    "flops_by_module",
    "thop_style_flops",
    "fvcore_style_macs",
    "compare_conventions",
    "scaling_table",
    "mdta_flops",
    "spatial_attention_flops",
    "profile_modules",
    "theoretical_receptive_field",
    "trace_receptive_fields",
    "ReceptiveField",
    "ReceptiveFieldError",
    "effective_receptive_field",
    "erf_radius",
    "ERFResult",
    "lam",
    "LAMResult",
    "gini",
    "diffusion_index",
    "window_objective",
    "BicubicUpsample",
    "captum_attributions",
    "fsau_maps",
    "mdta_matrices",
    "attention_stats",
    "effective_rank",
    "mdta_measures",
    "channel_attention_weights",
    "landmark_mask",
    "region_contrast",
]

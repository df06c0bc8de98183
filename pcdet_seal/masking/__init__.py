"""Voxel masking strategies (pure torch): I2Mask and the Table D.8 baselines.

Every masker follows one interface::

    mask, stats = masker(features (N, C), voxel_coords (N, 4) int [b, z, y, x],
                         valid (N,) bool, generator)

``mask`` is (N,) bool with True = masked; ``stats`` holds python floats/lists for logging, and
``masker.log_scalars(stats)`` gives the masker's TensorBoard scalars. :data:`MASKERS` is the one
name -> class table (``MODEL.MASKING.NAME``); every masker is built from its config block alone.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from .baselines import FPSMask, RandomMask, RangeAwareMask
from .i2mask import I2Mask
from .kmeans import KMeansResult

MASKERS = {"I2Mask": I2Mask, "RandomMask": RandomMask, "RangeAwareMask": RangeAwareMask, "FPSMask": FPSMask}


def build_masker(
    cfg: Mapping[str, Any],
    *,
    voxel_size: Optional[Sequence[float]] = None,
    point_cloud_range: Optional[Sequence[float]] = None,
):
    """Build the masker named by ``cfg.NAME`` (``MODEL.MASKING`` block of docs/architecture.md §5).

    ``voxel_size`` / ``point_cloud_range`` (the detector's grid), when given, are handed to the masker
    as the config keys ``VOXEL_SIZE`` / ``POINT_CLOUD_RANGE``; maskers that do not use the grid ignore them.
    """
    name = cfg.get("NAME", "I2Mask")
    if name not in MASKERS:
        raise KeyError(f"MODEL.MASKING.NAME '{name}' is unknown; choose one of {sorted(MASKERS)}")
    grid = {key: value for key, value in (("VOXEL_SIZE", voxel_size), ("POINT_CLOUD_RANGE", point_cloud_range))
            if value is not None}
    return MASKERS[name]({**cfg, **grid})


__all__ = ["I2Mask", "RandomMask", "RangeAwareMask", "FPSMask", "KMeansResult", "build_masker", "MASKERS"]

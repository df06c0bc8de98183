"""Voxel masking strategies (pure torch): I2Mask and the Table D.8 baselines.

Every masker follows one interface::

    mask, stats = masker(features (N, C), voxel_coords (N, 4) int [b, z, y, x],
                         valid (N,) bool, generator)

``mask`` is (N,) bool with True = masked; ``stats`` holds python floats/lists for logging.
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
    """Build the masker named by ``cfg.NAME`` (``MODEL.MASKING`` block of docs/architecture.md §5)."""
    name = cfg.get("NAME", "I2Mask")
    if name not in MASKERS:
        raise KeyError(f"MODEL.MASKING.NAME '{name}' is unknown; choose one of {sorted(MASKERS)}")
    if name in ("RangeAwareMask", "FPSMask"):
        return MASKERS[name](cfg, voxel_size=voxel_size, point_cloud_range=point_cloud_range)
    return MASKERS[name](cfg)


__all__ = ["I2Mask", "RandomMask", "RangeAwareMask", "FPSMask", "KMeansResult", "build_masker", "MASKERS"]

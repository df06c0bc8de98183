"""The one resolver of the Seal teacher's settings (``MODEL.SEAL_TARGET``): cell size,
quantisation, input feature channel and scale, architecture, output width and the z crop of its
input. The model (online and cache mode), ``scripts/seal_features.py`` and
``pcdet_seal.tools.synthetic_targets`` (demo, study) all call :func:`resolve_teacher_settings`, so
the cells a cache is written with are the cells training looks up. Pure torch (no pcdet, no spconv).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence

import torch

from .minkunet import Res16UNetArch
from .targets import QUANT_MODES, SLIDR_CYLINDRICAL_CELL

KEY = "MODEL.SEAL_TARGET."


class MissingCellSizeError(ValueError):
    """Cartesian cells with a null ``CELL_SIZE`` and no voxel size to default to."""


@dataclasses.dataclass(frozen=True)
class TeacherSettings:
    """What the teacher sees and how its cells are keyed.

    ``cell_size``: (x, y, z) metres (cartesian) or (ρ m, φ °, z m) (cylindrical).
    ``mask_z``: drop points outside ``z_range`` before the teacher (``MASK_Z``; OpenPCDet crops
    x and y only, so without it the teacher also sees points the encoder's grid drops in z).
    """

    quant: str
    cell_size: tuple[float, float, float]
    feature_channel: int
    feature_scale: float
    num_features: int
    arch: Optional[Res16UNetArch]
    mask_z: bool
    z_range: Optional[tuple[float, float]]

    def keep(self, xyz: torch.Tensor) -> Optional[torch.Tensor]:
        """(N,) bool: the points the teacher sees, or None when it sees them all."""
        if not self.mask_z:
            return None
        z = xyz[:, 2]
        return (z >= self.z_range[0]) & (z <= self.z_range[1])


def _cell_size(value: Any, source: str) -> tuple[float, float, float]:
    try:
        cell = tuple(float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source} must be 3 numbers, got {value!r}") from err
    if len(cell) != 3 or not all(v > 0 for v in cell):
        raise ValueError(f"{source} must be 3 positive sizes, got {list(cell)}")
    return cell  # type: ignore[return-value]


def resolve_teacher_settings(seal_cfg: Mapping[str, Any], voxel_size: Optional[Sequence[float]] = None,
                             point_cloud_range: Optional[Sequence[float]] = None) -> TeacherSettings:
    """``MODEL.SEAL_TARGET`` (a mapping; unset keys take their defaults) → :class:`TeacherSettings`.

    ``CELL_SIZE`` null: the DSVT ``voxel_size`` for ``QUANT: cartesian`` (the reference), SLidR's
    (0.1 m, 1°, 0.1 m) for ``cylindrical`` — never a voxel size read as degrees. ``MASK_Z`` needs
    ``point_cloud_range`` (its z limits). Errors name the config key.
    """
    quant = seal_cfg.get("QUANT", None) or "cartesian"
    if quant not in QUANT_MODES:
        raise ValueError(f"{KEY}QUANT must be one of {QUANT_MODES}, got {quant!r}")
    cell = seal_cfg.get("CELL_SIZE", None)
    if cell is None or cell == "":
        if quant == "cylindrical":
            cell = SLIDR_CYLINDRICAL_CELL
        elif voxel_size is None:
            raise MissingCellSizeError(f"{KEY}CELL_SIZE is null (= the DSVT voxel size) but no voxel size is "
                                       "known here; set it explicitly")
        else:
            cell = voxel_size
    arch = seal_cfg.get("TEACHER_ARCH", None)
    mask_z = bool(seal_cfg.get("MASK_Z", False))
    z_range = None
    if mask_z:
        if point_cloud_range is None or len(point_cloud_range) != 6:
            raise ValueError(f"{KEY}MASK_Z needs the point cloud range (DATA_CONFIG.POINT_CLOUD_RANGE), "
                             f"got {point_cloud_range!r}")
        z_range = (float(point_cloud_range[2]), float(point_cloud_range[5]))
    return TeacherSettings(
        quant=quant,
        cell_size=_cell_size(cell, f"{KEY}CELL_SIZE"),
        feature_channel=int(seal_cfg.get("FEATURE_CHANNEL", 3)),
        feature_scale=float(seal_cfg.get("INTENSITY_SCALE", 1.0)),
        num_features=int(seal_cfg.get("NUM_FEATURES", 64)),
        arch=Res16UNetArch.from_dict(dict(arch)) if arch else None,
        mask_z=mask_z,
        z_range=z_range,
    )

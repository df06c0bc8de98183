"""Seal targets (docs/method.md §2.3, §3): points → teacher cells, teacher cell features → per-voxel
targets on the DSVT grid (point-weighted mean or the reference's representative mode). Pure torch,
native scatter ops; the coordinate join lives in :mod:`pcdet_seal.geometry`.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from pcdet_seal.geometry import linearize

QUANT_MODES = ("cartesian", "cylindrical")
TARGET_MODES = ("point_mean", "representative")
#: SLidR's cylindrical cells: ρ 0.1 m, φ 1°, z 0.1 m (docs/method.md §2.3).
SLIDR_CYLINDRICAL_CELL = (0.1, 1.0, 0.1)


def quantize(xyz: torch.Tensor, cell_size: Sequence[float], mode: str = "cartesian") -> torch.Tensor:
    """Integer teacher-cell indices of points.

    Args:
        xyz: (N, 3) float point coordinates in metres.
        cell_size: 3 cell sizes. Cartesian: (x, y, z) metres, no origin shift (``floor(xyz/v)``).
            Cylindrical: (ρ metres, φ degrees, z metres), φ = atan2(y, x) in (-180°, 180°].
        mode: ``"cartesian"`` or ``"cylindrical"``.

    Returns:
        (N, 3) int64 cell indices, (x, y, z) or (ρ, φ, z) order.
    """
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz must be (N, 3), got {tuple(xyz.shape)}")
    if len(cell_size) != 3 or min(cell_size) <= 0:
        raise ValueError(f"cell_size must be 3 positive sizes, got {list(cell_size)}")
    if mode == "cartesian":
        scaled = xyz
    elif mode == "cylindrical":
        rho = torch.hypot(xyz[:, 0], xyz[:, 1])
        phi = torch.rad2deg(torch.atan2(xyz[:, 1], xyz[:, 0]))
        scaled = torch.stack([rho, phi, xyz[:, 2]], dim=1)
    else:
        raise ValueError(f"unknown teacher quantisation {mode!r}; expected one of {QUANT_MODES}")
    size = torch.tensor(list(cell_size), dtype=scaled.dtype, device=scaled.device)
    return torch.floor(scaled / size).long()


@dataclasses.dataclass
class TeacherCells:
    """Unique teacher cells of a batch of points.

    coords: (N_t, 4) int64 ``(b, c0, c1, c2)``; point2cell: (N_p,) int64 cell of each point;
    representative: (N_t,) int64 first point of each cell (MinkowskiEngine's ``unique_map``).
    """

    coords: torch.Tensor
    point2cell: torch.Tensor
    representative: torch.Tensor


def teacher_cells(xyz: torch.Tensor, batch_idx: torch.Tensor, cell_size: Sequence[float],
                  mode: str = "cartesian") -> TeacherCells:
    """Quantise points (N_p, 3) of frames ``batch_idx`` (N_p,) into unique teacher cells."""
    if batch_idx.shape != (xyz.shape[0],):
        raise ValueError(f"batch_idx must be ({xyz.shape[0]},), got {tuple(batch_idx.shape)}")
    coords = torch.cat([batch_idx.long()[:, None], quantize(xyz, cell_size, mode)], dim=1)
    n = coords.shape[0]
    if n == 0:
        empty = torch.zeros(0, dtype=torch.long, device=xyz.device)
        return TeacherCells(coords.new_zeros(0, 4), empty, empty)
    low = coords.min(0).values
    keys = linearize(coords, low, coords.max(0).values - low + 1)
    _, point2cell = torch.unique(keys, return_inverse=True)
    num_cells = int(point2cell.max()) + 1
    arange = torch.arange(n, device=xyz.device)
    representative = torch.full((num_cells,), n, dtype=torch.long, device=xyz.device)
    representative.scatter_reduce_(0, point2cell, arange, "amin", include_self=False)
    return TeacherCells(coords[representative], point2cell, representative)


def teacher_input(points: torch.Tensor, batch_idx: torch.Tensor, cell_size: Sequence[float],
                  mode: str = "cartesian", feature_channel: int = 3,
                  feature_scale: float = 1.0) -> tuple[TeacherCells, torch.Tensor]:
    """Teacher cells and their input feature, as the reference feeds Seal.

    Args:
        points: (N_p, ≥4) rows ``x, y, z, f, ...``; ``feature_channel`` selects the feature
            (the first non-xyz channel: tanh-intensity on Waymo, raw intensity on nuScenes).
        batch_idx: (N_p,) frame of each point.
        feature_scale: multiplies the feature (e.g. 1/255 to feed normalised intensity).

    Returns:
        ``(cells, feats)`` with feats (N_t, 1) float32: the representative point's feature.
    """
    if points.ndim != 2 or points.shape[1] <= feature_channel:
        raise ValueError(
            f"points must be (N, >{feature_channel}) to read feature channel {feature_channel}, "
            f"got {tuple(points.shape)}"
        )
    cells = teacher_cells(points[:, :3], batch_idx, cell_size, mode)
    feats = points[cells.representative, feature_channel:feature_channel + 1].float() * feature_scale
    return cells, feats


def voxel_targets(cell_feats: torch.Tensor, point2cell: torch.Tensor, point2voxel: torch.Tensor,
                  num_voxels: int, mode: str = "point_mean",
                  representative: Optional[torch.Tensor] = None,
                  cell_valid: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-voxel Seal targets from teacher-cell features.

    Args:
        cell_feats: (N_t, C) teacher features per cell (any float dtype).
        point2cell: (N_p,) int64 cell of each point.
        point2voxel: (N_p,) int64 DSVT voxel of each point, -1 for points outside the grid.
        num_voxels: N_v.
        mode: ``"point_mean"`` (each voxel: mean over its points of their cell's feature) or
            ``"representative"`` (each voxel: mean over the cells whose representative point
            lies in it; docs/method.md §3, reference parity; needs ``representative``).
        representative: (N_t,) int64 representative point of each cell.
        cell_valid: (N_t,) bool, False for cells without a feature (e.g. absent from a cache).

    Returns:
        ``(seal_target, seal_valid)``: (N_v, C) float32, zero where invalid, and (N_v,) bool,
        True where at least one point (or cell) contributed.
    """
    if point2cell.shape != point2voxel.shape:
        raise ValueError(f"point2cell {tuple(point2cell.shape)} and point2voxel "
                         f"{tuple(point2voxel.shape)} must both be (N_p,)")
    feats = cell_feats.float()
    if mode == "point_mean":
        take = point2voxel >= 0
        if cell_valid is not None:
            take &= cell_valid[point2cell]
        src, dst = feats[point2cell[take]], point2voxel[take]
    elif mode == "representative":
        if representative is None:
            raise ValueError("TARGET_MODE 'representative' needs the representative point of each cell")
        dst = point2voxel[representative]
        take = dst >= 0
        if cell_valid is not None:
            take &= cell_valid
        src, dst = feats[take], dst[take]
    else:
        raise ValueError(f"unknown TARGET_MODE {mode!r}; expected one of {TARGET_MODES}")
    total = feats.new_zeros(num_voxels, feats.shape[1]).index_add_(0, dst, src)
    count = feats.new_zeros(num_voxels).index_add_(0, dst, torch.ones_like(dst, dtype=feats.dtype))
    valid = count > 0
    return total / count.clamp(min=1)[:, None], valid


def points_to_cells(xyz: torch.Tensor, point_feats: torch.Tensor, cell_size: Sequence[float],
                    mode: str = "cartesian") -> tuple[torch.Tensor, torch.Tensor]:
    """Reduce a per-point teacher's output of one frame to teacher cells (mean per cell).

    Args:
        xyz: (N, 3) points; point_feats: (N, C) their features.

    Returns:
        ``(coords, feats)``: (M, 3) int32 cell indices and (M, C) float32 mean features, ready
        for the feature cache.
    """
    if point_feats.shape[0] != xyz.shape[0]:
        raise ValueError(f"{xyz.shape[0]} points but {point_feats.shape[0]} feature rows")
    cells = teacher_cells(xyz, torch.zeros(xyz.shape[0], dtype=torch.long, device=xyz.device),
                          cell_size, mode)
    m = cells.coords.shape[0]
    feats = point_feats.float()
    total = feats.new_zeros(m, feats.shape[1]).index_add_(0, cells.point2cell, feats)
    count = torch.bincount(cells.point2cell, minlength=m).to(feats.dtype)
    return cells.coords[:, 1:].int(), total / count[:, None]


def teacher_features(teacher: torch.nn.Module, cell_size: Sequence[float], quant: str, feature_channel: int,
                     feature_scale: float, tanh_feature: bool = False,
                     xy_range: Optional[Sequence[float]] = None, z_range: Optional[Sequence[float]] = None,
                     device: Optional[torch.device] = None
                     ) -> Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]]:
    """The teacher as a feature function for the cache writer: points (N, ≥4) of one frame →
    (cell coords (M, 3) int32, teacher features (M, C) on the CPU).

    Args:
        xy_range: ``(x_min, y_min, x_max, y_max)``: drop points outside it first (None: keep all).
        z_range: ``(z_min, z_max)``: drop points outside it (``MASK_Z``; None: keep all).
        tanh_feature: apply tanh to ``feature_channel`` before the teacher.
        device: where the teacher runs (default: the device of its parameters).
    """
    if device is None:  # a frozen teacher may hold its weights as buffers
        held = next(itertools.chain(teacher.parameters(), teacher.buffers()), None)
        device = held.device if held is not None else torch.device("cpu")

    @torch.no_grad()
    def run(points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        pts = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))
        keep = torch.ones(pts.shape[0], dtype=torch.bool)
        if xy_range is not None:
            for axis in (0, 1):
                keep &= (pts[:, axis] >= xy_range[axis]) & (pts[:, axis] <= xy_range[axis + 2])
        if z_range is not None:
            keep &= (pts[:, 2] >= z_range[0]) & (pts[:, 2] <= z_range[1])
        pts = pts[keep]
        if tanh_feature:
            pts = pts.clone()
            pts[:, feature_channel] = torch.tanh(pts[:, feature_channel])
        pts = pts.to(device)
        batch = torch.zeros(pts.shape[0], dtype=torch.long, device=device)
        cells, feats = teacher_input(pts, batch, cell_size, quant, feature_channel, feature_scale)
        out = teacher(cells.coords, feats)
        return cells.coords[:, 1:].int().cpu(), out.cpu()

    return run

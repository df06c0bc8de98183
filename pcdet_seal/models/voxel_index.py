"""Point ↔ voxel bookkeeping shared by the pre-training modules (pure torch).

The dynamic VFE does not return its point → voxel map, so it is recomputed here with the same
quantisation and joined to the VFE's voxel rows by coordinate (never by row order).
"""
from __future__ import annotations

from typing import Sequence

import torch

from pcdet_seal.seal.targets import join_by_coords


def grid_cells(points: torch.Tensor, point_cloud_range: Sequence[float], voxel_size: Sequence[float],
               grid_size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N_p, 3) int64 grid cell ``(x, y, z)`` of each point (``points`` rows ``(b, x, y, z, ...)``)
    and (N_p,) bool: inside the grid. Same arithmetic as OpenPCDet's ``DynamicVoxelVFE``."""
    device = points.device
    low = torch.tensor(list(point_cloud_range[:3]), dtype=torch.float32, device=device)
    size = torch.tensor(list(voxel_size), dtype=torch.float32, device=device)
    grid = torch.tensor([int(g) for g in grid_size], dtype=torch.long, device=device)
    cell = torch.floor((points[:, 1:4] - low) / size).long()
    return cell, ((cell >= 0) & (cell < grid)).all(dim=1)


def point_to_voxel(points: torch.Tensor, voxel_coords: torch.Tensor, point_cloud_range: Sequence[float],
                   voxel_size: Sequence[float], grid_size: Sequence[int]) -> torch.Tensor:
    """Row of ``voxel_coords`` holding each point, -1 for points outside the grid.

    Args:
        points: (N_p, 1 + F) rows ``(b, x, y, z, ...)`` as in ``batch_dict['points']``.
        voxel_coords: (N_v, 4) int ``(b, z, y, x)`` of the VFE's voxels.
        point_cloud_range, voxel_size, grid_size: the dataset's grid (x, y, z).

    Returns:
        (N_p,) int64 voxel row per point, -1 where the point lies outside the grid.
    """
    device = points.device
    cell, inside = grid_cells(points, point_cloud_range, voxel_size, grid_size)
    query = torch.stack([points[:, 0].long(), cell[:, 2], cell[:, 1], cell[:, 0]], dim=1)
    index, found = join_by_coords(query[inside], voxel_coords.long())
    out = torch.full((points.shape[0],), -1, dtype=torch.long, device=device)
    out[inside] = torch.where(found, index, torch.full_like(index, -1))
    return out


def group_points(xyz: torch.Tensor, point2voxel: torch.Tensor, num_voxels: int, voxel_ids: torch.Tensor,
                 max_points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``max_points`` points (in stored order) of the voxels ``voxel_ids``.

    Points are stable-sorted by voxel id; voxel v's points are ``start[v] + j``. Slots past a
    voxel's count repeat its last point (callers pass ``counts``, so padding never counts).

    Args:
        xyz: (N_p, 3) point coordinates; point2voxel: (N_p,) voxel row, -1 outside the grid.
        num_voxels: N_v; voxel_ids: (M,) rows of the voxels to group.

    Returns:
        ``(points, counts)``: (M, max_points, 3) and (M,) int64, ``counts ≤ max_points``.
    """
    keep = point2voxel >= 0
    p2v = point2voxel[keep]
    order = torch.sort(p2v, stable=True).indices
    sorted_xyz = xyz[keep][order]
    counts_all = torch.bincount(p2v, minlength=num_voxels)
    starts = torch.cumsum(counts_all, 0) - counts_all
    counts = counts_all[voxel_ids].clamp(max=max_points)
    slot = torch.arange(max_points, device=xyz.device)[None, :]
    slot = torch.minimum(slot, (counts[:, None] - 1).clamp(min=0))
    index = (starts[voxel_ids][:, None] + slot).clamp(max=max(sorted_xyz.shape[0] - 1, 0))
    if sorted_xyz.shape[0] == 0:
        return xyz.new_zeros(voxel_ids.shape[0], max_points, 3), counts
    return sorted_xyz[index], counts

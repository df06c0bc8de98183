"""Voxel-grid geometry shared across the plugin (pure torch; imports neither pcdet nor spconv).

The coordinate join used everywhere rows are matched (:func:`linearize`, :func:`join_by_coords`),
metric voxel centres (:func:`voxel_centres`) and the point ↔ voxel bookkeeping of the pre-training
modules (:func:`grid_cells`, :func:`point_to_voxel`, :func:`group_points`). The dynamic VFE does not
return its point → voxel map, so it is recomputed here with the same quantisation and joined to the
VFE's voxel rows by coordinate (never by row order).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

_MAX_KEY = 1 << 62


def linearize(coords: torch.Tensor, low: torch.Tensor, extent: torch.Tensor) -> torch.Tensor:
    """(N, D) integer coords → (N,) int64 keys, row-major over ``extent`` after subtracting ``low``."""
    if math.prod(int(e) for e in extent.tolist()) >= _MAX_KEY:
        raise ValueError(f"coordinate extent {extent.tolist()} too large to linearise in int64")
    local = coords.long() - low
    key = torch.zeros(coords.shape[0], dtype=torch.long, device=coords.device)
    for axis in range(coords.shape[1]):
        key = key * extent[axis] + local[:, axis]
    return key


def join_by_coords(query: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row of ``table`` holding each ``query`` coordinate (sort + searchsorted on linear keys).

    Args:
        query: (N, D) integer coordinates.
        table: (M, D) integer coordinates, unique.

    Returns:
        ``(index, found)``: (N,) int64 row in ``table`` (0 where not found) and (N,) bool.
        Raises ValueError when ``table`` holds a coordinate twice.
    """
    if query.shape[1] != table.shape[1]:
        raise ValueError(f"query coords are {query.shape[1]}-D but table coords {table.shape[1]}-D")
    if table.shape[0] == 0 or query.shape[0] == 0:
        return (torch.zeros(query.shape[0], dtype=torch.long, device=query.device),
                torch.zeros(query.shape[0], dtype=torch.bool, device=query.device))
    both = torch.cat([query.long(), table.long().to(query.device)])
    low = both.min(0).values
    extent = both.max(0).values - low + 1
    keys = linearize(both, low, extent)
    qkey, tkey = keys[: query.shape[0]], keys[query.shape[0]:]
    tkey_sorted, order = torch.sort(tkey)
    dup = tkey_sorted[1:] == tkey_sorted[:-1]
    if bool(dup.any()):
        first = table[order[1:][dup][0]].tolist()
        raise ValueError(f"table holds {int(dup.sum())} duplicate coordinates, e.g. {first}")
    pos = torch.searchsorted(tkey_sorted, qkey).clamp_(max=tkey.shape[0] - 1)
    found = tkey_sorted[pos] == qkey
    return torch.where(found, order[pos], torch.zeros_like(pos)), found


def voxel_centres(voxel_coords: Tensor, voxel_size: Sequence[float], pc_range: Sequence[float]) -> Tensor:
    """Metric centres (N, 3) as (x, y, z) of voxels given as (N, 4) [b, z, y, x] indices."""
    zyx = voxel_coords[:, 1:].to(torch.float32)
    xyz = zyx.flip(1)
    size = torch.tensor(voxel_size, dtype=torch.float32, device=voxel_coords.device)
    lo = torch.tensor(pc_range[:3], dtype=torch.float32, device=voxel_coords.device)
    return (xyz + 0.5) * size + lo


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

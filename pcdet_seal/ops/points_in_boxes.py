"""Which 7-DoF box holds each point (OpenPCDet's ``points_in_boxes_gpu`` / ``points_in_boxes_cpu``).

A point is inside when ``|z - cz| <= dz / 2`` and, in the box frame, ``|x| < dx / 2 + margin``
and ``|y| < dy / 2 + margin``; OpenPCDet uses margin 1e-5 in the CUDA op and 1e-2 in the C++ one.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .sweep import close_pairs

MARGIN_GPU = 1e-5
MARGIN_CPU = 1e-2


def _check(points: Tensor, boxes: Tensor, batched: bool) -> tuple[Tensor, Tensor]:
    dims = 3 if batched else 2
    if points.dim() != dims or points.shape[-1] != 3:
        raise ValueError(f"points: expected {'(B, N, 3)' if batched else '(N, 3)'}, got {tuple(points.shape)}")
    if boxes.dim() != dims or boxes.shape[-1] != 7:
        raise ValueError(f"boxes: expected {'(B, M, 7)' if batched else '(M, 7)'}, got {tuple(boxes.shape)}")
    if batched and points.shape[0] != boxes.shape[0]:
        raise ValueError(f"points and boxes need the same batch size, got {points.shape[0]} and {boxes.shape[0]}")
    dtype = torch.float64 if torch.float64 in (points.dtype, boxes.dtype) else torch.float32
    return points.to(dtype), boxes.to(dtype)


def _inside_pairs(points: Tensor, boxes: Tensor, margin: float) -> tuple[Tensor, Tensor]:
    """(N, 3) points, (M, 7) boxes -> (box index, point index) of every point-in-box pair."""
    found_boxes, found_points = [], []
    for box_index, point_index in close_pairs(boxes[:, 0:2], 0.5 * boxes[:, 3:5].norm(dim=1) + margin,
                                              points[:, 0:2], points.new_zeros(points.shape[0])):
        box, point = boxes.index_select(0, box_index), points.index_select(0, point_index)
        shift = point - box[:, 0:3]
        cos, sin = torch.cos(box[:, 6]), torch.sin(box[:, 6])
        local_x = shift[:, 0] * cos + shift[:, 1] * sin
        local_y = -shift[:, 0] * sin + shift[:, 1] * cos
        inside = ((shift[:, 2].abs() <= box[:, 5] / 2)
                  & (local_x.abs() < box[:, 3] / 2 + margin)
                  & (local_y.abs() < box[:, 4] / 2 + margin))
        found_boxes.append(box_index[inside])
        found_points.append(point_index[inside])
    if not found_boxes:
        empty = torch.zeros(0, dtype=torch.int64, device=points.device)
        return empty, empty
    return torch.cat(found_boxes), torch.cat(found_points)


def _first_box(points: Tensor, boxes: Tensor, margin: float) -> Tensor:
    """(N, 3), (M, 7) -> (N,) int32 index of the first box holding each point, -1 if none."""
    num_boxes = boxes.shape[0]
    box_index, point_index = _inside_pairs(points, boxes, margin)
    first = torch.full((points.shape[0],), num_boxes, dtype=torch.int64, device=points.device)
    first.scatter_reduce_(0, point_index, box_index, reduce="amin")
    return torch.where(first < num_boxes, first, -1).to(torch.int32)


@torch.no_grad()
def points_in_boxes(points: Tensor, boxes: Tensor, margin: float = MARGIN_GPU) -> Tensor:
    """Index of the first box (lowest index) that holds each point, as ``points_in_boxes_gpu``.

    Args:
        points: (B, N, 3) or (N, 3).
        boxes: (B, M, 7) or (M, 7) [x, y, z, dx, dy, dz, heading], z = box centre.
        margin: BEV tolerance in metres (1e-5 as the CUDA op).

    Returns:
        (B, N) or (N,) int32 box index, -1 where no box holds the point.
    """
    if points.dim() == 2:
        points, boxes = _check(points, boxes, batched=False)
        return _first_box(points, boxes, margin)
    points, boxes = _check(points, boxes, batched=True)
    out = torch.empty(points.shape[:2], dtype=torch.int32, device=points.device)
    for batch_index in range(points.shape[0]):
        out[batch_index] = _first_box(points[batch_index], boxes[batch_index], margin)
    return out


@torch.no_grad()
def points_in_boxes_mask(points: Tensor, boxes: Tensor, margin: float = MARGIN_CPU) -> Tensor:
    """Box-by-point membership, as ``points_in_boxes_cpu`` (boxes may overlap).

    Args:
        points: (N, 3).
        boxes: (M, 7).
        margin: BEV tolerance in metres (1e-2 as the C++ op).

    Returns:
        (M, N) int32, 1 where box m holds point n, else 0.
    """
    points, boxes = _check(points, boxes, batched=False)
    out = torch.zeros((boxes.shape[0], points.shape[0]), dtype=torch.int32, device=points.device)
    box_index, point_index = _inside_pairs(points, boxes, margin)
    out[box_index, point_index] = 1
    return out

"""Rotated BEV and 3-D IoU of 7-DoF boxes ``[x, y, z, dx, dy, dz, heading]`` (z = box centre).

Exact area of the intersection of the two BEV rectangles, batched over box pairs in pure torch
(outputs are not differentiable, as OpenPCDet's); pairs whose bounding circles are apart are
skipped, so sparse scenes are cheap.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .sweep import close_pairs

# Denominator floors, as in OpenPCDet's iou_bev (CUDA/C++) and boxes_iou3d_gpu (Python).
EPS_UNION_BEV = 1e-8
EPS_UNION_3D = 1e-6

_PAIRS_PER_CHUNK = 1 << 16


def check_boxes(boxes: Tensor, name: str) -> Tensor:
    """Validate a (N, 7) box tensor and return it as float32 (float64 stays float64)."""
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(boxes).__name__}")
    if boxes.dim() != 2 or boxes.shape[1] != 7:
        raise ValueError(f"{name}: expected shape (N, 7) [x, y, z, dx, dy, dz, heading], got {tuple(boxes.shape)}")
    return boxes if boxes.dtype == torch.float64 else boxes.float()


def _common_dtype(a: Tensor, b: Tensor) -> torch.dtype:
    return torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32


def bev_corners(boxes: Tensor) -> Tensor:
    """BEV corners of boxes, counter-clockwise.

    Args:
        boxes: (..., 7) boxes.

    Returns:
        (..., 4, 2) corner xy, starting at local (-dx/2, -dy/2).
    """
    signs = boxes.new_tensor([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    local = signs * boxes[..., None, 3:5]
    cos, sin = torch.cos(boxes[..., 6])[..., None], torch.sin(boxes[..., 6])[..., None]
    x = local[..., 0] * cos - local[..., 1] * sin + boxes[..., None, 0]
    y = local[..., 0] * sin + local[..., 1] * cos + boxes[..., None, 1]
    return torch.stack([x, y], dim=-1)


def _cross(u: Tensor, v: Tensor) -> Tensor:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _edges_inside_area(poly: Tensor, clip: Tensor, tol: Tensor, first: bool) -> Tensor:
    """Green's-theorem area term of the parts of ``poly``'s edges that lie inside ``clip``.

    Args:
        poly, clip: (P, 4, 2) counter-clockwise convex quads.
        tol: (P,) distance under which an edge counts as lying on a line of ``clip``.
        first: an edge on a line of ``clip`` with the same direction is kept when True and
            dropped when False, so a shared boundary is counted exactly once; an edge on a
            line of the opposite direction is kept in both passes (the two cancel).

    Returns:
        (P,) sum over the clipped edges [s, e] of ``cross(s, e) / 2``.
    """
    start = poly[:, :, None]  # (P, 4, 1, 2): edge i of poly
    direction = (torch.roll(poly, -1, dims=1) - poly)[:, :, None]
    origin = clip[:, None]  # (P, 1, 4, 2): edge k of clip, inside is on its left
    clip_dir = (torch.roll(clip, -1, dims=1) - clip)[:, None]
    # Signed (scaled) distance of start + t * direction from clip edge k: dist0 + t * slope.
    dist0 = _cross(clip_dir, start - origin)  # (P, 4, 4)
    slope = _cross(clip_dir, direction)
    clip_len = clip_dir.norm(dim=-1)
    eps = 64 * torch.finfo(poly.dtype).eps
    parallel = slope.abs() <= eps * clip_len * direction.norm(dim=-1)
    on_line = parallel & (dist0.abs() <= tol[:, None, None] * clip_len)
    reject = parallel & ~on_line & (dist0 < 0)
    if not first:
        reject |= on_line & ((clip_dir * direction).sum(-1) > 0)
    bound = -dist0 / torch.where(parallel, torch.ones_like(slope), slope)
    low = torch.where(~parallel & (slope > 0), bound, torch.full_like(bound, -torch.inf)).amax(-1).clamp(min=0)
    high = torch.where(~parallel & (slope < 0), bound, torch.full_like(bound, torch.inf)).amin(-1).clamp(max=1)
    keep = ~reject.any(-1) & (low < high)
    segment_start = poly + low[..., None] * direction[:, :, 0]
    segment_end = poly + high[..., None] * direction[:, :, 0]
    term = _cross(segment_start, segment_end)
    return 0.5 * torch.where(keep, term, torch.zeros_like(term)).sum(-1)


def _pair_overlap_chunk(a: Tensor, b: Tensor) -> Tensor:
    """Exact BEV intersection areas of box pairs: (P, 7), (P, 7) -> (P,).

    The intersection of two convex polygons is bounded by the parts of each one's edges that
    lie inside the other; its area is the boundary integral of ``(x dy - y dx) / 2`` over them.
    """
    # Work relative to box a's centre: keeps float32 precise for boxes far from the origin.
    b = torch.cat([b[:, 0:2] - a[:, 0:2], b[:, 2:]], dim=1)
    a = torch.cat([torch.zeros_like(a[:, 0:2]), a[:, 2:]], dim=1)
    scale = torch.maximum(a[:, 3:5].amax(1), b[:, 3:5].amax(1))
    tol = scale * (64 * torch.finfo(a.dtype).eps)
    corners_a, corners_b = bev_corners(a), bev_corners(b)
    area = _edges_inside_area(corners_a, corners_b, tol, True) + _edges_inside_area(corners_b, corners_a, tol, False)
    proper = (a[:, 3] > 0) & (a[:, 4] > 0) & (b[:, 3] > 0) & (b[:, 4] > 0)
    return torch.where(proper, area.clamp(min=0), torch.zeros_like(area))


@torch.no_grad()
def paired_boxes_bev_overlap(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """BEV intersection area of row-aligned pairs: (N, 7), (N, 7) -> (N,)."""
    boxes_a, boxes_b = check_boxes(boxes_a, "boxes_a"), check_boxes(boxes_b, "boxes_b")
    if boxes_a.shape[0] != boxes_b.shape[0]:
        raise ValueError(f"paired boxes need equal counts, got {boxes_a.shape[0]} and {boxes_b.shape[0]}")
    dtype = _common_dtype(boxes_a, boxes_b)
    boxes_a, boxes_b = boxes_a.to(dtype), boxes_b.to(dtype)
    out = boxes_a.new_zeros(boxes_a.shape[0])
    for start in range(0, boxes_a.shape[0], _PAIRS_PER_CHUNK):
        sl = slice(start, start + _PAIRS_PER_CHUNK)
        out[sl] = _pair_overlap_chunk(boxes_a[sl], boxes_b[sl])
    return out


@torch.no_grad()
def bev_candidate_pairs(boxes_a: Tensor, boxes_b: Tensor) -> tuple[Tensor, Tensor]:
    """Index pairs (i, j) whose BEV bounding circles touch; all other pairs have zero overlap.

    Args:
        boxes_a: (N, 7), boxes_b: (M, 7).

    Returns:
        Two (P,) int64 tensors, grouped by ascending i (j in no particular order).
    """
    chunks = list(close_pairs(boxes_a[:, 0:2], 0.5 * boxes_a[:, 3:5].norm(dim=1),
                              boxes_b[:, 0:2], 0.5 * boxes_b[:, 3:5].norm(dim=1)))
    if not chunks:
        empty = torch.zeros(0, dtype=torch.int64, device=boxes_a.device)
        return empty, empty
    return torch.cat([i for i, _ in chunks]), torch.cat([j for _, j in chunks])


@torch.no_grad()
def boxes_bev_overlap(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Pairwise rotated BEV intersection areas: (N, 7), (M, 7) -> (N, M)."""
    boxes_a, boxes_b = check_boxes(boxes_a, "boxes_a"), check_boxes(boxes_b, "boxes_b")
    dtype = _common_dtype(boxes_a, boxes_b)
    boxes_a, boxes_b = boxes_a.to(dtype), boxes_b.to(dtype)
    out = boxes_a.new_zeros(boxes_a.shape[0], boxes_b.shape[0])
    index_a, index_b = bev_candidate_pairs(boxes_a, boxes_b)
    if index_a.numel():
        out[index_a, index_b] = paired_boxes_bev_overlap(boxes_a.index_select(0, index_a),
                                                         boxes_b.index_select(0, index_b))
    return out


@torch.no_grad()
def boxes_bev_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Pairwise rotated BEV IoU: (N, 7), (M, 7) -> (N, M).

    ``overlap / max(area_a + area_b - overlap, 1e-8)``, as OpenPCDet's ``boxes_iou_bev`` /
    ``boxes_bev_iou_cpu``.
    """
    overlap = boxes_bev_overlap(boxes_a, boxes_b)
    area_a = (boxes_a[:, 3] * boxes_a[:, 4]).to(overlap.dtype)[:, None]
    area_b = (boxes_b[:, 3] * boxes_b[:, 4]).to(overlap.dtype)[None, :]
    return overlap / torch.clamp(area_a + area_b - overlap, min=EPS_UNION_BEV)


def _height_overlap(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """z-overlap of broadcastable box tensors (..., 7) -> (...)."""
    top = torch.minimum(boxes_a[..., 2] + boxes_a[..., 5] / 2, boxes_b[..., 2] + boxes_b[..., 5] / 2)
    bottom = torch.maximum(boxes_a[..., 2] - boxes_a[..., 5] / 2, boxes_b[..., 2] - boxes_b[..., 5] / 2)
    return torch.clamp(top - bottom, min=0)


@torch.no_grad()
def boxes_iou3d(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Pairwise 3-D IoU: (N, 7), (M, 7) -> (N, M).

    Rotated BEV overlap × z overlap over ``max(vol_a + vol_b - inter, 1e-6)``, as OpenPCDet's
    ``boxes_iou3d_gpu``.
    """
    overlap_bev = boxes_bev_overlap(boxes_a, boxes_b)
    boxes_a, boxes_b = boxes_a.to(overlap_bev.dtype), boxes_b.to(overlap_bev.dtype)
    inter = overlap_bev * _height_overlap(boxes_a[:, None], boxes_b[None, :])
    vol_a = boxes_a[:, 3:6].prod(1)[:, None]
    vol_b = boxes_b[:, 3:6].prod(1)[None, :]
    return inter / torch.clamp(vol_a + vol_b - inter, min=EPS_UNION_3D)


@torch.no_grad()
def paired_boxes_iou3d(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """3-D IoU of row-aligned pairs: (N, 7), (N, 7) -> (N,).

    As OpenPCDet's ``paired_boxes_iou3d_gpu``; its ``boxes_aligned_iou3d_gpu`` is the same
    numbers shaped (N, 1).
    """
    overlap_bev = paired_boxes_bev_overlap(boxes_a, boxes_b)
    boxes_a, boxes_b = boxes_a.to(overlap_bev.dtype), boxes_b.to(overlap_bev.dtype)
    inter = overlap_bev * _height_overlap(boxes_a, boxes_b)
    vol_a, vol_b = boxes_a[:, 3:6].prod(1), boxes_b[:, 3:6].prod(1)
    return inter / torch.clamp(vol_a + vol_b - inter, min=EPS_UNION_3D)

"""Greedy NMS of 7-DoF boxes on rotated or axis-aligned BEV IoU (OpenPCDet's ``nms_gpu`` semantics).

Overlapping pairs are found and scored in batched torch; only the greedy sweep over boxes
that suppress something runs as a loop, on the host, as OpenPCDet's CUDA NMS does too.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from .rotated_iou import EPS_UNION_BEV, bev_candidate_pairs, check_boxes, paired_boxes_bev_overlap


def _paired_rotated_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    overlap = paired_boxes_bev_overlap(boxes_a, boxes_b)
    union = boxes_a[:, 3] * boxes_a[:, 4] + boxes_b[:, 3] * boxes_b[:, 4] - overlap
    return overlap / torch.clamp(union, min=EPS_UNION_BEV)


def _paired_axis_aligned_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """BEV IoU of the boxes with their heading ignored, as OpenPCDet's ``iou_normal``."""
    low = torch.maximum(boxes_a[:, 0:2] - boxes_a[:, 3:5] / 2, boxes_b[:, 0:2] - boxes_b[:, 3:5] / 2)
    high = torch.minimum(boxes_a[:, 0:2] + boxes_a[:, 3:5] / 2, boxes_b[:, 0:2] + boxes_b[:, 3:5] / 2)
    overlap = torch.clamp(high - low, min=0).prod(1)
    union = boxes_a[:, 3] * boxes_a[:, 4] + boxes_b[:, 3] * boxes_b[:, 4] - overlap
    return overlap / torch.clamp(union, min=EPS_UNION_BEV)


def _greedy_keep(sorted_boxes: Tensor, thresh: float, pair_iou: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Positions (ascending) kept by greedy NMS over boxes already sorted by descending score."""
    n = sorted_boxes.shape[0]
    index_a, index_b = bev_candidate_pairs(sorted_boxes, sorted_boxes)
    later = index_a < index_b
    index_a, index_b = index_a[later], index_b[later]
    suppress = pair_iou(sorted_boxes[index_a], sorted_boxes[index_b]) > thresh
    rows = index_a[suppress].cpu().numpy()  # row-major: sorted by row
    cols = index_b[suppress].cpu().numpy()
    suppressed = np.zeros(n, dtype=bool)
    starts = np.searchsorted(rows, np.arange(n + 1))
    for i in np.unique(rows):  # ascending, so suppressed[i] is final when i is reached
        if not suppressed[i]:
            suppressed[cols[starts[i]:starts[i + 1]]] = True
    return torch.from_numpy(np.flatnonzero(~suppressed)).to(sorted_boxes.device)


def _nms(boxes: Tensor, scores: Tensor, thresh: float, pre_maxsize: Optional[int],
         pair_iou: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    boxes = check_boxes(boxes, "boxes")
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"scores must be ({boxes.shape[0]},) to match boxes, got {tuple(scores.shape)}")
    if thresh < 0:
        raise ValueError(f"NMS threshold must be >= 0, got {thresh}")
    order = torch.sort(scores, descending=True, stable=True).indices
    if pre_maxsize is not None:
        order = order[:pre_maxsize]
    return order[_greedy_keep(boxes[order], float(thresh), pair_iou)]


@torch.no_grad()
def nms(boxes: Tensor, scores: Tensor, thresh: float, pre_maxsize: Optional[int] = None) -> Tensor:
    """Greedy NMS on rotated BEV IoU.

    Boxes are visited by descending score (stable for ties); a box is dropped when its BEV
    IoU with an already kept box is ``> thresh`` (strict, as ``nms_gpu``).

    Args:
        boxes: (N, 7) [x, y, z, dx, dy, dz, heading].
        scores: (N,).
        thresh: IoU threshold, >= 0.
        pre_maxsize: keep only the top-``pre_maxsize`` boxes by score before NMS.

    Returns:
        (K,) int64 indices into ``boxes``, in descending score order, on the boxes' device.
    """
    return _nms(boxes, scores, thresh, pre_maxsize, _paired_rotated_iou)


@torch.no_grad()
def nms_normal(boxes: Tensor, scores: Tensor, thresh: float, pre_maxsize: Optional[int] = None) -> Tensor:
    """Greedy NMS on axis-aligned BEV IoU (heading ignored); otherwise as :func:`nms`."""
    return _nms(boxes, scores, thresh, pre_maxsize, _paired_axis_aligned_iou)


def pcdet_nms_gpu(boxes: Tensor, scores: Tensor, thresh: float, pre_maxsize: Optional[int] = None,
                  **kwargs) -> tuple[Tensor, None]:
    """Drop-in for OpenPCDet's ``iou3d_nms_utils.nms_gpu``: returns ``(keep, None)``.

    Extra keyword arguments (``model_nms_utils`` passes the NMS config, ``post_max_size``) are
    ignored, as there.
    """
    return nms(boxes, scores, thresh, pre_maxsize), None


def pcdet_nms_normal_gpu(boxes: Tensor, scores: Tensor, thresh: float, **kwargs) -> tuple[Tensor, None]:
    """Drop-in for OpenPCDet's ``iou3d_nms_utils.nms_normal_gpu`` (no ``pre_maxsize``, as there)."""
    return nms_normal(boxes, scores, thresh), None

"""Reconstruction losses in pure torch: Chamfer distance for small per-voxel point sets and
masked SmoothL1 for Seal feature regression (docs/method.md §8)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def _count_mask(counts: Tensor, size: int) -> Tensor:
    return torch.arange(size, device=counts.device)[None, :] < counts[:, None]


def chamfer_distance(
    pred: Tensor,
    gt: Tensor,
    gt_counts: Tensor,
    pred_counts: Optional[Tensor] = None,
    chunk_size: int = 20000,
) -> Tensor:
    """Per-voxel Chamfer distance with squared L2 distances.

    Args:
        pred: (N, P, 3) predicted points per voxel.
        gt: (N, G, 3) ground-truth points per voxel, padded; only the first ``gt_counts[i]``
            slots of voxel i are used, so padding never weights a point twice.
        gt_counts: (N,) number of valid ground-truth points per voxel.
        pred_counts: optional (N,) number of valid predictions (default: all P).
        chunk_size: voxels per ``cdist`` chunk, to bound memory.

    Returns:
        (N,) mean over valid predictions of the distance to the nearest valid gt point, plus
        the mean over valid gt points of the distance to the nearest valid prediction. A voxel
        with no valid gt point (or no valid prediction) gets 0.
    """
    if pred.dim() != 3 or gt.dim() != 3 or pred.shape[0] != gt.shape[0] or pred.shape[2] != gt.shape[2]:
        raise ValueError(f"chamfer_distance expects (N, P, D) and (N, G, D), got {tuple(pred.shape)} and {tuple(gt.shape)}")
    if gt_counts.shape != pred.shape[:1]:
        raise ValueError(f"gt_counts must have shape ({pred.shape[0]},), got {tuple(gt_counts.shape)}")
    n, p, _ = pred.shape
    g = gt.shape[1]
    if pred_counts is None:
        pred_counts = torch.full_like(gt_counts, p)
    out = []
    for s in range(0, n, chunk_size):
        pr, gr = pred[s:s + chunk_size], gt[s:s + chunk_size]
        gc, pc = gt_counts[s:s + chunk_size].clamp(0, g), pred_counts[s:s + chunk_size].clamp(0, p)
        d = ((pr[:, :, None, :] - gr[:, None, :, :]) ** 2).sum(-1)  # (n, P, G)
        gvalid = _count_mask(gc, g)  # (n, G)
        pvalid = _count_mask(pc, p)  # (n, P)
        inf = torch.finfo(d.dtype).max
        d_to_gt = d.masked_fill(~gvalid[:, None, :], inf).amin(2)  # (n, P)
        d_to_pred = d.masked_fill(~pvalid[:, :, None], inf).amin(1)  # (n, G)
        ok = (gc > 0) & (pc > 0)
        term_p = torch.where(pvalid, d_to_gt, 0.0).sum(1) / pc.clamp_min(1)
        term_g = torch.where(gvalid, d_to_pred, 0.0).sum(1) / gc.clamp_min(1)
        out.append(torch.where(ok, term_p + term_g, 0.0))
    if not out:
        return pred.new_zeros(0)
    return torch.cat(out)


def masked_smooth_l1(pred: Tensor, target: Tensor, mask: Tensor, beta: float = 1.0) -> Tensor:
    """SmoothL1 averaged over the elements of the rows where ``mask`` is True.

    pred, target (N, C); mask (N,) bool. With no selected row the result is a zero that still
    depends on ``pred`` (so backward works and no NaN appears).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if mask.shape != pred.shape[:1] or mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool of shape ({pred.shape[0]},), got {mask.dtype} {tuple(mask.shape)}")
    if not bool(mask.any()):
        return pred.sum() * 0.0
    return F.smooth_l1_loss(pred[mask], target[mask], beta=beta, reduction="mean")

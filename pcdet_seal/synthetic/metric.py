"""Per-class detection AP, BEV and 3-D (rotated IoU via ``pcdet_seal.ops``), over OpenPCDet-style
result dicts: greedy score-ordered matching per frame, then 40-point interpolated or all-point AP.
"""
from __future__ import annotations

import logging
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from ..ops import boxes_bev_iou, boxes_iou3d
from .labels import CLASS_NAMES

logger = logging.getLogger(__name__)

DEFAULT_IOU_THRESHOLDS: dict[str, float] = {"Vehicle": 0.7, "Pedestrian": 0.5, "Cyclist": 0.5}
IOU_KINDS = ("BEV", "3D")


def match_detections(iou: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy matching of one frame's detections to its gt boxes.

    Detections are visited by descending score (stable for ties); each takes the unmatched gt
    box of highest IoU if that IoU is ``>= threshold``.

    Args:
        iou: (P, G) IoU of detections with gt boxes; scores: (P,).

    Returns:
        (P,) bool, True for a true positive.
    """
    is_tp = np.zeros(len(scores), dtype=bool)
    if iou.shape[1] == 0:
        return is_tp
    free = np.ones(iou.shape[1], dtype=bool)
    for det in np.argsort(-scores, kind="stable"):
        candidates = np.where(free, iou[det], -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= threshold:
            free[best] = False
            is_tp[det] = True
    return is_tp


def average_precision(scores: np.ndarray, is_tp: np.ndarray, num_gt: int,
                      num_recall_points: Optional[int] = 40) -> float:
    """AP from scored detections of one class over all frames.

    Args:
        scores: (P,); is_tp: (P,) bool; num_gt: gt boxes of the class.
        num_recall_points: ``R`` for R-point interpolation (KITTI's R40: the mean over recall
            ``r = 1/R, 2/R, ..., 1`` of the best precision at recall ``>= r``, 0 where none);
            ``None`` for all-point AP (area under the precision envelope, VOC 2010+).

    Returns:
        AP in [0, 1]; NaN when ``num_gt`` is 0.
    """
    if num_gt == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.cumsum(np.asarray(is_tp, dtype=bool)[order])
    fp = np.cumsum(~np.asarray(is_tp, dtype=bool)[order])
    recall = tp / num_gt
    precision = tp / (tp + fp)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at recall >= this point's
    if num_recall_points is None:
        steps = np.diff(np.concatenate([[0.0], recall]))
        return float((steps * envelope).sum())
    thresholds = np.arange(1, num_recall_points + 1) / num_recall_points
    first = np.searchsorted(recall, thresholds - 1e-12, side="left")  # first point reaching each r
    reached = first < len(recall)
    return float(np.where(reached, envelope[np.minimum(first, len(recall) - 1)], 0.0).mean())


def _as_boxes(boxes, count: int) -> np.ndarray:
    """(count, >=7) array-like -> (count, 7) float64 (extra columns such as velocity dropped)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return boxes.reshape(count, -1)[:, 0:7] if count else np.zeros((0, 7))


def _frame_iou(kind: str, det_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    fn = boxes_bev_iou if kind == "BEV" else boxes_iou3d
    det = torch.from_numpy(np.ascontiguousarray(det_boxes[:, 0:7], dtype=np.float64))
    gt = torch.from_numpy(np.ascontiguousarray(gt_boxes[:, 0:7], dtype=np.float64))
    return fn(det, gt).numpy()


def evaluate_ap(det_annos: Sequence[Mapping], gt_annos: Sequence[Mapping],
                class_names: Sequence[str] = CLASS_NAMES,
                iou_thresholds: Optional[Mapping[str, float]] = None,
                num_recall_points: Optional[int] = 40) -> dict[str, float]:
    """Per-class AP, BEV and 3-D, over frames matched by position.

    Args:
        det_annos: per frame ``{"name": (K,) str, "boxes_lidar": (K, 7), "score": (K,)}``,
            OpenPCDet's ``generate_prediction_dicts`` format.
        gt_annos: per frame ``{"gt_names": (M,) str, "gt_boxes": (M, >=7)}``.
            When both dicts of a frame carry ``frame_id``, they must agree.
        class_names: classes to score; boxes of other names are ignored.
        iou_thresholds: per class IoU for a match (default 0.7 / 0.5 / 0.5, shared by BEV and 3-D).
        num_recall_points: see :func:`average_precision` (40 = R40; None = all-point).

    Returns:
        ``{"<class>/AP_BEV", "<class>/AP_3D", "mAP_BEV", "mAP_3D"}`` as floats; a class with no
        gt box gets NaN and is left out of the means.
    """
    if len(det_annos) != len(gt_annos):
        raise ValueError(f"evaluate_ap: {len(det_annos)} detection frames but {len(gt_annos)} gt frames")
    thresholds = {**DEFAULT_IOU_THRESHOLDS, **(iou_thresholds or {})}
    missing = [name for name in class_names if name not in thresholds]
    if missing:
        raise KeyError(f"evaluate_ap: no IoU threshold for classes {missing}")
    collected = {(name, kind): ([], []) for name in class_names for kind in IOU_KINDS}
    num_gt = dict.fromkeys(class_names, 0)
    for frame, (det, gt) in enumerate(zip(det_annos, gt_annos)):
        if "frame_id" in det and "frame_id" in gt and det["frame_id"] != gt["frame_id"]:
            raise ValueError(f"evaluate_ap: frame {frame} pairs detections of {det['frame_id']!r} "
                             f"with gt of {gt['frame_id']!r}")
        det_names, gt_names = np.asarray(det["name"]), np.asarray(gt["gt_names"])
        det_boxes = _as_boxes(det["boxes_lidar"], len(det_names))
        gt_boxes = _as_boxes(gt["gt_boxes"], len(gt_names))
        det_scores = np.asarray(det["score"], dtype=np.float64)
        for name in class_names:
            det_mask, gt_mask = det_names == name, gt_names == name
            num_gt[name] += int(gt_mask.sum())
            for kind in IOU_KINDS:
                iou = _frame_iou(kind, det_boxes[det_mask], gt_boxes[gt_mask])
                is_tp = match_detections(iou, det_scores[det_mask], thresholds[name])
                collected[name, kind][0].append(det_scores[det_mask])
                collected[name, kind][1].append(is_tp)

    results: dict[str, float] = {}
    for kind in IOU_KINDS:
        per_class = []
        for name in class_names:
            scores, is_tp = (np.concatenate(parts) for parts in collected[name, kind])
            ap = average_precision(scores, is_tp, num_gt[name], num_recall_points)
            results[f"{name}/AP_{kind}"] = ap
            if not np.isnan(ap):
                per_class.append(ap)
        results[f"mAP_{kind}"] = float(np.mean(per_class)) if per_class else float("nan")
    logger.debug("AP over %d frames, gt per class %s: %s", len(gt_annos), num_gt, results)
    return results


def format_ap(results: Mapping[str, float]) -> str:
    """Multi-line text table of :func:`evaluate_ap` results."""
    names = [key.split("/")[0] for key in results if key.endswith("/AP_BEV")]
    lines = [f"{'class':<12}{'AP_BEV':>9}{'AP_3D':>9}"]
    lines += [f"{name:<12}{results[f'{name}/AP_BEV']:>9.4f}{results[f'{name}/AP_3D']:>9.4f}" for name in names]
    lines.append(f"{'mean':<12}{results['mAP_BEV']:>9.4f}{results['mAP_3D']:>9.4f}")
    return "\n".join(lines)

"""Greedy NMS of pcdet_seal.ops against a brute-force loop on exact (shapely) IoU."""
import math

import numpy as np
import pytest
import torch

from pcdet_seal.ops import nms, nms_normal, pcdet_nms_gpu, pcdet_nms_normal_gpu

geometry = pytest.importorskip("shapely.geometry", reason="shapely is the IoU reference: pip install shapely")


def rotated_iou(a, b) -> float:
    def polygon(box):
        x, y, _, dx, dy, _, h = box
        c, s = math.cos(h), math.sin(h)
        local = ((dx / 2, dy / 2), (-dx / 2, dy / 2), (-dx / 2, -dy / 2), (dx / 2, -dy / 2))
        return geometry.Polygon([(x + c * u - s * v, y + s * u + c * v) for u, v in local])
    inter = polygon(a).intersection(polygon(b)).area
    return inter / (a[3] * a[4] + b[3] * b[4] - inter)


def axis_aligned_iou(a, b) -> float:
    w = max(0.0, min(a[0] + a[3] / 2, b[0] + b[3] / 2) - max(a[0] - a[3] / 2, b[0] - b[3] / 2))
    h = max(0.0, min(a[1] + a[4] / 2, b[1] + b[4] / 2) - max(a[1] - a[4] / 2, b[1] - b[4] / 2))
    return w * h / (a[3] * a[4] + b[3] * b[4] - w * h)


def brute_force_nms(boxes, scores, thresh, iou_fn, pre_maxsize=None):
    """Textbook greedy NMS: visit by descending score, keep a box unless a kept box overlaps it > thresh."""
    order = np.argsort(-scores, kind="stable")[:pre_maxsize]
    keep = []
    for i in order:
        if all(iou_fn(boxes[i], boxes[k]) <= thresh for k in keep):
            keep.append(i)
    return keep


def clustered_boxes(seed: int, clusters: int = 6, per_cluster: int = 25):
    """Detections piled around a few objects, as a detector head emits them."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-30, 30, (clusters, 2))
    boxes = np.empty((clusters * per_cluster, 7))
    boxes[:, 0:2] = np.repeat(centres, per_cluster, 0) + rng.normal(0, 0.6, (len(boxes), 2))
    boxes[:, 2] = rng.normal(0, 0.2, len(boxes))
    sizes = np.repeat(rng.uniform(0.8, 5.0, (clusters, 3)), per_cluster, 0)
    boxes[:, 3:6] = sizes * rng.uniform(0.8, 1.2, (len(boxes), 3))
    boxes[:, 6] = np.repeat(rng.uniform(-np.pi, np.pi, clusters), per_cluster) + rng.normal(0, 0.3, len(boxes))
    return boxes, rng.random(len(boxes))


@pytest.mark.parametrize("thresh", [0.05, 0.3, 0.7])
@pytest.mark.parametrize("seed", [0, 1])
def test_nms_matches_brute_force(thresh, seed):
    boxes, scores = clustered_boxes(seed)
    keep = nms(torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores), thresh)
    expected = brute_force_nms(boxes, scores, thresh, rotated_iou)
    assert keep.dtype == torch.int64
    assert keep.tolist() == expected
    assert 6 <= len(expected) < len(boxes)  # something was suppressed, every cluster survived


def test_nms_pre_maxsize_and_ties():
    boxes, scores = clustered_boxes(2)
    scores = np.round(scores, 1)  # many ties: order among equal scores is the input order
    keep = nms(torch.tensor(boxes), torch.tensor(scores), 0.2, pre_maxsize=40)
    assert keep.tolist() == brute_force_nms(boxes, scores, 0.2, rotated_iou, pre_maxsize=40)
    kept_scores = scores[keep.numpy()]
    assert (np.diff(kept_scores) <= 0).all()


@pytest.mark.parametrize("thresh", [0.1, 0.5])
def test_nms_normal_matches_brute_force(thresh):
    boxes, scores = clustered_boxes(3)
    keep = nms_normal(torch.tensor(boxes), torch.tensor(scores), thresh)
    assert keep.tolist() == brute_force_nms(boxes, scores, thresh, axis_aligned_iou)


def test_threshold_is_strict():
    # Two unit-offset 2x2 boxes: IoU = 2 / 6 exactly at the threshold keeps both, as nms_gpu (`>`).
    boxes = torch.tensor([[0.0, 0, 0, 2, 2, 1, 0], [1.0, 0, 0, 2, 2, 1, 0]], dtype=torch.float64)
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 1 / 3 + 1e-9).tolist() == [0, 1]
    assert nms(boxes, scores, 1 / 3 - 1e-9).tolist() == [0]


def test_pcdet_signatures():
    boxes, scores = clustered_boxes(4)
    boxes_t, scores_t = torch.tensor(boxes), torch.tensor(scores)
    keep, second = pcdet_nms_gpu(boxes_t, scores_t, thresh=0.3, pre_maxsize=50, post_max_size=10,
                                 NMS_TYPE="nms_gpu", NMS_THRESH=0.3)
    assert second is None
    assert keep.tolist() == nms(boxes_t, scores_t, 0.3, pre_maxsize=50).tolist()
    keep, second = pcdet_nms_normal_gpu(boxes_t, scores_t, 0.3, NMS_PRE_MAXSIZE=4096)
    assert second is None and keep.tolist() == nms_normal(boxes_t, scores_t, 0.3).tolist()


def test_empty_and_bad_input():
    assert nms(torch.zeros(0, 7), torch.zeros(0), 0.5).shape == (0,)
    assert nms(torch.tensor([[0.0, 0, 0, 1, 1, 1, 0]]), torch.tensor([0.3]), 0.5).tolist() == [0]
    with pytest.raises(ValueError, match="scores must be"):
        nms(torch.rand(3, 7), torch.rand(4), 0.5)
    with pytest.raises(ValueError, match=">= 0"):
        nms(torch.rand(3, 7), torch.rand(3), -0.1)

"""The synthetic dataset's AP metric on cases with known answers."""
import math

import numpy as np
import pytest

from pcdet_seal.synthetic import generate_frame
from pcdet_seal.synthetic.metric import average_precision, evaluate_ap, format_ap, match_detections


def box(x=0.0, y=0.0, z=0.0, dx=4.0, dy=2.0, dz=1.5, heading=0.0):
    return [x, y, z, dx, dy, dz, heading]


def dets(names, boxes, scores):
    return {"name": np.array(names), "boxes_lidar": np.array(boxes, dtype=np.float32).reshape(-1, 7),
            "score": np.array(scores, dtype=np.float32)}


def gts(names, boxes):
    return {"gt_names": np.array(names), "gt_boxes": np.array(boxes, dtype=np.float32).reshape(-1, 7)}


@pytest.fixture(scope="module")
def synthetic_gt():
    return [generate_frame(5, index) for index in range(2)]


def perfect(frames):
    return [dets(f["gt_names"], f["gt_boxes"], np.linspace(0.9, 0.1, len(f["gt_names"]))) for f in frames]


@pytest.mark.parametrize("num_recall_points", [40, None])
def test_perfect_predictions_score_one(synthetic_gt, num_recall_points):
    results = evaluate_ap(perfect(synthetic_gt), synthetic_gt, num_recall_points=num_recall_points)
    assert set(results) == {f"{c}/AP_{k}" for c in ("Vehicle", "Pedestrian", "Cyclist") for k in ("BEV", "3D")} \
        | {"mAP_BEV", "mAP_3D"}
    assert all(value == pytest.approx(1.0) for value in results.values())
    assert "Vehicle" in format_ap(results)


def test_shifted_predictions_score_lower(synthetic_gt):
    shifted = perfect(synthetic_gt)
    for frame in shifted:
        boxes = frame["boxes_lidar"]
        boxes[::2, 0] += 0.6 * boxes[::2, 3]  # every other box: BEV IoU <= 0.25 with its gt
    results = evaluate_ap(shifted, synthetic_gt)
    assert 0.0 < results["mAP_BEV"] < 0.9 and 0.0 < results["mAP_3D"] < 0.9


def test_empty_predictions_score_zero(synthetic_gt):
    empty = [dets([], [], []) for _ in synthetic_gt]
    results = evaluate_ap(empty, synthetic_gt)
    assert all(value == 0.0 for value in results.values())


def test_hand_computed_case():
    # Three vehicles; detections by score: exact A (TP), a far-away box (FP), exact B (TP); C missed.
    # precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3.
    gt = [gts(["Vehicle"] * 3, [box(0, 0), box(10, 0), box(20, 0)])]
    det = [dets(["Vehicle"] * 3, [box(0, 0), box(0, 30), box(10, 0)], [0.9, 0.8, 0.7])]
    # R40: recall levels k/40 with k <= 13 reach precision 1, 14 <= k <= 26 reach 2/3, the rest 0.
    r40 = (13 * 1.0 + 13 * 2 / 3) / 40
    # All-point: 1/3 * 1 + 1/3 * 2/3.
    all_point = 1 / 3 + 2 / 9
    results = evaluate_ap(det, gt, class_names=["Vehicle"])
    assert results["Vehicle/AP_BEV"] == pytest.approx(r40) and results["Vehicle/AP_3D"] == pytest.approx(r40)
    results = evaluate_ap(det, gt, class_names=["Vehicle"], num_recall_points=None)
    assert results["Vehicle/AP_BEV"] == pytest.approx(all_point)
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 3) == pytest.approx(r40)


def test_per_class_thresholds_and_classes_kept_apart():
    # A 1 m shift of a 4 x 2 box: BEV IoU 6 / 10 = 0.6 — a match at 0.5, a miss at 0.7.
    gt = [gts(["Pedestrian", "Vehicle"], [box(0, 0), box(10, 10)])]
    det = [dets(["Pedestrian", "Pedestrian"], [box(1, 0), box(10, 10)], [0.9, 0.8])]
    results = evaluate_ap(det, gt)
    assert results["Pedestrian/AP_BEV"] == pytest.approx(1.0)
    assert results["Vehicle/AP_BEV"] == 0.0  # a Pedestrian detection never matches a Vehicle
    assert math.isnan(results["Cyclist/AP_BEV"])  # no Cyclist gt: NaN, left out of the mean
    assert results["mAP_BEV"] == pytest.approx(0.5)
    strict = evaluate_ap(det, gt, iou_thresholds={"Pedestrian": 0.7})
    assert strict["Pedestrian/AP_BEV"] == 0.0


def test_bev_and_3d_differ_on_height():
    # Same footprint, z shifted by half the height: BEV IoU 1, 3-D IoU 1/3.
    gt = [gts(["Vehicle"], [box(0, 0, z=0.0)])]
    det = [dets(["Vehicle"], [box(0, 0, z=0.75)], [0.5])]
    results = evaluate_ap(det, gt, class_names=["Vehicle"])
    assert results["Vehicle/AP_BEV"] == pytest.approx(1.0) and results["Vehicle/AP_3D"] == 0.0


def test_greedy_matching_takes_best_free_gt():
    iou = np.array([[0.8, 0.9], [0.0, 0.95], [0.75, 0.0]])
    # By score: det 0 takes gt 1 (its best); det 1 finds gt 1 taken, gt 0 too poor; det 2 takes gt 0.
    assert match_detections(iou, np.array([0.9, 0.8, 0.7]), 0.7).tolist() == [True, False, True]


def test_mismatched_inputs_raise():
    with pytest.raises(ValueError, match="2 detection frames but 1 gt frames"):
        evaluate_ap([dets([], [], [])] * 2, [gts([], [])])
    det, gt = dets([], [], []), gts([], [])
    det["frame_id"], gt["frame_id"] = "a", "b"
    with pytest.raises(ValueError, match="'a'.*'b'"):
        evaluate_ap([det], [gt])

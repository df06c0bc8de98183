"""Rotated BEV / 3-D IoU of pcdet_seal.ops against exact polygon intersection (shapely)."""
import math

import numpy as np
import pytest
import torch

from pcdet_seal.ops import (
    boxes_bev_iou,
    boxes_bev_overlap,
    boxes_iou3d,
    paired_boxes_bev_overlap,
    paired_boxes_iou3d,
)

geometry = pytest.importorskip("shapely.geometry", reason="shapely is the IoU reference: pip install shapely")


def polygon(box):
    """Shapely rectangle of a 7-DoF box, built independently of the code under test."""
    x, y, _, dx, dy, _, heading = (float(v) for v in box)
    c, s = math.cos(heading), math.sin(heading)
    local = [(dx / 2, dy / 2), (-dx / 2, dy / 2), (-dx / 2, -dy / 2), (dx / 2, -dy / 2)]
    return geometry.Polygon([(x + c * u - s * v, y + s * u + c * v) for u, v in local])


def reference_overlap(a, b) -> float:
    return polygon(a).intersection(polygon(b)).area


def reference_iou3d(a, b) -> float:
    bev = reference_overlap(a, b)
    z_overlap = max(0.0, min(a[2] + a[5] / 2, b[2] + b[5] / 2) - max(a[2] - a[5] / 2, b[2] - b[5] / 2))
    inter = bev * z_overlap
    return inter / (a[3] * a[4] * a[5] + b[3] * b[4] * b[5] - inter)


def random_boxes(rng: np.random.Generator, n: int, spread: float) -> np.ndarray:
    boxes = np.empty((n, 7))
    boxes[:, 0:2] = rng.uniform(-spread, spread, (n, 2))
    boxes[:, 2] = rng.uniform(-1, 1, n)
    boxes[:, 3:6] = rng.uniform(0.3, 6.0, (n, 3))
    boxes[:, 6] = rng.uniform(-2 * np.pi, 2 * np.pi, n)
    return boxes


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 2e-5)])
def test_bev_overlap_and_iou_match_shapely(dtype, tol):
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 60, 6.0), random_boxes(rng, 70, 6.0)
    ref = np.array([[reference_overlap(x, y) for y in b] for x in a])
    assert (ref > 0).mean() > 0.2  # the sample exercises real overlaps

    overlap = boxes_bev_overlap(torch.tensor(a, dtype=dtype), torch.tensor(b, dtype=dtype)).numpy()
    np.testing.assert_allclose(overlap, ref, atol=tol * 36, rtol=tol)

    area_a, area_b = a[:, 3] * a[:, 4], b[:, 3] * b[:, 4]
    ref_iou = ref / (area_a[:, None] + area_b[None, :] - ref)
    iou = boxes_bev_iou(torch.tensor(a, dtype=dtype), torch.tensor(b, dtype=dtype))
    assert iou.dtype == dtype and iou.shape == (60, 70)
    np.testing.assert_allclose(iou.numpy(), ref_iou, atol=tol * 10)


def _box(x=0.0, y=0.0, dx=4.0, dy=2.0, heading=0.0, z=0.0, dz=1.5):
    return [x, y, z, dx, dy, dz, heading]


SQRT2 = math.sqrt(2.0)
SPECIAL_CASES = {
    "identical": (_box(3, -2, 4, 2, 0.7), _box(3, -2, 4, 2, 0.7), 8.0),
    "disjoint": (_box(0, 0), _box(20, 0), 0.0),
    "contained": (_box(0, 0, 4, 2, 0.3), _box(0.2, 0.1, 1, 0.5, 1.1), 0.5),
    "rotated_90_swapped": (_box(1, 1, 4, 2, 0.0), _box(1, 1, 2, 4, math.pi / 2), 8.0),
    "heading_plus_pi": (_box(1, 1, 4, 2, 0.4), _box(1, 1, 4, 2, 0.4 + math.pi), 8.0),
    "touching_edge": (_box(0, 0, 4, 2), _box(4, 0.5, 4, 2), 0.0),
    "touching_corner": (_box(0, 0, 2, 2), _box(2, 2, 2, 2), 0.0),
    "shared_partial_edge": (_box(0, 0, 4, 2), _box(1, 0, 4, 2), 6.0),
    "opposite_shared_edge": (_box(0, 0, 2, 2), _box(1, 2, 2, 2), 0.0),
    "square_vs_45deg": (_box(0, 0, 1, 1, 0.0), _box(0, 0, 1, 1, math.pi / 4), 2 * (SQRT2 - 1)),
    "cross": (_box(0, 0, 6, 1), _box(0, 0, 1, 6), 1.0),
    "rotated_touching_corner": (_box(0, 0, SQRT2, SQRT2, math.pi / 4), _box(2, 0, SQRT2, SQRT2, math.pi / 4), 0.0),
}


@pytest.mark.parametrize("name", sorted(SPECIAL_CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_special_cases_match_hand_values(name, dtype):
    a, b, expected = SPECIAL_CASES[name]
    assert reference_overlap(a, b) == pytest.approx(expected, abs=1e-9)  # the hand value is right
    ta, tb = torch.tensor([a], dtype=dtype), torch.tensor([b], dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert boxes_bev_overlap(ta, tb).item() == pytest.approx(expected, abs=tol)
    assert boxes_bev_overlap(tb, ta).item() == pytest.approx(expected, abs=tol)
    assert paired_boxes_bev_overlap(ta, tb).item() == pytest.approx(expected, abs=tol)
    union = a[3] * a[4] + b[3] * b[4] - expected
    assert boxes_bev_iou(ta, tb).item() == pytest.approx(expected / union, abs=tol)


def test_nearly_parallel_boxes_match_shapely():
    a = np.array([_box(0, 0, 4, 2, 0.0)] * 5)
    b = np.array([_box(0.5, 0.0, 4, 2, angle) for angle in (1e-7, 1e-5, 1e-4, 1e-3, 1e-2)])
    ref = [reference_overlap(x, y) for x, y in zip(a, b)]
    np.testing.assert_allclose(paired_boxes_bev_overlap(torch.tensor(a), torch.tensor(b)).numpy(), ref, atol=1e-9)


def test_iou3d_matches_reference_including_z_disjoint():
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, 40, 5.0), random_boxes(rng, 50, 5.0)
    b[:10, 2] += 10.0  # far above: zero 3-D IoU whatever the BEV overlap
    ref = np.array([[reference_iou3d(x, y) for y in b] for x in a])
    iou = boxes_iou3d(torch.tensor(a), torch.tensor(b)).numpy()
    np.testing.assert_allclose(iou, ref, atol=1e-9)
    assert (iou[:, :10] == 0).all() and (ref[:, 10:] > 0).any()


def test_iou3d_hand_value():
    # Same BEV box, z ranges [0, 2] and [1, 3]: inter 8 * 1, union 16 + 16 - 8.
    a, b = torch.tensor([_box(z=1.0, dz=2.0)]), torch.tensor([_box(z=2.0, dz=2.0)])
    assert boxes_iou3d(a, b).item() == pytest.approx(8.0 / 24.0)
    assert paired_boxes_iou3d(a, b).item() == pytest.approx(8.0 / 24.0)


def test_paired_iou3d_matches_pairwise_diagonal():
    rng = np.random.default_rng(2)
    a, b = random_boxes(rng, 30, 2.0), random_boxes(rng, 30, 2.0)
    paired = paired_boxes_iou3d(torch.tensor(a), torch.tensor(b))
    assert paired.shape == (30,)
    np.testing.assert_allclose(paired.numpy(), boxes_iou3d(torch.tensor(a), torch.tensor(b)).diagonal().numpy())
    np.testing.assert_allclose(paired.numpy(), [reference_iou3d(x, y) for x, y in zip(a, b)], atol=1e-9)


def test_float32_far_from_origin():
    rng = np.random.default_rng(3)
    a, b = random_boxes(rng, 20, 3.0), random_boxes(rng, 20, 3.0)
    a[:, 0] += 700.0
    b[:, 0] += 700.0
    a32, b32 = torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
    # Reference on exactly the float32 inputs.
    ref = [reference_overlap(x, y) for x, y in zip(a32.double().numpy(), b32.double().numpy())]
    np.testing.assert_allclose(paired_boxes_bev_overlap(a32, b32).numpy(), ref, atol=1e-3)


def test_empty_inputs_and_bad_shapes():
    boxes = torch.rand(3, 7) + 0.5
    assert boxes_bev_iou(boxes, boxes[:0]).shape == (3, 0)
    assert boxes_iou3d(boxes[:0], boxes).shape == (0, 3)
    assert paired_boxes_iou3d(boxes[:0], boxes[:0]).shape == (0,)
    with pytest.raises(ValueError, match=r"boxes_b: expected shape \(N, 7\)"):
        boxes_bev_iou(boxes, torch.rand(3, 9))
    with pytest.raises(ValueError, match="equal counts"):
        paired_boxes_iou3d(boxes, boxes[:2])

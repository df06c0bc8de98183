"""points_in_boxes / points_in_boxes_mask of pcdet_seal.ops against a per-point loop."""
import math

import numpy as np
import pytest
import torch

from pcdet_seal.ops import points_in_boxes, points_in_boxes_mask
from pcdet_seal.ops import sweep


def inside(point, box, margin: float) -> bool:
    """OpenPCDet's check_pt_in_box3d, written out for one point and one box."""
    x, y, z = point
    cx, cy, cz, dx, dy, dz, heading = box
    if abs(z - cz) > dz / 2:
        return False
    c, s = math.cos(heading), math.sin(heading)
    local_x = (x - cx) * c + (y - cy) * s
    local_y = -(x - cx) * s + (y - cy) * c
    return abs(local_x) < dx / 2 + margin and abs(local_y) < dy / 2 + margin


def reference_first_box(points, boxes, margin):
    return [next((k for k, box in enumerate(boxes) if inside(p, box, margin)), -1) for p in points]


def scene(seed: int, num_points: int = 1500, num_boxes: int = 25):
    rng = np.random.default_rng(seed)
    boxes = np.empty((num_boxes, 7))
    boxes[:, 0:2] = rng.uniform(-12, 12, (num_boxes, 2))
    boxes[:, 2] = rng.uniform(-0.5, 0.5, num_boxes)
    boxes[:, 3:6] = rng.uniform(0.5, 6.0, (num_boxes, 3))
    boxes[:, 6] = rng.uniform(-np.pi, np.pi, num_boxes)
    points = rng.uniform([-15, -15, -2], [15, 15, 2], (num_points, 3))
    return points, boxes


def test_points_in_boxes_matches_loop_with_overlapping_boxes():
    points, boxes = scene(0)
    out = points_in_boxes(torch.tensor(points), torch.tensor(boxes))
    expected = reference_first_box(points, boxes, 1e-5)
    assert out.dtype == torch.int32 and out.shape == (len(points),)
    assert out.tolist() == expected
    assert sum(k >= 0 for k in expected) > 100
    # Overlaps exist, and the lowest box index wins, as in the CUDA kernel's loop.
    counts = [sum(inside(p, b, 1e-5) for b in boxes) for p in points]
    assert max(counts) >= 2


def test_points_in_boxes_batched():
    batch = [scene(seed, num_points=400, num_boxes=12) for seed in (1, 2, 3)]
    points = torch.tensor(np.stack([p for p, _ in batch]))
    boxes = torch.tensor(np.stack([b for _, b in batch]))
    out = points_in_boxes(points, boxes)
    assert out.shape == (3, 400)
    for k, (p, b) in enumerate(batch):
        assert out[k].tolist() == reference_first_box(p, b, 1e-5)


def test_points_in_boxes_mask_matches_loop():
    points, boxes = scene(4)
    mask = points_in_boxes_mask(torch.tensor(points), torch.tensor(boxes))
    expected = np.array([[inside(p, b, 1e-2) for p in points] for b in boxes], dtype=np.int32)
    assert mask.dtype == torch.int32 and mask.shape == (len(boxes), len(points))
    np.testing.assert_array_equal(mask.numpy(), expected)


def test_margins_and_z_boundary():
    box = torch.tensor([[0.0, 0.0, 1.0, 4.0, 2.0, 2.0, 0.0]])
    points = torch.tensor([
        [2.005, 0.0, 1.0],   # 5 mm outside the x face: inside only with the C++ op's 1 cm margin
        [0.0, 0.0, 2.0],     # exactly on the top face: inside (|z - cz| <= dz / 2)
        [0.0, 0.0, 2.001],   # just above: outside
        [0.0, 0.999, 0.5],   # inside
    ])
    assert points_in_boxes(points, box).tolist() == [-1, 0, -1, 0]
    assert points_in_boxes_mask(points, box).tolist() == [[1, 1, 0, 1]]


def test_chunking_does_not_change_results(monkeypatch):
    points, boxes = scene(5)
    full = points_in_boxes(torch.tensor(points), torch.tensor(boxes))
    monkeypatch.setattr(sweep, "PAIRS_PER_CHUNK", 64)
    assert points_in_boxes(torch.tensor(points), torch.tensor(boxes)).tolist() == full.tolist()


def test_empty_and_bad_input():
    points = torch.rand(10, 3)
    assert points_in_boxes(points, torch.zeros(0, 7)).tolist() == [-1] * 10
    assert points_in_boxes_mask(points, torch.zeros(0, 7)).shape == (0, 10)
    assert points_in_boxes(torch.zeros(2, 0, 3), torch.rand(2, 4, 7)).shape == (2, 0)
    with pytest.raises(ValueError, match="same batch size"):
        points_in_boxes(torch.rand(2, 5, 3), torch.rand(3, 4, 7))
    with pytest.raises(ValueError, match=r"points: expected \(N, 3\)"):
        points_in_boxes_mask(torch.rand(5, 4), torch.rand(2, 7))

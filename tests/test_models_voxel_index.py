"""Point ↔ voxel bookkeeping of the pre-training head: the point → voxel map and the grouping of
the first ≤ G points per voxel in stored order (docs/method.md §8)."""
from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.pcdet
pytest.importorskip("pcdet", reason="needs an importable OpenPCDet (pcdet): pcdet_seal.models imports it")


def test_group_points_takes_the_first_points_in_stored_order():
    from pcdet_seal.models.voxel_index import group_points

    xyz = torch.arange(30, dtype=torch.float32).view(10, 3)
    p2v = torch.tensor([2, 0, -1, 2, 0, 2, 2, 1, -1, 2])
    gt, counts = group_points(xyz, p2v, 4, torch.tensor([2, 0, 3, 1]), max_points=3)
    assert counts.tolist() == [3, 2, 0, 1]
    assert gt[0, :, 0].tolist() == [0.0, 9.0, 15.0]       # points 0, 3, 5 (not 6, 9)
    assert gt[1, :2, 0].tolist() == [3.0, 12.0]            # points 1, 4
    assert gt[3, 0, 0].item() == 21.0                       # point 7


def test_point_to_voxel_matches_voxel_rows_and_marks_outside_points():
    from pcdet_seal.masking.baselines import voxel_centres
    from pcdet_seal.models.voxel_index import point_to_voxel

    pcr, vs, grid = [0.0, 0.0, 0.0, 4.0, 4.0, 2.0], [1.0, 1.0, 1.0], [4, 4, 2]
    points = torch.tensor([[0, 0.5, 0.5, 0.5, 0], [1, 3.5, 0.5, 1.5, 0], [0, 9.0, 0.5, 0.5, 0],
                           [0, 0.7, 0.2, 0.9, 0], [0, 1.5, 2.5, -0.5, 0]])
    coords = torch.tensor([[1, 1, 0, 3], [0, 0, 0, 0]], dtype=torch.int32)  # (b, z, y, x), any row order
    p2v = point_to_voxel(points, coords, pcr, vs, grid)
    assert p2v.tolist() == [1, 0, -1, 1, -1]
    assert voxel_centres(coords, vs, pcr).tolist() == [[3.5, 0.5, 1.5], [0.5, 0.5, 0.5]]

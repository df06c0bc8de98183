"""pcdet_seal.geometry (pure torch, no pcdet): the coordinate join, voxel centres, the point → voxel
map and the grouping of the first ≤ G points per voxel in stored order (docs/method.md §8)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pcdet_seal.geometry import group_points, join_by_coords, point_to_voxel, voxel_centres


def test_geometry_imports_neither_pcdet_nor_spconv():
    # In a fresh interpreter (this one may have imported pcdet for other tests); the environment is
    # inherited, so the subprocess imports the same pcdet_seal as this test.
    code = ("import sys, pcdet_seal.geometry; "
            "bad = sorted(m for m in sys.modules if m == 'pcdet' or m.startswith(('pcdet.', 'spconv'))); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_join_by_coords_matches_a_brute_force_loop():
    g = torch.Generator().manual_seed(0)
    table = torch.unique(torch.randint(-50, 50, (400, 3), generator=g), dim=0)
    table = table[torch.randperm(table.shape[0], generator=g)]
    query = torch.cat([table[torch.randint(0, table.shape[0], (300,), generator=g)],
                       torch.randint(-60, 60, (100, 3), generator=g)])
    index, found = join_by_coords(query, table)
    lookup = {tuple(c): i for i, c in enumerate(table.tolist())}
    for q, i, f in zip(query.tolist(), index.tolist(), found.tolist()):
        assert f == (tuple(q) in lookup)
        if f:
            assert i == lookup[tuple(q)]
    with pytest.raises(ValueError, match=r"1 duplicate coordinates, e\.g\. \[1, 2, 3\]"):
        join_by_coords(query, torch.tensor([[1, 2, 3], [4, 5, 6], [1, 2, 3]]))


def test_voxel_centres():
    c = torch.tensor([[0, 2, 3, 4]])
    xyz = voxel_centres(c, [0.5, 1.0, 2.0], [-10.0, -20.0, -3.0, 0, 0, 0])
    assert xyz.tolist() == [[-10.0 + 4.5 * 0.5, -20.0 + 3.5, -3.0 + 2.5 * 2.0]]


def test_group_points_takes_the_first_points_in_stored_order():
    xyz = torch.arange(30, dtype=torch.float32).view(10, 3)
    p2v = torch.tensor([2, 0, -1, 2, 0, 2, 2, 1, -1, 2])
    gt, counts = group_points(xyz, p2v, 4, torch.tensor([2, 0, 3, 1]), max_points=3)
    assert counts.tolist() == [3, 2, 0, 1]
    assert gt[0, :, 0].tolist() == [0.0, 9.0, 15.0]       # points 0, 3, 5 (not 6, 9)
    assert gt[1, :2, 0].tolist() == [3.0, 12.0]            # points 1, 4
    assert gt[3, 0, 0].item() == 21.0                       # point 7


def test_point_to_voxel_matches_voxel_rows_and_marks_outside_points():
    pcr, vs, grid = [0.0, 0.0, 0.0, 4.0, 4.0, 2.0], [1.0, 1.0, 1.0], [4, 4, 2]
    points = torch.tensor([[0, 0.5, 0.5, 0.5, 0], [1, 3.5, 0.5, 1.5, 0], [0, 9.0, 0.5, 0.5, 0],
                           [0, 0.7, 0.2, 0.9, 0], [0, 1.5, 2.5, -0.5, 0]])
    coords = torch.tensor([[1, 1, 0, 3], [0, 0, 0, 0]], dtype=torch.int32)  # (b, z, y, x), any row order
    p2v = point_to_voxel(points, coords, pcr, vs, grid)
    assert p2v.tolist() == [1, 0, -1, 1, -1]
    assert voxel_centres(coords, vs, pcr).tolist() == [[3.5, 0.5, 1.5], [0.5, 0.5, 0.5]]

"""Teacher cells and per-voxel Seal targets (docs/method.md §2.3, §3) against hand numbers and
brute-force loops."""
from __future__ import annotations

import math

import pytest
import torch

from pcdet_seal.seal.targets import points_to_cells, quantize, teacher_cells, teacher_input, voxel_targets


def _voxelize(xyz: torch.Tensor, batch: torch.Tensor, pc_min, voxel, grid):
    """Test-side DSVT voxelisation: point2voxel (-1 outside) and the number of voxels."""
    idx = torch.floor((xyz - torch.tensor(pc_min)) / torch.tensor(voxel)).long()
    inside = ((idx >= 0) & (idx < torch.tensor(grid))).all(1)
    keys = torch.cat([batch[:, None], idx], 1)
    _, inv = torch.unique(keys[inside], dim=0, return_inverse=True)
    point2voxel = torch.full((xyz.shape[0],), -1, dtype=torch.long)
    point2voxel[inside] = inv
    return point2voxel, int(inv.max()) + 1


def test_cartesian_and_cylindrical_quantisation_by_hand():
    xyz = torch.tensor([[0.33, -0.01, 0.19], [-0.64, 0.95, -2.0], [1.0, 1.0, 0.05], [-1.0, -1e-3, 0.25]])
    assert quantize(xyz[:2], (0.32, 0.32, 0.1875)).tolist() == [[1, -1, 1], [-2, 2, -11]]
    cyl = quantize(xyz[2:], (0.1, 1.0, 0.1), "cylindrical")
    assert cyl.tolist() == [[14, 45, 0], [10, -180, 2]]  # ρ=1.414, φ=45°; φ=-179.94°
    with pytest.raises(ValueError, match="unknown teacher quantisation 'polar'"):
        quantize(xyz, (1, 1, 1), "polar")


def test_teacher_cells_keep_the_first_point_as_representative():
    xyz = torch.tensor([[0.5, 0.5, 0.5], [3.2, 0.1, 0.1], [0.1, 0.9, 0.2], [3.9, 0.9, 0.9],
                        [-0.5, 0.0, 0.0], [0.5, 0.5, 0.5]])
    batch = torch.tensor([0, 0, 0, 0, 0, 1])
    pts = torch.cat([xyz, torch.arange(6.0)[:, None]], 1)  # feature = point index
    cells, feats = teacher_input(pts, batch, (1.0, 1.0, 1.0))
    got = {tuple(c): (int(r), float(f)) for c, r, f in zip(cells.coords.tolist(), cells.representative, feats[:, 0])}
    assert got == {(0, 0, 0, 0): (0, 0.0), (0, 3, 0, 0): (1, 1.0), (0, -1, 0, 0): (4, 4.0), (1, 0, 0, 0): (5, 5.0)}
    assert torch.equal(cells.coords[cells.point2cell][:, 1:], quantize(xyz, (1, 1, 1)))


@pytest.mark.parametrize("mode", ["point_mean", "representative"])
def test_targets_are_the_identity_when_cells_and_voxels_coincide(mode):
    # nuScenes-like: cell = voxel = 0.2 m and pc_min / v is an integer (-51.2/0.2 = -256).
    g = torch.Generator().manual_seed(1)
    voxel, pc_min, grid = (0.2, 0.2, 0.2), (-51.2, -51.2, -5.0), (512, 512, 40)
    cells_idx = torch.randint(-200, 200, (3000, 3), generator=g)
    cells_idx[:, 2] = torch.randint(-20, 10, (3000,), generator=g)
    xyz = (cells_idx.double() + 0.1 + 0.8 * torch.rand(3000, 3, generator=g, dtype=torch.float64)) * 0.2
    batch = torch.randint(0, 2, (3000,), generator=g)
    cells = teacher_cells(xyz, batch, voxel)
    feats = torch.nn.functional.normalize(torch.randn(cells.coords.shape[0], 64, generator=g), dim=1)
    point2voxel, n_vox = _voxelize(xyz, batch, pc_min, voxel, grid)
    target, valid = voxel_targets(feats, cells.point2cell, point2voxel, n_vox, mode, cells.representative)
    assert n_vox == cells.coords.shape[0] and valid.all()
    voxel_of_cell = point2voxel[cells.representative]
    assert torch.equal(target[voxel_of_cell], feats)


def test_point_weighted_mean_and_representative_mode_by_hand():
    # Waymo-like z offset: one voxel holds points of two teacher cells.
    # points: p0, p1 in cell A (feature [1, 0]); p2 in cell B ([0, 1]); p3 in cell B but voxel 1;
    # p4 in cell C ([0.5, 0.5]) outside the grid.
    point2cell = torch.tensor([0, 0, 1, 1, 2])
    point2voxel = torch.tensor([0, 0, 0, 1, -1])
    cell_feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    representative = torch.tensor([0, 3, 4])  # B's first point lies in voxel 1
    target, valid = voxel_targets(cell_feats, point2cell, point2voxel, 3)
    assert torch.allclose(target, torch.tensor([[2 / 3, 1 / 3], [0.0, 1.0], [0.0, 0.0]]))
    assert valid.tolist() == [True, True, False]
    target, valid = voxel_targets(cell_feats, point2cell, point2voxel, 3, "representative", representative)
    assert torch.allclose(target, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    assert valid.tolist() == [True, True, False]
    # a cell absent from the cache (cell_valid False) contributes nothing
    target, valid = voxel_targets(cell_feats, point2cell, point2voxel, 3,
                                  cell_valid=torch.tensor([True, False, True]))
    assert torch.allclose(target, torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]))
    assert valid.tolist() == [True, False, False]
    with pytest.raises(ValueError, match="needs the representative point"):
        voxel_targets(cell_feats, point2cell, point2voxel, 3, "representative")


def test_point_mean_matches_a_brute_force_loop_on_waymo_grids():
    g = torch.Generator().manual_seed(2)
    n = 2000
    xyz = torch.rand(n, 3, generator=g) * torch.tensor([20.0, 20.0, 6.0]) - torch.tensor([10.0, 10.0, 2.0])
    batch = torch.zeros(n, dtype=torch.long)
    v = (0.32, 0.32, 0.1875)
    cells = teacher_cells(xyz, batch, v)
    feats = torch.randn(cells.coords.shape[0], 8, generator=g)
    point2voxel, n_vox = _voxelize(xyz, batch, (-74.88, -74.88, -2.0), v, (468, 468, 32))
    target, valid = voxel_targets(feats, cells.point2cell, point2voxel, n_vox)
    for vox in range(0, n_vox, 37):
        members = (point2voxel == vox).nonzero()[:, 0].tolist()
        expect = sum(feats[cells.point2cell[p]] for p in members) / len(members)
        assert torch.allclose(target[vox], expect, atol=1e-6)
    assert valid.all()
    rep_target, rep_valid = voxel_targets(feats, cells.point2cell, point2voxel, n_vox, "representative",
                                          cells.representative)
    assert 0 < int((~rep_valid).sum()) < n_vox  # voxels with points but no representative


def test_points_to_cells_reduces_a_per_point_teacher_by_mean():
    xyz = torch.tensor([[0.1, 0.1, 0.1], [0.2, 0.3, 0.1], [1.5, 0.1, 0.1]])
    feats = torch.tensor([[1.0, 3.0], [3.0, 5.0], [7.0, 7.0]])
    coords, cell_feats = points_to_cells(xyz, feats, (1.0, 1.0, 1.0))
    got = {tuple(c): f.tolist() for c, f in zip(coords.tolist(), cell_feats)}
    assert coords.dtype == torch.int32
    assert got == {(0, 0, 0): [2.0, 4.0], (1, 0, 0): [7.0, 7.0]}
    assert math.isclose(float(cell_feats.sum()), 20.0)

"""The Table D.8 masking baselines: exact ratios, bands, FPS against a loop."""
import numpy as np
import pytest
import torch

from pcdet_seal.masking import build_masker
from pcdet_seal.geometry import voxel_centres
from pcdet_seal.masking.baselines import farthest_point_sampling

GRID = {"voxel_size": [1.0, 1.0, 0.5], "point_cloud_range": [-60.0, -60.0, -2.0, 60.0, 60.0, 4.0]}


def _coords(n_per_frame, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for b, n in enumerate(n_per_frame):
        flat = torch.randperm(120 * 120 * 12, generator=g)[:n]
        rows.append(torch.stack([torch.full((n,), b), flat // 14400, (flat // 120) % 120, flat % 120], 1))
    return torch.cat(rows)


@pytest.mark.parametrize("name", ["RandomMask", "FPSMask"])
def test_exact_ratio_per_frame_and_valid_only(name):
    coords = _coords([1000, 700])
    valid = torch.rand(1700, generator=torch.Generator().manual_seed(1)) > 0.1
    masker = build_masker({"NAME": name, "MASK_RATIO": 0.6, "NUM_SEEDS": 32}, **GRID)
    mask, st = masker(torch.zeros(1700, 4), coords, valid, torch.Generator().manual_seed(0))
    assert not mask[~valid].any()
    for b in (0, 1):
        nb = int((valid & (coords[:, 0] == b)).sum())
        assert int(mask[coords[:, 0] == b].sum()) == int(nb * 0.6)
    assert st["mask_ratio"] == pytest.approx(float(mask.float().mean()))


def test_range_aware_bands():
    coords = _coords([3000])
    masker = build_masker({"NAME": "RangeAwareMask", "MASK_RATIO": 0.7}, **GRID)
    mask, _ = masker(torch.zeros(3000, 4), coords, None, torch.Generator().manual_seed(0))
    dist = voxel_centres(coords, **{"voxel_size": GRID["voxel_size"], "pc_range": GRID["point_cloud_range"]})[:, :2].norm(dim=1)
    near, mid, far = dist < 30, (dist >= 30) & (dist < 50), dist >= 50
    assert near.sum() > 100 and mid.sum() > 100 and far.sum() > 100
    assert int(mask[near].sum()) == int(int(near.sum()) * 0.7)
    assert int(mask[mid].sum()) == int(int(mid.sum()) * 0.5)
    assert int(mask[far].sum()) == int(int(far.sum()) * 0.5)


def test_fps_matches_loop():
    pts = torch.rand(300, 3, generator=torch.Generator().manual_seed(0))
    idx = farthest_point_sampling(pts, 20, torch.Generator().manual_seed(5)).tolist()
    p = pts.numpy().astype(np.float64)
    ref = [idx[0]]
    closest = np.full(300, np.inf)
    for _ in range(19):
        closest = np.minimum(closest, ((p - p[ref[-1]]) ** 2).sum(1))
        ref.append(int(closest.argmax()))
    assert idx == ref


def test_fps_masks_whole_regions():
    coords = _coords([2000])
    masker = build_masker({"NAME": "FPSMask", "MASK_RATIO": 0.5, "NUM_SEEDS": 40}, **GRID)
    mask, _ = masker(torch.zeros(2000, 4), coords, None, torch.Generator().manual_seed(3))
    xyz = voxel_centres(coords, GRID["voxel_size"], GRID["point_cloud_range"])
    # Masked voxels come in spatial groups: among the 8 nearest neighbours of a masked voxel,
    # most are masked too, unlike for a random mask of the same size (about half).
    def neighbours_masked(sel):
        d = torch.cdist(xyz, xyz)
        d.fill_diagonal_(float("inf"))
        nn = d.topk(8, largest=False).indices
        return float(sel[nn[sel]].float().mean())
    rnd = torch.zeros(2000, dtype=torch.bool)
    rnd[torch.randperm(2000, generator=torch.Generator().manual_seed(0))[:1000]] = True
    assert neighbours_masked(mask) > 0.7
    assert neighbours_masked(rnd) < 0.6


def test_missing_grid_is_named():
    with pytest.raises(ValueError, match="VOXEL_SIZE"):
        build_masker({"NAME": "RangeAwareMask"})


def test_bad_ratio_is_named():
    with pytest.raises(ValueError, match="MASK_RATIO"):
        build_masker({"NAME": "RandomMask", "MASK_RATIO": 1.5})

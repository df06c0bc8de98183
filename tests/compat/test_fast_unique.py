"""The dynamic VFEs' ``torch.unique(..., dim=0)`` on 1-D keys: same results as torch's own call."""
from __future__ import annotations

import importlib

import pytest
import torch

from pcdet_seal import compat
from pcdet_seal.compat.fast_unique import FLAT_UNIQUE_USERS, flat_unique, torch_with_flat_unique


@pytest.mark.parametrize("n, high", [(0, 5), (1, 5), (500, 40), (14000, 200000)])
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_flat_unique_equals_unique_dim_on_1d_keys(n, high, dtype):
    keys = torch.randint(0, high, (n,), generator=torch.Generator().manual_seed(n), dtype=torch.int64).to(dtype)
    for kwargs in ({}, {"return_inverse": True}, {"return_counts": True},
                   {"return_inverse": True, "return_counts": True}):
        expected = torch.unique(keys, dim=0, **kwargs)
        got = flat_unique(keys, dim=0, **kwargs)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.dtype == e.dtype and torch.equal(g, e)


def test_other_calls_pass_through_unchanged():
    rows = torch.tensor([[1, 2], [0, 5], [1, 2]])
    values, inverse = flat_unique(rows, return_inverse=True, dim=0)  # 2-D: rows stay rows
    assert torch.equal(values, torch.tensor([[0, 5], [1, 2]])) and torch.equal(inverse, torch.tensor([1, 0, 1]))
    flat = torch.tensor([3, 1, 3])
    assert torch.equal(flat_unique(flat), torch.tensor([1, 3]))
    assert torch_with_flat_unique.arange is torch.arange and torch_with_flat_unique.Tensor is torch.Tensor


def test_cpu_mode_gives_the_dynamic_vfes_the_flat_unique():
    if not compat.cpu_mode_enabled():
        pytest.skip("CPU mode is off in this session (a CUDA device exists)")
    for name in FLAT_UNIQUE_USERS:
        module = importlib.import_module(name)
        assert module.torch is torch_with_flat_unique, name
        assert module.torch.unique is flat_unique


def test_dynamic_voxel_vfe_output_unchanged_by_the_flat_unique():
    """The stock DynamicVoxelVFE gives identical voxels and features with either unique."""
    if not compat.cpu_mode_enabled():
        pytest.skip("CPU mode is off in this session (a CUDA device exists)")
    from easydict import EasyDict

    module = importlib.import_module("pcdet.models.backbones_3d.vfe.dynamic_voxel_vfe")
    cfg = EasyDict(WITH_DISTANCE=False, USE_ABSLOTE_XYZ=True, USE_NORM=True, NUM_FILTERS=[16, 16])
    generator = torch.Generator().manual_seed(0)
    points = torch.cat([torch.randint(0, 2, (3000, 1), generator=generator).float(),
                        torch.rand(3000, 3, generator=generator) * torch.tensor([12.8, 12.8, 6.0])
                        - torch.tensor([6.4, 6.4, 2.0]), torch.rand(3000, 1, generator=generator)], dim=1)
    outputs = []
    for namespace in (torch, torch_with_flat_unique):
        torch.manual_seed(0)
        vfe = module.DynamicVoxelVFE(cfg, num_point_features=4, voxel_size=[0.4, 0.4, 0.375],
                                     grid_size=[32, 32, 16], point_cloud_range=[-6.4, -6.4, -2.0, 6.4, 6.4, 4.0]).eval()
        saved = module.torch
        module.torch = namespace
        try:
            out = vfe({"points": points.clone(), "batch_size": 2})
        finally:
            module.torch = saved
        outputs.append((out["voxel_features"], out["voxel_coords"]))
    assert outputs[0][0].shape[0] > 100
    assert torch.equal(outputs[0][1], outputs[1][1])
    assert torch.equal(outputs[0][0], outputs[1][0])

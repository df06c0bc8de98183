"""Synthetic feature sets shared by the masking tests (tests/masking/)."""
from __future__ import annotations

import torch


def blob_features(n: int, k: int = 8, dim: int = 64, seed: int = 0, spreads=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-norm features around ``k`` random unit centres, cluster i with noise ``spreads[i]``.

    Returns features (n, dim) float32 and the true cluster of every row (n,).
    """
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(k, dim, generator=g), dim=1)
    truth = torch.arange(n) % k
    if spreads is None:
        spreads = torch.linspace(0.02, 0.3, k)
    spreads = torch.as_tensor(spreads, dtype=torch.float32)
    feats = centres[truth] + spreads[truth, None] * torch.randn(n, dim, generator=g)
    return torch.nn.functional.normalize(feats, dim=1), truth


def coords_for(n_per_frame: list[int]) -> torch.Tensor:
    """(N, 4) [b, z, y, x] voxel indices for frames of the given sizes, distinct per frame."""
    rows = []
    for b, n in enumerate(n_per_frame):
        idx = torch.arange(n)
        rows.append(torch.stack([torch.full_like(idx, b), idx % 7, (idx // 7) % 50, idx // 350], 1))
    return torch.cat(rows)

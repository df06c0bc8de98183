"""The native torch_scatter stand-in against per-group loops (torch_scatter's documented semantics)."""
from __future__ import annotations

import pytest
import torch

from pcdet_seal.compat.scatter import scatter_max, scatter_mean


def _groups(seed: int, n: int = 200, groups: int = 37, channels: int = 5):
    generator = torch.Generator().manual_seed(seed)
    src = torch.randn(n, channels, generator=generator)
    index = torch.randint(0, groups, (n,), generator=generator)
    index[index == 3] = 4  # group 3 empty
    return src, index, groups


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scatter_mean_matches_group_means(seed):
    src, index, groups = _groups(seed)
    out = scatter_mean(src, index, dim=0, dim_size=groups)
    for g in range(groups):
        rows = src[index == g]
        expected = rows.mean(0) if len(rows) else torch.zeros(src.shape[1])
        torch.testing.assert_close(out[g], expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scatter_max_matches_group_max_and_first_argmax(seed):
    src, index, groups = _groups(seed)
    src[5] = src[6]
    index[5] = index[6]  # a tie: the first row must win
    values, argmax = scatter_max(src, index, dim=0, dim_size=groups)
    for g in range(groups):
        rows = torch.nonzero(index == g).flatten()
        if len(rows) == 0:
            assert torch.all(values[g] == 0) and torch.all(argmax[g] == src.shape[0])
            continue
        best, position = src[rows].max(0)
        torch.testing.assert_close(values[g], best)
        for c in range(src.shape[1]):
            first = rows[(src[rows, c] == best[c]).nonzero()[0, 0]]
            assert argmax[g, c] == first


def test_default_size_and_gradients_flow():
    src = torch.randn(6, 3, requires_grad=True)
    index = torch.tensor([0, 0, 2, 2, 2, 1])
    out = scatter_mean(src, index) + scatter_max(src, index)[0]
    assert out.shape == (3, 3)
    out.sum().backward()
    assert src.grad is not None and torch.isfinite(src.grad).all()


def test_unsupported_calls_say_what():
    with pytest.raises(NotImplementedError, match="dim=0 only"):
        scatter_mean(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), dim=1)
    with pytest.raises(ValueError, match="index must be"):
        scatter_max(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))

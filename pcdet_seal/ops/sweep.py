"""Broad phase shared by the box ops: index pairs of discs that touch, by a sweep along x."""
from __future__ import annotations

from typing import Iterator, Optional

import torch
from torch import Tensor

PAIRS_PER_CHUNK = 1 << 22


def close_pairs(centre_a: Tensor, radius_a: Tensor, centre_b: Tensor, radius_b: Tensor,
                pairs_per_chunk: Optional[int] = None) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield chunks of index pairs (i, j) with ``|centre_a[i] - centre_b[j]| <= radius_a[i] + radius_b[j]``.

    Sorting b by x and a ``searchsorted`` window per row of a keep the work near the number
    of pairs whose x-extents overlap instead of N × M.

    Args:
        centre_a: (N, 2), radius_a: (N,), centre_b: (M, 2), radius_b: (M,), same device.
        pairs_per_chunk: about how many window pairs one chunk holds (bounds memory);
            default ``PAIRS_PER_CHUNK``.

    Yields:
        (i, j) int64 tensors; i ascending across and within chunks, j unordered within a row.
    """
    if centre_a.shape[0] == 0 or centre_b.shape[0] == 0:
        return
    device = centre_a.device
    pairs_per_chunk = pairs_per_chunk or PAIRS_PER_CHUNK
    x_b, order_b = torch.sort(centre_b[:, 0])
    reach = radius_a + radius_b.max()
    first = torch.searchsorted(x_b, (centre_a[:, 0] - reach).contiguous())
    count = torch.searchsorted(x_b, (centre_a[:, 0] + reach).contiguous(), right=True) - first
    starts = torch.cumsum(count, 0) - count
    chunk_of_row = (starts // pairs_per_chunk).cpu()
    change = (torch.nonzero(chunk_of_row[1:] != chunk_of_row[:-1]).flatten() + 1).tolist()
    bounds = [0] + change + [centre_a.shape[0]]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        row_count = count[lo:hi]
        i = torch.repeat_interleave(torch.arange(lo, hi, device=device), row_count)
        row_start = torch.repeat_interleave(starts[lo:hi] - starts[lo], row_count)
        offset = torch.arange(i.shape[0], device=device) - row_start
        j = order_b.index_select(0, first.index_select(0, i) + offset)
        dist2 = ((centre_a.index_select(0, i) - centre_b.index_select(0, j)) ** 2).sum(1)
        close = dist2 <= (radius_a.index_select(0, i) + radius_b.index_select(0, j)) ** 2
        yield i[close], j[close]

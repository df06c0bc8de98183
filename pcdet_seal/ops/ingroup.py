"""Rank of each element inside its group (DSVT's window/set indices), sort-based and vectorised."""
from __future__ import annotations

import torch
from torch import Tensor


def ingroup_inds(group_ids: Tensor) -> Tensor:
    """Index of every element within its group.

    Args:
        group_ids: (N,) int64 group id of each element (any integers, on any device).

    Returns:
        (N,) int64 on the same device: ``out[i]`` = number of elements ``j`` of the same group
        that come before ``i`` in a stable order, i.e. group members are numbered 0, 1, …
        in their original order. OpenPCDet's CUDA op numbers them in an arbitrary (atomic)
        order; any order is a valid answer there, this one is deterministic.
    """
    if group_ids.dim() != 1:
        raise ValueError(f"ingroup_inds: group_ids must be 1-D (N,), got shape {tuple(group_ids.shape)}")
    n = group_ids.numel()
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=group_ids.device)
    order = torch.argsort(group_ids, stable=True)
    sorted_ids = group_ids[order]
    position = torch.arange(n, dtype=torch.int64, device=group_ids.device)
    is_start = torch.ones(n, dtype=torch.bool, device=group_ids.device)
    is_start[1:] = sorted_ids[1:] != sorted_ids[:-1]
    group_start = torch.cummax(torch.where(is_start, position, torch.zeros_like(position)), dim=0).values
    out = torch.empty_like(position)
    out[order] = position - group_start
    return out

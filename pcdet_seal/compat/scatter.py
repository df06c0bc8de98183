"""Native ``scatter_reduce`` versions of the ``torch_scatter`` calls OpenPCDet's dynamic VFEs make.

``DynamicVoxelVFE`` / ``DynamicPillarVFE`` / ``DynamicMeanVFE`` call
``torch_scatter.scatter_mean(src, index, dim=0)`` and ``torch_scatter.scatter_max(src, index,
dim=0)``; torch_scatter is a 7-minute source build on CPU, so where it is missing these modules
get :data:`torch_scatter_shim` under that name (in their own namespace only).
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

import torch
from torch import Tensor


def _check(src: Tensor, index: Tensor, dim: int, op: str) -> None:
    if dim != 0:
        raise NotImplementedError(f"pcdet-seal's torch_scatter stand-in: {op} supports dim=0 only, got dim={dim}")
    if index.dim() != 1 or index.shape[0] != src.shape[0]:
        raise ValueError(f"{op}: index must be ({src.shape[0]},) to match src {tuple(src.shape)}, "
                         f"got {tuple(index.shape)}")


def _size(index: Tensor, dim_size: Optional[int]) -> int:
    if dim_size is not None:
        return dim_size
    return int(index.max()) + 1 if index.numel() else 0


def _expand(index: Tensor, src: Tensor) -> Tensor:
    return index.long().view(-1, *([1] * (src.dim() - 1))).expand_as(src)


def scatter_mean(src: Tensor, index: Tensor, dim: int = 0, out: Optional[Tensor] = None,
                 dim_size: Optional[int] = None) -> Tensor:
    """Row means of ``src`` grouped by ``index`` along dim 0: (N, ...) -> (dim_size, ...); empty rows 0."""
    _check(src, index, dim, "scatter_mean")
    if out is not None:
        raise NotImplementedError("pcdet-seal's torch_scatter stand-in: scatter_mean(out=...) is not supported")
    size = _size(index, dim_size)
    result = src.new_zeros((size, *src.shape[1:]))
    return result.scatter_reduce(0, _expand(index, src), src, reduce="mean", include_self=False)


def scatter_max(src: Tensor, index: Tensor, dim: int = 0, out: Optional[Tensor] = None,
                dim_size: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """Row maxima and their argmax, as ``torch_scatter.scatter_max`` along dim 0.

    Returns ``(values, argmax)``: empty rows hold 0 and argmax ``src.shape[0]``, as there;
    ties take the first row.
    """
    _check(src, index, dim, "scatter_max")
    if out is not None:
        raise NotImplementedError("pcdet-seal's torch_scatter stand-in: scatter_max(out=...) is not supported")
    size = _size(index, dim_size)
    expanded = _expand(index, src)
    values = src.new_zeros((size, *src.shape[1:])).scatter_reduce(
        0, expanded, src, reduce="amax", include_self=False)
    rows = torch.arange(src.shape[0], device=src.device).view(-1, *([1] * (src.dim() - 1))).expand_as(src)
    candidates = torch.where(src == values.gather(0, expanded), rows, src.shape[0])
    argmax = torch.full(values.shape, src.shape[0], dtype=torch.long, device=src.device)
    argmax = argmax.scatter_reduce(0, expanded, candidates, reduce="amin", include_self=True)
    return values, argmax


torch_scatter_shim = SimpleNamespace(
    scatter_mean=scatter_mean,
    scatter_max=scatter_max,
    __doc__="pcdet-seal stand-in for torch_scatter (scatter_mean, scatter_max along dim 0)",
)

# OpenPCDet modules that ``import torch_scatter`` inside ``try/except`` and call it at run time.
TORCH_SCATTER_USERS: tuple[str, ...] = (
    "pcdet.models.backbones_3d.vfe.dynamic_voxel_vfe",
    "pcdet.models.backbones_3d.vfe.dynamic_pillar_vfe",
    "pcdet.models.backbones_3d.vfe.dynamic_mean_vfe",
)

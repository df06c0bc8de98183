"""``torch.unique(x, dim=0)`` of a 1-D CPU tensor through torch's flat (sort-based) path.

OpenPCDet's dynamic VFEs (``DynamicVoxelVFE``, ``DynamicPillarVFE``) fold each point's voxel
coordinates into one integer key and call ``torch.unique(keys, return_inverse=True,
return_counts=True, dim=0)`` on that 1-D tensor. With ``dim`` given, torch's CPU kernel compares
rows one by one (``unique_dim``): 22 ms for 14 000 keys against 0.7 ms for the same call without
``dim``, 20-40 ms of a 0.5-0.65 s tiny-config CPU training step (bench/RESULTS.md). For a 1-D
tensor the two calls return the same sorted values, inverse indices and counts, so these modules
get :data:`torch_with_flat_unique` under the name ``torch`` (in their own namespace only): every
attribute is torch's, except ``unique``, which drops ``dim=0`` for 1-D CPU tensors and passes
every other call through unchanged.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

import torch

#: the modules whose ``torch.unique(..., dim=0)`` runs on 1-D keys
FLAT_UNIQUE_USERS: tuple[str, ...] = (
    "pcdet.models.backbones_3d.vfe.dynamic_voxel_vfe",
    "pcdet.models.backbones_3d.vfe.dynamic_pillar_vfe",
)


def flat_unique(input: torch.Tensor, *args: Any, **kwargs: Any) -> Any:  # noqa: A002 - torch's parameter name
    """``torch.unique`` with ``dim=0`` dropped for a 1-D CPU tensor (same results, flat kernel)."""
    dim = kwargs.get("dim")
    if (dim in (0, -1) and not args and isinstance(input, torch.Tensor) and input.dim() == 1
            and input.device.type == "cpu" and kwargs.get("sorted", True)):
        kwargs = {k: v for k, v in kwargs.items() if k != "dim"}
        kwargs["sorted"] = True
        return torch.unique(input, **kwargs)
    return torch.unique(input, *args, **kwargs)


class _TorchWithFlatUnique(ModuleType):
    """``torch`` itself for every attribute but ``unique``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


torch_with_flat_unique = _TorchWithFlatUnique("torch")
torch_with_flat_unique.unique = flat_unique  # type: ignore[attr-defined]
torch_with_flat_unique.__doc__ = "torch, with unique(..., dim=0) of 1-D CPU tensors on the flat kernel (pcdet-seal)"


def give_flat_unique(module: ModuleType) -> None:
    """Let ``module``'s ``torch.unique`` use :func:`flat_unique` (its other ``torch.*`` stay torch's)."""
    if module.__dict__.get("torch") is torch:
        module.torch = torch_with_flat_unique  # type: ignore[attr-defined]

"""Device handling for CPU mode: ``.cuda()`` as a no-op where no CUDA device exists."""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch

NOOP_FLAG = "__pcdet_seal_cuda_noop__"


def _identity_cuda(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def cuda(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self

    setattr(cuda, NOOP_FLAG, True)
    cuda.__pcdet_seal_original__ = original  # type: ignore[attr-defined]
    return cuda


def make_cuda_a_noop() -> bool:
    """``Tensor.cuda()`` / ``Module.cuda()`` return the object unchanged; only without a CUDA device.

    OpenPCDet calls ``.cuda()`` unconditionally (``DynamicVoxelVFE.__init__``, ``CenterHead``,
    ``load_data_to_gpu``, ``tools/train.py``). Returns False (and changes nothing) where CUDA exists.
    """
    if torch.cuda.is_available():
        return False
    for owner in (torch.Tensor, torch.nn.Module):
        if not getattr(owner.cuda, NOOP_FLAG, False):
            owner.cuda = _identity_cuda(owner.cuda)  # type: ignore[method-assign]
    return True

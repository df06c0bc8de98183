"""Fixes for OpenPCDet 0.6.0 on current PyTorch; they apply on GPU too (at plugin registration).

* ``Stage_ReductionAtt_Block`` (DSVT's attention pooling) passes an ``int`` ``key_padding_mask``
  that ``nn.MultiheadAttention`` rejects since torch 2.x (``only bool and floating types``).
* ``torch.load`` defaults to ``weights_only=True`` since torch 2.6, and OpenPCDet checkpoints
  carry numpy scalars (the one-cycle scheduler writes ``np.float64`` learning rates and momenta
  into the optimizer state), so ``test.py`` / ``--ckpt`` cannot load what ``train.py`` saved.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Optional

import numpy as np
import torch

logger = logging.getLogger(__name__)

DSVT_MODULE = "pcdet.models.backbones_3d.dsvt"
MASK_FIX_FLAG = "__pcdet_seal_bool_mask__"


def bool_key_padding_mask(mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """An integer mask as bool (nonzero = padded); bool and float masks unchanged."""
    if mask is None or mask.dtype == torch.bool or mask.dtype.is_floating_point:
        return mask
    return mask.bool()


def _forward_with_bool_mask(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def forward(self: torch.nn.Module, x: torch.Tensor, key_padding_mask: Optional[torch.Tensor]) -> Any:
        return original(self, x, bool_key_padding_mask(key_padding_mask))

    setattr(forward, MASK_FIX_FLAG, True)
    forward.__pcdet_seal_original__ = original  # type: ignore[attr-defined]
    return forward


def fix_dsvt_key_padding_mask(dsvt_module: Any) -> bool:
    """Wrap ``Stage_ReductionAtt_Block.forward`` to cast its mask; parameters and state dict unchanged."""
    block = getattr(dsvt_module, "Stage_ReductionAtt_Block", None)
    if block is None:
        raise AttributeError(f"{dsvt_module.__name__} has no Stage_ReductionAtt_Block: "
                             "the DSVT mask fix targets OpenPCDet 0.6.0's dsvt.py")
    if getattr(block.forward, MASK_FIX_FLAG, False):
        return False
    block.forward = _forward_with_bool_mask(block.forward)
    return True


def _numpy_scalar_globals() -> list[Any]:
    """What unpickling numpy scalars needs, under numpy 1 and numpy 2 names."""
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    allowed: list[Any] = [np.dtype, (scalar, "numpy.core.multiarray.scalar"),
                          (scalar, "numpy._core.multiarray.scalar")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in ("Float16DType", "Float32DType", "Float64DType", "Int8DType", "Int16DType",
                     "Int32DType", "Int64DType", "UInt8DType", "UInt16DType", "UInt32DType",
                     "UInt64DType", "BoolDType"):
            dtype_class = getattr(dtypes, name, None)
            if dtype_class is not None:
                allowed.append(dtype_class)
    return allowed


def allow_numpy_scalars_in_torch_load() -> bool:
    """Let ``torch.load(weights_only=True)`` read numpy scalars; everything else stays refused.

    Uses ``torch.serialization.add_safe_globals`` (torch >= 2.4); returns False where torch has
    no weights-only default to work around.
    """
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:
        return False
    wanted = _numpy_scalar_globals()
    present = torch.serialization.get_safe_globals()
    missing = [entry for entry in wanted if entry not in present]
    if not missing:
        return False
    add_safe_globals(missing)
    return True

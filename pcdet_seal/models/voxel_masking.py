"""The masking step of pre-training as a parameter-free module: ``MODEL.MASKING`` → ``mae_mask``."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from pcdet_seal.masking import build_masker


class VoxelMasking(nn.Module):
    """Wraps a ``pcdet_seal.masking`` masker (I2Mask or a Table D.8 baseline).

    Reads ``seal_target`` (N_v, C_t), ``seal_valid`` (N_v,), ``voxel_coords`` (N_v, 4); writes
    ``mae_mask`` (N_v,) bool (True = masked) and ``mask_stats`` (python values). Training draws a
    fresh generator seed from torch's global RNG (so OpenPCDet's ``--fix_random_seed`` governs
    it); evaluation uses ``EVAL_SEED`` (default 0) so reconstructions are reproducible.
    """

    def __init__(self, model_cfg: Any, voxel_size: Sequence[float], point_cloud_range: Sequence[float],
                 **kwargs: Any) -> None:
        super().__init__()
        self.model_cfg = model_cfg
        self.masker = build_masker(model_cfg, voxel_size=list(voxel_size),
                                   point_cloud_range=list(point_cloud_range))
        self.eval_seed = int(model_cfg.get("EVAL_SEED", 0))

    def forward(self, batch_dict: dict) -> dict:
        target = batch_dict["seal_target"]
        seed = int(torch.randint(0, 2 ** 62, (1,)).item()) if self.training else self.eval_seed
        generator = torch.Generator(device=target.device)
        generator.manual_seed(seed)
        mask, stats = self.masker(target, batch_dict["voxel_coords"], batch_dict["seal_valid"], generator,
                                  frame_ids=batch_dict.get("frame_id"))
        batch_dict["mae_mask"] = mask.to(target.device)
        batch_dict["mask_stats"] = stats
        return batch_dict

    def extra_repr(self) -> str:
        return f"masker={type(self.masker).__name__}"

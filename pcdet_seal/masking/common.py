"""Helpers shared by the maskers: config access, the per-frame loop, group sampling."""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Optional

import torch
from torch import Tensor


def cfg_get(cfg: Mapping[str, Any], key: str, default: Any) -> Any:
    """``cfg[key]`` if present (EasyDict or dict), else ``default``."""
    return cfg[key] if key in cfg else default


def frame_slices(voxel_coords: Tensor, valid: Tensor) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(batch_index, rows)`` per frame; ``rows`` (n_b,) indexes that frame's valid voxels.

    Frames with no valid voxel are skipped. ``voxel_coords`` (N, 4) is [b, z, y, x].
    """
    if voxel_coords.dim() != 2 or voxel_coords.shape[1] != 4:
        raise ValueError(f"voxel_coords must be (N, 4) [b, z, y, x], got shape {tuple(voxel_coords.shape)}")
    if valid.shape != voxel_coords.shape[:1] or valid.dtype != torch.bool:
        raise ValueError(
            f"valid must be a bool tensor of shape ({voxel_coords.shape[0]},), "
            f"got {valid.dtype} {tuple(valid.shape)}"
        )
    batch = voxel_coords[:, 0].long()
    for b in torch.unique(batch[valid]).tolist():
        yield int(b), torch.nonzero((batch == b) & valid).flatten()


def sample_in_groups(groups: Tensor, quota: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Pick ``quota[g]`` members of every group ``g`` uniformly at random, without replacement.

    Args:
        groups: (n,) int64 group id of each element, in [0, G).
        quota: (G,) int64 number to pick per group (clamped to the group size).
        generator: random source on the device of ``groups``.

    Returns:
        (n,) bool, True for the picked elements. Vectorised: one random key per element, a
        sort by (group, key) and a rank within the group.
    """
    n = groups.shape[0]
    device = groups.device
    if n == 0:
        return torch.zeros(0, dtype=torch.bool, device=device)
    keys = torch.rand(n, generator=generator, device=device)
    order = torch.argsort(keys)
    order = order[torch.argsort(groups[order], stable=True)]
    counts = torch.bincount(groups, minlength=quota.shape[0])
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.long, device=device)
    rank[order] = torch.arange(n, device=device) - starts[groups[order]]
    return rank < quota[groups]


def _python_stats(stats: dict) -> dict:
    """Tensors (and lists of tensors) → python lists; per-voxel ``labels`` are dropped."""
    out = {}
    for key, value in stats.items():
        if key == "labels":
            continue
        if isinstance(value, Tensor):
            out[key] = value.tolist()
        elif isinstance(value, list) and value and isinstance(value[0], Tensor):
            out[key] = [v.tolist() for v in value]
        else:
            out[key] = value
    return out


class FrameMasker:
    """Base of every masker: runs :meth:`mask_rows` once per frame on its valid voxels.

    ``__call__`` is the masking interface of ``pcdet_seal.masking``; the stats hold the realised
    ratio over all voxels and, per frame, ``batch_index``, ``n`` (valid voxels), ``n_voxels``,
    ``n_masked``, ``mask_ratio`` plus what :meth:`mask_rows` reports, as python values.
    """

    def mask_rows(self, features: Tensor, coords: Tensor, generator: Optional[torch.Generator]) -> tuple[Tensor, dict]:
        """Mask one frame's valid voxels: features (n, C), coords (n, 4) → (n,) bool and stats."""
        raise NotImplementedError

    def __call__(
        self,
        features: Tensor,
        voxel_coords: Tensor,
        valid: Optional[Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> tuple[Tensor, dict]:
        """features (N, C), voxel_coords (N, 4) [b, z, y, x], valid (N,) bool → mask (N,) bool, stats."""
        n = voxel_coords.shape[0]
        if valid is None:
            valid = torch.ones(n, dtype=torch.bool, device=voxel_coords.device)
        mask = torch.zeros(n, dtype=torch.bool, device=voxel_coords.device)
        frames = []
        for b, rows in frame_slices(voxel_coords, valid):
            frame_mask, st = self.mask_rows(features[rows], voxel_coords[rows], generator)
            mask[rows] = frame_mask
            n_voxels = int((voxel_coords[:, 0] == b).sum())
            n_masked = int(frame_mask.sum())
            frames.append({**_python_stats(st), "batch_index": b, "n": int(rows.numel()), "n_voxels": n_voxels,
                           "n_masked": n_masked, "mask_ratio": n_masked / n_voxels})
        return mask, {"mask_ratio": float(mask.sum()) / max(n, 1), "frames": frames}

"""Helpers shared by the maskers: config access and validation, the per-frame loop, group
sampling, stochastic rounding."""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterator, Mapping, Optional, Sequence

import torch
from torch import Tensor

#: Prefix of every masking config key in messages (the detector's ``MODEL.MASKING`` block).
KEY_PREFIX = "MODEL.MASKING."


class NonFiniteFeaturesError(ValueError):
    """A frame handed to a masker has NaN/inf features (a diverged or corrupt teacher)."""


def cfg_get(cfg: Mapping[str, Any], key: str, default: Any) -> Any:
    """``cfg[key]`` if present (EasyDict or dict), else ``default``."""
    return cfg[key] if key in cfg else default


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def cfg_int(cfg: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    """An integer config value ≥ ``minimum``; raises ValueError naming ``MODEL.MASKING.<key>``."""
    value = cfg_get(cfg, key, default)
    if not _is_number(value) or value != int(value) or int(value) < minimum:
        raise ValueError(f"{KEY_PREFIX}{key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def cfg_float(cfg: Mapping[str, Any], key: str, default: float, low: float = -math.inf, high: float = math.inf,
              high_open: bool = False) -> float:
    """A finite float in [low, high] (or [low, high) with ``high_open``); raises naming the key."""
    value = cfg_get(cfg, key, default)
    bound = f"[{low:g}, {high:g}{')' if high_open else ']'}"
    if not _is_number(value) or not math.isfinite(value) or value < low or value > high \
            or (high_open and value >= high):
        raise ValueError(f"{KEY_PREFIX}{key} must be a finite number in {bound}, got {value!r}")
    return float(value)


def cfg_list(cfg: Mapping[str, Any], key: str, default: Sequence[Any], length: Optional[int] = None) -> list:
    """A list (or tuple) config value, optionally of a given length; a string is refused."""
    value = cfg_get(cfg, key, default)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{KEY_PREFIX}{key} must be a list, got {type(value).__name__} {value!r}")
    if length is not None and len(value) != length:
        raise ValueError(f"{KEY_PREFIX}{key} needs {length} entries, got {len(value)}: {list(value)}")
    return list(value)


def stochastic_round(x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Unbiased integer rounding: ``floor(x) + 1`` with probability ``frac(x)``, else ``floor(x)``.

    ``x`` (K,) float ≥ 0 → (K,) int64 with expectation exactly ``x``; each entry differs from
    ``floor(x)`` by 0 or 1. One uniform draw per entry from ``generator``.
    """
    low = torch.floor(x)
    draw = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (low + (draw < x - low).to(x.dtype)).long()


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
    :meth:`log_scalars` turns those stats into the masker's TensorBoard scalars.

    Every masker is built from its config block alone (``MODEL.MASKING``; the detector adds the
    grid as ``VOXEL_SIZE`` and ``POINT_CLOUD_RANGE``): ``cls(cfg)``, see ``build_masker``.
    """

    def log_scalars(self, stats: dict) -> dict[str, float]:
        """TensorBoard scalars of one batch's ``stats`` (docs/method.md §4): the spread of the
        realised ratio over frames, ``mask_ratio_min`` / ``mask_ratio_max`` (none without frames)."""
        frames = stats.get("frames", [])
        if not frames:
            return {}
        ratios = [f["mask_ratio"] for f in frames]
        return {"mask_ratio_min": min(ratios), "mask_ratio_max": max(ratios)}

    def mask_rows(self, features: Tensor, coords: Tensor, generator: Optional[torch.Generator]) -> tuple[Tensor, dict]:
        """Mask one frame's valid voxels: features (n, C), coords (n, 4) → (n,) bool and stats."""
        raise NotImplementedError

    def __call__(
        self,
        features: Tensor,
        voxel_coords: Tensor,
        valid: Optional[Tensor] = None,
        generator: Optional[torch.Generator] = None,
        frame_ids: Optional[Sequence[Any]] = None,
    ) -> tuple[Tensor, dict]:
        """features (N, C), voxel_coords (N, 4) [b, z, y, x], valid (N,) bool → mask (N,) bool, stats.

        ``frame_ids`` (one per batch index) only name frames in errors: features of valid voxels
        holding NaN/inf raise :class:`NonFiniteFeaturesError` naming the frame. At least one voxel
        of every frame stays visible (the encoder needs one), whatever the masker decided.
        """
        n = voxel_coords.shape[0]
        if valid is None:
            valid = torch.ones(n, dtype=torch.bool, device=voxel_coords.device)
        self._check_finite(features, voxel_coords, valid, frame_ids)
        mask = torch.zeros(n, dtype=torch.bool, device=voxel_coords.device)
        frames = []
        for b, rows in frame_slices(voxel_coords, valid):
            frame_mask, st = self.mask_rows(features[rows], voxel_coords[rows], generator)
            n_voxels = int((voxel_coords[:, 0] == b).sum())
            if n_voxels == rows.numel() and bool(frame_mask.all()):
                keep = torch.randint(rows.numel(), (1,), generator=generator, device=frame_mask.device)
                frame_mask = frame_mask.clone()
                frame_mask[keep] = False
            mask[rows] = frame_mask
            n_masked = int(frame_mask.sum())
            frames.append({**_python_stats(st), "batch_index": b, "n": int(rows.numel()), "n_voxels": n_voxels,
                           "n_masked": n_masked, "mask_ratio": n_masked / n_voxels})
        return mask, {"mask_ratio": float(mask.sum()) / max(n, 1), "frames": frames}

    def _check_finite(self, features: Tensor, voxel_coords: Tensor, valid: Tensor,
                      frame_ids: Optional[Sequence[Any]]) -> None:
        finite = torch.isfinite(features).all(1) | ~valid
        if bool(finite.all()):  # one check (one host sync) for the whole batch
            return
        batch = voxel_coords[:, 0].long()
        bad = []
        for b in torch.unique(batch[~finite]).tolist():
            rows = int((~finite & (batch == b)).sum())
            name = f"frame {frame_ids[b]!r} (batch index {b})" if frame_ids is not None and b < len(frame_ids) \
                else f"batch index {b}"
            bad.append(f"{name}: {rows} of {int((valid & (batch == b)).sum())} valid voxels")
        raise NonFiniteFeaturesError(f"{type(self).__name__}: Seal targets hold "
                                     f"NaN/inf in {'; '.join(bad)} (a diverged or corrupt teacher, or a bad "
                                     f"cache frame)")

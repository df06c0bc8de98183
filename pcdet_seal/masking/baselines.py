"""The masking baselines of seed Table D.8: random, range-aware random and FPS-region masking.

All follow the masking interface of ``pcdet_seal.masking``; only valid voxels are masked, and
ratios are fractions of each frame's valid voxels (docs/method.md §5).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from torch import Tensor

from pcdet_seal.geometry import voxel_centres

from .common import KEY_PREFIX, FrameMasker, cfg_float, cfg_get, cfg_int, cfg_list, sample_in_groups


def _mask_ratio(cfg: Mapping[str, Any]) -> float:
    # 1.0 would leave the encoder no visible voxel: refused here, not deep inside DSVT.
    return cfg_float(cfg, "MASK_RATIO", 0.5, 0.0, 1.0, high_open=True)


def _grid(owner: str, cfg: Mapping[str, Any], voxel_size: Optional[Sequence[float]],
          point_cloud_range: Optional[Sequence[float]]) -> tuple[Sequence[float], Sequence[float]]:
    """The voxel grid of a masker that needs it: the arguments, else ``VOXEL_SIZE`` / ``POINT_CLOUD_RANGE``."""
    voxel_size = voxel_size if voxel_size is not None else cfg_get(cfg, "VOXEL_SIZE", None)
    point_cloud_range = point_cloud_range if point_cloud_range is not None else cfg_get(cfg, "POINT_CLOUD_RANGE", None)
    if voxel_size is None or point_cloud_range is None:
        raise ValueError(f"{owner} needs VOXEL_SIZE and POINT_CLOUD_RANGE (or voxel_size/point_cloud_range)")
    return voxel_size, point_cloud_range


class RandomMask(FrameMasker):
    """Uniform random masking of ``floor(n * MASK_RATIO)`` valid voxels per frame."""

    def __init__(self, cfg: Optional[Mapping[str, Any]] = None) -> None:
        cfg = cfg or {}
        self.mask_ratio = _mask_ratio(cfg)

    def mask_rows(self, features: Tensor, coords: Tensor, generator: Optional[torch.Generator]) -> tuple[Tensor, dict]:
        n = coords.shape[0]
        groups = torch.zeros(n, dtype=torch.long, device=coords.device)
        quota = torch.tensor([int(n * self.mask_ratio)], device=coords.device)
        return sample_in_groups(groups, quota, generator), {}


class RangeAwareMask(FrameMasker):
    """Range-aware random masking after Occupancy-MAE (docs/method.md §5).

    Voxels are binned by BEV distance from the sensor with ``DISTANCES`` (default [30, 50] m);
    bin i is masked at ``MASK_RATIO + RATIO_OFFSETS[i]`` (default offsets [0, -0.2, -0.2]: keep
    1 - m of near voxels and 1 - m + 0.2 of the rest), clipped to [0, 1]. Needs the voxel grid:
    ``VOXEL_SIZE`` and ``POINT_CLOUD_RANGE`` (the detector fills them from the dataset).
    """

    def __init__(self, cfg: Optional[Mapping[str, Any]] = None, *, voxel_size: Optional[Sequence[float]] = None,
                 point_cloud_range: Optional[Sequence[float]] = None) -> None:
        cfg = cfg or {}
        self.mask_ratio = _mask_ratio(cfg)
        self.distances = cfg_list(cfg, "DISTANCES", [30.0, 50.0])
        if not all(isinstance(d, (int, float)) and 0 < d < float("inf") for d in self.distances) \
                or any(b <= a for a, b in zip(self.distances, self.distances[1:])):
            raise ValueError(f"{KEY_PREFIX}DISTANCES must be positive finite distances in increasing order, "
                             f"got {self.distances}")
        self.distances = [float(d) for d in self.distances]
        offsets = cfg_list(cfg, "RATIO_OFFSETS", [0.0, -0.2, -0.2], length=len(self.distances) + 1)
        self.offsets = [cfg_float({"RATIO_OFFSETS": o}, "RATIO_OFFSETS", 0.0, -1.0, 1.0) for o in offsets]
        self.voxel_size, self.pc_range = _grid("RangeAwareMask", cfg, voxel_size, point_cloud_range)
        # Rounded so that 0.7 - 0.2 is 0.5 and not 0.49999999999999994 (floor would lose a voxel).
        self.ratios = [min(max(round(self.mask_ratio + o, 9), 0.0), 1.0) for o in self.offsets]

    def mask_rows(self, features: Tensor, coords: Tensor, generator: Optional[torch.Generator]) -> tuple[Tensor, dict]:
        xyz = voxel_centres(coords, self.voxel_size, self.pc_range)
        dist = xyz[:, :2].norm(dim=1)
        edges = torch.tensor(self.distances, dtype=dist.dtype, device=dist.device)
        bins = torch.bucketize(dist, edges)
        counts = torch.bincount(bins, minlength=len(self.ratios)).double()
        ratios = torch.tensor(self.ratios, dtype=torch.float64, device=dist.device)
        return sample_in_groups(bins, torch.floor(counts * ratios).long(), generator), {}


def farthest_point_sampling(xyz: Tensor, n_samples: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """Indices (n_samples,) of farthest point sampling over ``xyz`` (N, 3), random start."""
    n = xyz.shape[0]
    n_samples = min(n_samples, n)
    chosen = torch.empty(n_samples, dtype=torch.long, device=xyz.device)
    if n_samples == 0:
        return chosen
    chosen[0] = torch.randint(n, (1,), device=xyz.device, generator=generator)[0]
    closest = torch.full((n,), float("inf"), device=xyz.device)
    for i in range(1, n_samples):
        closest = torch.minimum(closest, ((xyz - xyz[chosen[i - 1]]) ** 2).sum(1))
        chosen[i] = closest.argmax()
    return chosen


class FPSMask(FrameMasker):
    """FPS-region masking: ``NUM_SEEDS`` farthest-point seeds split the frame into regions.

    Each valid voxel joins its nearest seed; regions are masked whole in random order until
    ``floor(n * MASK_RATIO)`` voxels are masked, the last region partially (uniformly inside
    it), so the ratio is exact. Needs ``VOXEL_SIZE`` and ``POINT_CLOUD_RANGE`` like
    :class:`RangeAwareMask`.
    """

    def __init__(self, cfg: Optional[Mapping[str, Any]] = None, *, voxel_size: Optional[Sequence[float]] = None,
                 point_cloud_range: Optional[Sequence[float]] = None) -> None:
        cfg = cfg or {}
        self.mask_ratio = _mask_ratio(cfg)
        self.num_seeds = cfg_int(cfg, "NUM_SEEDS", 256, minimum=1)
        self.voxel_size, self.pc_range = _grid("FPSMask", cfg, voxel_size, point_cloud_range)

    def mask_rows(self, features: Tensor, coords: Tensor, generator: Optional[torch.Generator]) -> tuple[Tensor, dict]:
        n = coords.shape[0]
        xyz = voxel_centres(coords, self.voxel_size, self.pc_range)
        seeds = farthest_point_sampling(xyz, self.num_seeds, generator)
        region = torch.cdist(xyz, xyz[seeds]).argmin(1)  # (n,)
        n_regions = seeds.numel()
        # Random region order; a voxel's rank = voxels in earlier regions + its rank inside its own.
        order = torch.argsort(torch.rand(n_regions, generator=generator, device=xyz.device))
        sizes = torch.bincount(region, minlength=n_regions)
        before = torch.zeros(n_regions, dtype=torch.long, device=xyz.device)
        before[order] = torch.cumsum(sizes[order], 0) - sizes[order]
        target = int(n * self.mask_ratio)
        # Regions wholly inside the budget are masked; the one crossing it gets the remainder.
        quota = (target - before).clamp(min=0)
        return sample_in_groups(region, torch.minimum(quota, sizes), generator), {}

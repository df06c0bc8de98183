"""I2Mask: inter- and intra-class discrimination-guided masking (docs/method.md §4), in torch.

Per frame: k-means on the voxels' Seal targets, a "fastest class sampling" partition of the
clusters by cosine distance of their centres (most dissimilar clusters masked most), an
intra-class coefficient from the spread of each cluster, then uniform sampling in each cluster.

Departure from the reference (recorded in docs/method.md): the reference masks
``floor(n_k · r_k)`` voxels of cluster k, so tiny clusters are never masked — a frame with
K ≤ n < ~2K voxels masked none, while a frame with n < K (the fallback) masked ~45 %. Here every
quota, including the fallback's ``n · mean base ratio``, is rounded **stochastically and
unbiasedly**: ``floor(x) + 1`` with probability ``frac(x)``, drawn from the frame's generator. The
expected number of masked voxels is exactly ``Σ n_k · r_k`` for every n, so the realised ratio no
longer jumps with the frame size, and each cluster's quota differs from the floor rule by at most
one voxel (negligible for large frames).
"""
from __future__ import annotations

import itertools
import logging
import math
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import Tensor

from .common import KEY_PREFIX, FrameMasker, cfg_float, cfg_int, cfg_list, sample_in_groups, stochastic_round
from .kmeans import kmeans

logger = logging.getLogger(__name__)

COS_EPS = 1e-8
#: Subsets the greedy partition may score per frame (all steps together); larger searches are
#: refused at build time: C(32, 12) alone is 2.3e8 subsets, hours per frame.
MAX_PARTITION_SUBSETS = 1_000_000
#: Subsets scored at once (bounds memory, whatever the search size).
_CHUNK = 1 << 16


def partition_search_size(n_clusters: int, sizes: Sequence[int]) -> int:
    """Subsets :func:`partition_clusters` scores: Σ_t C(clusters left before step t, sizes[t])."""
    total, left = 0, n_clusters
    for size in list(sizes)[:-1]:
        total += math.comb(left, size)
        left -= size
    return total


def partition_clusters(dist: Tensor, sizes: Sequence[int]) -> list[Tensor]:
    """Greedy "fastest class sampling" of K clusters into sets of the given sizes.

    Args:
        dist: (K, K) pairwise distances between cluster centres.
        sizes: set sizes summing to K, e.g. (3, 3, 2).

    Returns:
        One int64 tensor of cluster ids per set (on ``dist``'s device). Step t picks, among
        the clusters not yet taken, the ``sizes[t]``-subset with the largest mean pairwise
        distance; ties go to the first subset in ``itertools.combinations`` order (strict ``>``
        from -inf, as the reference). The last set takes the rest. Subsets of size 1 score 0.
        Subsets are scored in chunks of at most ``_CHUNK``, so memory does not grow with
        C(K, size).
    """
    k = dist.shape[0]
    if sum(sizes) != k:
        raise ValueError(f"partition sizes {list(sizes)} must add up to the number of clusters {k}")
    device = dist.device
    remaining = list(range(k))
    sets: list[Tensor] = []
    for t, size in enumerate(sizes):
        if t == len(sizes) - 1:
            sets.append(torch.tensor(remaining, dtype=torch.long, device=device))
            break
        pairs = torch.tensor(list(itertools.combinations(range(size), 2)), dtype=torch.long,
                             device=device).reshape(-1, 2)
        subsets = itertools.combinations(remaining, size)  # lexicographic: ties keep the first
        best_scores, best_sets = [], []
        while chunk := list(itertools.islice(subsets, _CHUNK)):
            combos = torch.tensor(chunk, dtype=torch.long, device=device)  # (S, size)
            if size > 1:
                score = dist[combos[:, pairs[:, 0]], combos[:, pairs[:, 1]]].mean(1)
            else:
                score = torch.zeros(combos.shape[0], device=device, dtype=dist.dtype)
            i = score.argmax()  # the first maximum of the chunk
            best_scores.append(score[i])
            best_sets.append(combos[i])
        chosen = best_sets[int(torch.stack(best_scores).argmax())]  # earliest chunk wins ties
        sets.append(chosen)
        taken = set(chosen.tolist())
        remaining = [c for c in remaining if c not in taken]
    return sets


def intra_class_coefficients(
    feats: Tensor, labels: Tensor, centres: Tensor, lam: float
) -> tuple[Tensor, Tensor]:
    """Intra-class coefficients r_c (K,) and mean far-distances D (K,), float64.

    delta_i = ||F_i - mu_{l_i}||_2; D_k = mean of delta over members of k with delta > lam
    (0 when none); r_c = 1 - D / max D, or 1 everywhere when max D = 0.
    """
    k = centres.shape[0]
    delta = (feats.double() - centres.double()[labels]).norm(dim=1)
    far = delta > lam
    sums = torch.zeros(k, dtype=torch.float64, device=feats.device).index_add_(0, labels, torch.where(far, delta, 0.0))
    cnt = torch.zeros(k, dtype=torch.float64, device=feats.device).index_add_(0, labels, far.double())
    d = sums / cnt.clamp_min(1.0)
    dmax = d.max()
    rc = torch.where(dmax > 0, 1.0 - d / dmax.clamp_min(torch.finfo(torch.float64).tiny), torch.ones_like(d))
    return rc, d


def centre_cosine_distance(centres: Tensor, counts: Tensor) -> Tensor:
    """(K, K) cosine distance 1 - cos between centres; pairs with an empty cluster get 0.

    Giving empty clusters no dissimilarity keeps them out of the heavily masked sets instead
    of letting them take a slot there (the reference produced NaN for them).
    """
    c = centres.double()
    norm = c.norm(dim=1)
    cos = (c @ c.t()) / (norm[:, None] * norm[None, :]).clamp_min(COS_EPS)
    dist = 1.0 - cos
    nonempty = counts > 0
    return torch.where(nonempty[:, None] & nonempty[None, :], dist, torch.zeros_like(dist))


class I2Mask(FrameMasker):
    """I2Mask over a batch of frames; the masking interface of ``pcdet_seal.masking``.

    Config keys (OpenPCDet style, all optional): ``N_CLUSTERS`` (8), ``PARTITION``
    ([3, 3, 2]), ``BASE_RATIOS`` ([0.9, 0.45, 0.0]), ``LAMBDA`` (0.6), ``KMEANS_N_INIT`` (5),
    ``KMEANS_MAX_ITER`` (50), ``KMEANS_TOL`` (1e-4).
    """

    def __init__(self, cfg: Optional[Mapping[str, Any]] = None) -> None:
        cfg = cfg or {}
        self.n_clusters = cfg_int(cfg, "N_CLUSTERS", 8, minimum=1)
        self.partition = [cfg_int({"PARTITION": p}, "PARTITION", 0, minimum=1)
                          for p in cfg_list(cfg, "PARTITION", [3, 3, 2])]
        ratios = cfg_list(cfg, "BASE_RATIOS", [0.9, 0.45, 0.0])
        self.base_ratios = [cfg_float({"BASE_RATIOS": r}, "BASE_RATIOS", 0.0, 0.0, 1.0) for r in ratios]
        self.lam = cfg_float(cfg, "LAMBDA", 0.6, low=0.0)
        self.n_init = cfg_int(cfg, "KMEANS_N_INIT", 5, minimum=1)
        self.max_iter = cfg_int(cfg, "KMEANS_MAX_ITER", 50, minimum=1)
        self.tol = cfg_float(cfg, "KMEANS_TOL", 1e-4, low=0.0)
        if not self.partition or sum(self.partition) != self.n_clusters:
            raise ValueError(
                f"{KEY_PREFIX}PARTITION {self.partition} must add up to {KEY_PREFIX}N_CLUSTERS {self.n_clusters}"
            )
        if len(self.base_ratios) != len(self.partition):
            raise ValueError(
                f"{KEY_PREFIX}BASE_RATIOS {self.base_ratios} needs one ratio per PARTITION set {self.partition}"
            )
        search = partition_search_size(self.n_clusters, self.partition)
        if search > MAX_PARTITION_SUBSETS:
            raise ValueError(
                f"{KEY_PREFIX}N_CLUSTERS {self.n_clusters} with PARTITION {self.partition}: the greedy partition "
                f"would score {search:,} cluster subsets per frame (limit {MAX_PARTITION_SUBSETS:,}); use fewer "
                f"clusters or smaller sets"
            )
        # Fallback for frames with fewer valid voxels than clusters: the base ratio averaged
        # over the clusters (what equal-sized clusters with r_c = 1 would give).
        self.fallback_ratio = sum(p * r for p, r in zip(self.partition, self.base_ratios)) / self.n_clusters

    def mask_frame(self, feats: Tensor, generator: Optional[torch.Generator] = None) -> tuple[Tensor, dict]:
        """Mask one frame's valid voxels. ``feats`` (n, C) → mask (n,) bool and per-frame stats.

        The stats hold tensors: cluster sizes, partition sets, r_c, D, per-cluster ratio and
        quota (K,), and the cluster label of every voxel (n,).
        """
        n = feats.shape[0]
        device = feats.device
        if n < self.n_clusters:
            groups = torch.zeros(n, dtype=torch.long, device=device)
            expected = torch.full((1,), n * self.fallback_ratio, dtype=torch.float64, device=device)
            mask = sample_in_groups(groups, stochastic_round(expected, generator), generator)
            return mask, {"fallback": True}

        res = kmeans(feats, self.n_clusters, n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
                     generator=generator)
        sets = partition_clusters(centre_cosine_distance(res.centres, res.counts), self.partition)
        rb = torch.zeros(self.n_clusters, dtype=torch.float64, device=device)
        for members, ratio in zip(sets, self.base_ratios):
            rb[members] = ratio
        rc, d = intra_class_coefficients(feats, res.labels, res.centres, self.lam)
        ratio = rb * rc
        quota = stochastic_round(res.counts.double() * ratio, generator)  # unbiased; see the module doc
        mask = sample_in_groups(res.labels, quota, generator)
        stats = {
            "fallback": False,
            "cluster_sizes": res.counts,
            "partition": sets,
            "r_c": rc,
            "D": d,
            "ratio": ratio,
            "quota": quota,
            "labels": res.labels,
        }
        return mask, stats

    def mask_rows(self, features: Tensor, coords: Tensor, generator: Optional[torch.Generator]) -> tuple[Tensor, dict]:
        """One frame for :class:`FrameMasker`: I2Mask needs only the features."""
        return self.mask_frame(features, generator)

    def log_scalars(self, stats: dict) -> dict[str, float]:
        """The ratio spread of :meth:`FrameMasker.log_scalars`, plus ``mask_fallback_frames`` (frames
        masked uniformly for having fewer voxels than clusters) and ``cluster_min_frac`` /
        ``cluster_max_frac`` (the smallest / largest k-means cluster as a fraction of its frame)."""
        out = super().log_scalars(stats)
        frames = stats.get("frames", [])
        if not frames:
            return out
        clustered = [f for f in frames if f.get("cluster_sizes")]
        out["mask_fallback_frames"] = float(sum(bool(f["fallback"]) for f in frames))
        if clustered:
            out["cluster_min_frac"] = min(min(f["cluster_sizes"]) / f["n"] for f in clustered)
            out["cluster_max_frac"] = max(max(f["cluster_sizes"]) / f["n"] for f in clustered)
            logger.debug("I2Mask per frame: %s", [{k: f[k] for k in ("batch_index", "cluster_sizes", "partition",
                                                                   "mask_ratio")} for f in clustered])
        return out

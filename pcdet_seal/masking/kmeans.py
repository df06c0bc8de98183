"""k-means with greedy k-means++ initialisation for one frame's voxel features, in torch.

Runs on whatever device the data lives on, with several initialisations batched together,
no host synchronisation inside the Lloyd loop (convergence is checked every ``check_every``
iterations only), and defined results for N < K, duplicate points and empty clusters.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor


@dataclass
class KMeansResult:
    """Outcome of :func:`kmeans` for one set of points.

    Attributes:
        labels: (N,) int64 cluster index of every point.
        centres: (K, C) centres; an empty cluster keeps its last (re-seeded) position.
        counts: (K,) int64 number of members per cluster.
        inertia: () sum of squared distances of the points to their centres.
    """

    labels: Tensor
    centres: Tensor
    counts: Tensor
    inertia: Tensor


def _sq_dist(x: Tensor, x_sq: Tensor, c: Tensor) -> Tensor:
    """Squared Euclidean distances (N, M) between rows of ``x`` (N, C) and ``c`` (M, C)."""
    d = x_sq[:, None] - 2.0 * (x @ c.t()) + (c * c).sum(1)[None, :]
    return d.clamp_min_(0.0)


def _kmeans_pp(x: Tensor, x_sq: Tensor, k: int, n_init: int, generator: Optional[torch.Generator]) -> Tensor:
    """Greedy k-means++ seeding (as scikit-learn: 2 + ln k local trials), ``n_init`` runs at once.

    Returns centres (R, K, C) with R = n_init.
    """
    n, c = x.shape
    trials = 2 + int(math.log(k))
    first = torch.randint(n, (n_init,), device=x.device, generator=generator)
    centres = x.new_empty(n_init, k, c)
    centres[:, 0] = x[first]
    closest = _sq_dist(x, x_sq, x[first]).t().contiguous()  # (R, N)
    for j in range(1, k):
        # All-zero potentials (every point already a centre) fall back to uniform sampling.
        weights = closest + (closest.sum(1, keepdim=True) <= 0).to(closest.dtype)
        cand = torch.multinomial(weights, trials, replacement=True, generator=generator)  # (R, L)
        d_cand = _sq_dist(x, x_sq, x[cand.reshape(-1)]).t().reshape(n_init, trials, n)
        d_new = torch.minimum(d_cand, closest[:, None, :])  # (R, L, N)
        best = d_new.sum(2).argmin(1)  # (R,)
        rows = torch.arange(n_init, device=x.device)
        centres[:, j] = x[cand[rows, best]]
        closest = d_new[rows, best]
    return centres


def kmeans(
    x: Tensor,
    k: int = 8,
    *,
    n_init: int = 5,
    max_iter: int = 50,
    tol: float = 1e-4,
    check_every: int = 5,
    generator: Optional[torch.Generator] = None,
) -> KMeansResult:
    """Cluster the rows of ``x`` (N, C) into ``k`` clusters (Euclidean, Lloyd's algorithm).

    ``n_init`` greedy k-means++ initialisations run batched; the one with the lowest inertia
    wins. Lloyd iterations stop after ``max_iter`` or once the total squared centre shift of
    the currently best initialisation is at most ``tol`` times the mean feature variance
    (scikit-learn's criterion), read back to the host only every ``check_every`` iterations. A cluster that loses all members
    is re-seeded at the point farthest from its centre (distinct farthest points for several
    empty clusters). With N < K every point is its own cluster and the remaining clusters are
    empty. Reproducible for a given ``generator`` (on the device of ``x``).
    """
    if x.dim() != 2:
        raise ValueError(f"kmeans expects (N, C) features, got shape {tuple(x.shape)}")
    if k < 1 or n_init < 1:
        raise ValueError(f"kmeans needs k >= 1 and n_init >= 1, got k={k}, n_init={n_init}")
    n, c = x.shape
    xf = x.float()
    device = x.device
    if n <= k:
        labels = torch.arange(n, device=device)
        centres = xf.new_zeros(k, c)
        centres[:n] = xf
        if n > 0:
            centres[n:] = xf[-1]
        counts = torch.zeros(k, dtype=torch.long, device=device)
        counts[:n] = 1
        return KMeansResult(labels, centres, counts, xf.new_zeros(()))

    x_sq = (xf * xf).sum(1)
    centres = _kmeans_pp(xf, x_sq, k, n_init, generator)  # (R, K, C)
    r = n_init
    threshold = tol * xf.var(0, unbiased=False).mean()

    def assign(cent: Tensor) -> tuple[Tensor, Tensor]:
        d = _sq_dist(xf, x_sq, cent.reshape(r * k, c)).reshape(n, r, k)
        mind, lab = d.min(2)  # (N, R)
        return lab.t(), mind.t()  # (R, N) each

    for it in range(max_iter):
        labels, mind = assign(centres)
        onehot = torch.zeros(r, k, n, device=device, dtype=xf.dtype)
        onehot.scatter_(1, labels[:, None, :], 1.0)
        counts = onehot.sum(2)  # (R, K)
        sums = onehot @ xf  # (R, K, C)
        new = sums / counts.clamp_min(1.0)[..., None]
        # Re-seed empty clusters at the farthest points (the e-th empty one takes the e-th farthest).
        empty = counts == 0
        far = mind.topk(k, dim=1).indices  # (R, K)
        rank = (empty.long().cumsum(1) - 1).clamp_min(0)
        reseed = xf[far.gather(1, rank)]  # (R, K, C)
        new = torch.where(empty[..., None], reseed, new)
        shift = ((new - centres) ** 2).sum((1, 2))  # (R,)
        centres = new
        # Stop once the currently best initialisation has converged: a worse one that is still
        # drifting slowly towards its own local optimum cannot win any more.
        if (it + 1) % check_every == 0 and bool(shift[mind.sum(1).argmin()] <= threshold):
            break

    labels, mind = assign(centres)
    best = mind.sum(1).argmin().reshape(1)  # stays on the device
    labels = labels.index_select(0, best)[0]
    counts = torch.bincount(labels, minlength=k)
    sums = torch.zeros(k, c, device=device, dtype=xf.dtype).index_add_(0, labels, xf)
    means = sums / counts.clamp_min(1)[:, None].to(xf.dtype)
    final = torch.where((counts > 0)[:, None], means, centres.index_select(0, best)[0])
    inertia = ((xf - final[labels]) ** 2).sum()
    return KMeansResult(labels, final, counts, inertia)

"""Stand-in Seal teacher for labelled synthetic scenes: 64-d unit features from each point's
superclass (a fixed embedding per class plus class-dependent noise), written through the
offline feature cache exactly as a real teacher's output ("bring your own features").

Why class-dependent noise: I2Mask's intra-class coefficient is ``r_c = 1 - D_k / max_j D_j``
with ``D_k`` the mean distance, beyond ``λ = 0.6``, of cluster k's members from its centre
(docs/method.md §4). If every class had the same noise, every ``D_k`` would be about equal, all
``r_c ≈ 0`` and almost nothing would be masked. So some classes are tight (no member beyond
λ: ``D_k = 0``, ``r_c = 1``, masked at their full base ratio), others spread so that a varying
share of their points lies beyond λ (``0 < r_c < 1``), and the widest one gets ``r_c = 0``.
With :data:`NOISE_LEVELS` on the demo's scenes the realised mask ratio is about 0.43 per
batch (0.2–0.55 per frame; measured by ``scripts/demo.py``, which logs it per run).
"""
from __future__ import annotations

import hashlib
import zlib
from typing import Optional, Sequence

import numpy as np
import torch

from .cache import CacheMeta, FeatureCacheWriter
from .targets import points_to_cells

FEATURE_DIM = 64
#: Per-superclass noise scale (``synthetic.labels.SUPERCLASSES`` order: ground, structure,
#: vehicle, two_wheeler, nature, human, object, outlier). A point's noise vector has norm about
#: ``level · u`` with ``u ~ U(0.2, 1.8)`` per point, so its distance from the class direction
#: after normalisation is about ``sin(atan(level · u))``: levels ≤ 0.45 stay inside λ = 0.6;
#: 0.8–1.6 straddle it with growing shares beyond.
NOISE_LEVELS: tuple[float, ...] = (0.15, 0.15, 0.15, 0.9, 1.6, 0.2, 1.2, 0.3)
#: Superclass groups sharing part of their embedding (flat, built, movers, outlier), so that
#: cluster centres are not all equidistant and I2Mask's partition is well defined.
GROUPS: tuple[int, ...] = (0, 1, 2, 2, 0, 2, 1, 3)
GROUP_WEIGHT = 0.5
#: Weight of a direction shared by all classes: centres sit about 1.0 apart (not √2), so a cell
#: straddling two classes (e.g. a car's wheel on the road) stays within λ of one of them.
COMMON_WEIGHT = 1.0
NOISE_RANGE = (0.2, 1.8)


def class_embeddings(num_classes: int = 8, dim: int = FEATURE_DIM, groups: Sequence[int] = GROUPS,
                     seed: int = 0) -> torch.Tensor:
    """(K, C) fixed unit class directions: ``normalize(u_class + GROUP_WEIGHT · g_group + COMMON_WEIGHT · c)``."""
    if len(groups) != num_classes:
        raise ValueError(f"{num_classes} classes but {len(groups)} group ids")
    gen = torch.Generator().manual_seed(seed)
    own = torch.nn.functional.normalize(torch.randn(num_classes, dim, generator=gen, dtype=torch.float64), dim=1)
    shared = torch.nn.functional.normalize(torch.randn(max(groups) + 1, dim, generator=gen, dtype=torch.float64), dim=1)
    common = torch.nn.functional.normalize(torch.randn(dim, generator=gen, dtype=torch.float64), dim=0)
    emb = own + GROUP_WEIGHT * shared[torch.as_tensor(list(groups))] + COMMON_WEIGHT * common
    return torch.nn.functional.normalize(emb, dim=1).float()


def frame_seed(frame_id: str, seed: int = 0) -> int:
    """A stable 63-bit seed for a frame's noise (independent of Python's hash randomisation)."""
    return (zlib.crc32(frame_id.encode()) << 16 ^ seed) & (2 ** 63 - 1)


class StandInTeacher:
    """Label → feature "teacher" for synthetic scenes.

    Args:
        noise_levels: one noise scale per class (see :data:`NOISE_LEVELS`).
        dim: feature width C (64, the Seal teacher's).
        seed: selects the class embeddings and, with the frame id, the noise.
    """

    def __init__(self, noise_levels: Sequence[float] = NOISE_LEVELS, dim: int = FEATURE_DIM,
                 groups: Sequence[int] = GROUPS, seed: int = 0) -> None:
        self.noise_levels = torch.tensor([float(v) for v in noise_levels], dtype=torch.float32)
        self.dim = dim
        self.seed = seed
        self.embeddings = class_embeddings(len(self.noise_levels), dim, groups, seed)

    @property
    def num_classes(self) -> int:
        return self.embeddings.shape[0]

    @property
    def teacher_id(self) -> str:
        levels = ",".join(f"{v:g}" for v in self.noise_levels.tolist())
        return f"standin-superclass-v1(seed={self.seed},noise=[{levels}])"

    @property
    def sha256(self) -> str:
        """Fingerprint of everything that shapes the features (for the cache's meta.json)."""
        h = hashlib.sha256(self.teacher_id.encode())
        h.update(self.embeddings.numpy().tobytes())
        return h.hexdigest()

    def point_features(self, labels: torch.Tensor, frame_id: str) -> torch.Tensor:
        """(N,) int superclass labels → (N, C) float32 unit-norm features, deterministic per frame id."""
        labels = torch.as_tensor(labels).long()
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"frame {frame_id!r}: labels must lie in [0, {self.num_classes}), got "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        gen = torch.Generator().manual_seed(frame_seed(frame_id, self.seed))
        n = labels.shape[0]
        direction = torch.randn(n, self.dim, generator=gen) / self.dim ** 0.5
        low, high = NOISE_RANGE
        scale = self.noise_levels[labels] * (low + (high - low) * torch.rand(n, generator=gen))
        feats = self.embeddings[labels] + scale[:, None] * direction
        return torch.nn.functional.normalize(feats, dim=1)

    def cell_features(self, points: np.ndarray, labels: np.ndarray, frame_id: str,
                      cell_size: Sequence[float], quant: str = "cartesian") -> tuple[torch.Tensor, torch.Tensor]:
        """One frame's cache rows: (M, 3) int32 teacher cells and (M, C) mean point features.

        Args:
            points: (N, ≥3) points; labels: (N,) their superclass.
        """
        if len(points) != len(labels):
            raise ValueError(f"frame {frame_id!r}: {len(points)} points but {len(labels)} labels")
        xyz = torch.from_numpy(np.ascontiguousarray(points[:, :3], dtype=np.float32))
        return points_to_cells(xyz, self.point_features(torch.from_numpy(np.asarray(labels)), frame_id),
                               cell_size, quant)

    def cache_meta(self, cell_size: Sequence[float], quant: str = "cartesian",
                   dtype: str = "float16") -> CacheMeta:
        """The cache's ``meta.json`` contents for this teacher."""
        return CacheMeta(teacher_id=self.teacher_id, teacher_sha256=self.sha256, quant_mode=quant,
                         cell_size=tuple(float(v) for v in cell_size), feature_dim=self.dim, dtype=dtype)


def write_standin_cache(teacher: StandInTeacher, frames, cache_dir, cell_size: Sequence[float],
                        quant: str = "cartesian", progress: Optional[object] = None) -> int:
    """Write ``frames`` — an iterable of ``(frame_id, points (N, ≥3), labels (N,))`` — into a
    feature cache at ``cache_dir``; frames already there are skipped. Returns frames written."""
    writer = FeatureCacheWriter(cache_dir, teacher.cache_meta(cell_size, quant))
    written = 0
    for frame_id, points, labels in frames:
        if not writer.has(frame_id):
            writer.write(frame_id, *teacher.cell_features(points, labels, frame_id, cell_size, quant))
            written += 1
        if progress is not None:
            progress.update(1)
    return written

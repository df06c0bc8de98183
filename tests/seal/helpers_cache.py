"""Cache metadata and random frames shared by the feature-cache tests (tests/seal/test_cache_*.py)."""
from __future__ import annotations

import numpy as np
import torch

from pcdet_seal.seal.cache import CacheMeta

FP16_REL_ERR = 2.0 ** -11  # half precision rounding, relative
SHA = np.asarray("ab" * 32)  # the teacher hash every frame file records


def cache_meta(dtype: str = "float16", dim: int = 64, compressed: bool = False, sha: str = "ab" * 32) -> CacheMeta:
    return CacheMeta(teacher_id="seal-test", teacher_sha256=sha, quant_mode="cartesian",
                     cell_size=(0.32, 0.32, 0.1875), feature_dim=dim, dtype=dtype, compressed=compressed)


def cache_frame(m: int = 500, dim: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    coords = torch.unique(torch.randint(-300, 300, (m, 3), generator=g), dim=0)
    coords = coords[torch.randperm(coords.shape[0], generator=g)].int()
    feats = torch.nn.functional.normalize(torch.randn(coords.shape[0], dim, generator=g), dim=1)
    return coords, feats

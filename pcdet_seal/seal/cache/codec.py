"""Features in a frame file: float16, or int8 with one scale per frame."""
from __future__ import annotations

import numpy as np

from .format import SealCacheError

_INT8_MAX = 127


def encode_features(feats: np.ndarray, dtype: str) -> dict[str, np.ndarray]:
    """(M, C) float → ``{"feats": float16}`` or ``{"feats": int8, "scale": float32 ()}``.

    int8 uses one scale per frame, ``max|f| / 127``; the error is at most ``scale / 2``.
    """
    if dtype == "float16":
        return {"feats": feats.astype(np.float16)}
    peak = float(np.abs(feats).max()) if feats.size else 0.0
    scale = np.float32(peak / _INT8_MAX if peak > 0 else 1.0)
    q = np.clip(np.rint(feats / scale), -_INT8_MAX, _INT8_MAX).astype(np.int8)
    return {"feats": q, "scale": np.asarray(scale, dtype=np.float32)}


def decode_features(arrays: dict[str, np.ndarray], dtype: str, where: str) -> np.ndarray:
    """The inverse of :func:`encode_features`: (M, C) float32 from a frame file's arrays, whose
    ``feats`` already has the cache's ``dtype``; an int8 frame without a usable ``scale`` raises
    :class:`SealCacheError` naming ``where``."""
    feats = arrays["feats"]
    if dtype == "int8":
        scale = arrays.get("scale")
        if scale is None or scale.shape != () or not np.isfinite(scale) or scale <= 0:
            raise SealCacheError(f"{where}: int8 features need a positive scalar 'scale', got {scale!r}")
        return feats.astype(np.float32) * np.float32(scale)
    return feats.astype(np.float32)

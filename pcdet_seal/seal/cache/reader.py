"""Reading a cache folder: :class:`FeatureCache` validates ``meta.json`` against the config and every
frame file it loads, and joins features to cells by coordinate."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

from pcdet_seal.geometry import join_by_coords
from .codec import decode_features
from .format import (FORMAT_VERSION, FRAME_SUFFIX, FRAME_TEACHER_KEY, META_FILE, MissingFrameError, PathLike,
                     SealCacheError, frame_path, meta_path, read_meta)


class FeatureCache:
    """Reads a cache folder, validating it against what the config expects.

    Args:
        cache_dir: the folder holding ``meta.json``.
        feature_dim, teacher_sha256, quant_mode, cell_size: expected values, checked when given.
    """

    def __init__(self, cache_dir: PathLike, feature_dim: Optional[int] = None,
                 teacher_sha256: Optional[str] = None, quant_mode: Optional[str] = None,
                 cell_size: Optional[Sequence[float]] = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.meta = read_meta(self.cache_dir)
        expected = {"feature_dim": feature_dim, "teacher_sha256": teacher_sha256,
                    "quant_mode": quant_mode,
                    "cell_size": tuple(float(v) for v in cell_size) if cell_size is not None else None}
        for key, want in expected.items():
            have = getattr(self.meta, key)
            if want is None:
                continue
            same = np.allclose(want, have, rtol=1e-6, atol=0) if key == "cell_size" else want == have
            if not same:
                raise SealCacheError(f"{meta_path(self.cache_dir)}: {key} is {have!r} but the "
                                     f"config expects {want!r}")

    def path(self, frame_id: str) -> Path:
        """The file of ``frame_id``."""
        return frame_path(self.cache_dir, frame_id)

    def load(self, frame_id: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, 3) int32 (x, y, z) cell coords and (M, C) float32 features of a frame."""
        path = self.path(frame_id)
        where = f"frame {frame_id!r} ({path})"
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except FileNotFoundError as err:
            raise MissingFrameError(f"frame {frame_id!r} is not in the Seal feature cache: {path} "
                                    f"does not exist (write it with scripts/seal_features.py)") from err
        except Exception as err:  # noqa: BLE001 - numpy raises many types (even tokenize.TokenError) on bad bytes
            raise SealCacheError(f"{where}: corrupt cache file ({type(err).__name__}: {err})") from err
        coords, feats = arrays.get("coords"), arrays.get("feats")
        if coords is None or feats is None:
            raise SealCacheError(f"{where}: needs arrays 'coords' and 'feats', has {sorted(arrays)}")
        teacher = arrays.get(FRAME_TEACHER_KEY)
        if teacher is None or teacher.shape != () or teacher.dtype.kind != "U":
            raise SealCacheError(f"{where}: no '{FRAME_TEACHER_KEY}' string (format version {FORMAT_VERSION} "
                                 f"records the teacher in every frame file)")
        if str(teacher) != self.meta.teacher_sha256:
            raise SealCacheError(f"{where}: written by teacher {str(teacher)[:16]}…, but {META_FILE} names teacher "
                                 f"{self.meta.teacher_sha256[:16]}…: this cache mixes teachers")
        if coords.dtype != np.int32 or coords.ndim != 2 or coords.shape[1] != 3:
            raise SealCacheError(f"{where}: coords must be int32 (M, 3), got {coords.dtype} {coords.shape}")
        m, dim = coords.shape[0], self.meta.feature_dim
        if feats.shape != (m, dim) or feats.dtype != np.dtype(self.meta.dtype):
            raise SealCacheError(f"{where}: feats must be {self.meta.dtype} ({m}, {dim}), got "
                                 f"{feats.dtype} {feats.shape}")
        values = decode_features(arrays, self.meta.dtype, where)
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).any(axis=1).sum())
            raise SealCacheError(f"{where}: {bad} feature rows hold NaN/inf")
        return torch.from_numpy(coords), torch.from_numpy(values)

    def lookup(self, frame_id: str, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of teacher cells, joined by coordinate (never by row order).

        Args:
            cells: (N, 3) integer cell indices of the frame, in the cache's quantisation.

        Returns:
            ``(feats, found)``: (N, C) float32 (zero rows where not found) and (N,) bool.
        """
        coords, feats = self.load(frame_id)
        try:
            index, found = join_by_coords(cells.cpu(), coords)
        except ValueError as err:
            raise SealCacheError(f"frame {frame_id!r} ({self.path(frame_id)}): {err}") from err
        if coords.shape[0] == 0:  # an empty frame: nothing to index
            out = feats.new_zeros(cells.shape[0], feats.shape[1])
        else:
            out = feats[index] * found[:, None]
        return out.to(cells.device), found.to(cells.device)

    def frame_ids(self) -> list[str]:
        """Ids of every frame file in the folder, sorted."""
        return sorted(p.name[: -len(FRAME_SUFFIX)] for p in self.cache_dir.glob(f"*{FRAME_SUFFIX}"))

    def check(self, frame_ids: Optional[Iterable[str]] = None) -> dict[str, str]:
        """Load every frame (default: every file in the folder); return ``{frame_id: error}`` of
        those that cannot be read or fail validation (truncated, corrupt, another teacher...)."""
        bad: dict[str, str] = {}
        for frame_id in (self.frame_ids() if frame_ids is None else frame_ids):
            try:
                self.load(frame_id)
            except SealCacheError as err:
                bad[frame_id] = str(err)
        return bad

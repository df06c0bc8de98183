"""Writing a cache folder: :class:`FeatureCacheWriter` creates ``meta.json`` exclusively (the first
writer's settings win) or checks it matches, and stores each frame by atomic rename."""
from __future__ import annotations

import glob
import json
import logging
import time
from pathlib import Path
from typing import Iterable, Union

import numpy as np
import torch

from ._atomic import atomic_write, create_exclusive, temp_glob, temp_owner_gone
from .codec import encode_features
from .format import (FRAME_SUFFIX, FRAME_TEACHER_KEY, META_FILE, CacheMeta, PathLike, SealCacheError, frame_path,
                     meta_path, read_meta)

logger = logging.getLogger(__package__)  # "pcdet_seal.seal.cache", the name it had before the package split


def _read_meta_settled(cache_dir: PathLike, wait: float = 2.0) -> CacheMeta:
    """:func:`read_meta`, waiting up to ``wait`` seconds while the file does not parse yet: where
    ``O_EXCL`` creation stands in for hard links (:func:`create_exclusive`), a concurrent creator's
    ``meta.json`` exists before its content is written."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return read_meta(cache_dir)
        except SealCacheError as err:
            if not isinstance(err.__cause__, json.JSONDecodeError) or time.monotonic() >= deadline:
                raise
        time.sleep(0.02)


class FeatureCacheWriter:
    """Writes frames into a cache folder; creates ``meta.json`` or checks it matches ``meta``."""

    def __init__(self, cache_dir: PathLike, meta: CacheMeta) -> None:
        self.cache_dir = Path(cache_dir)
        self.meta = meta
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        meta_file = meta_path(self.cache_dir)
        if not meta_file.exists():
            frames = sorted(p.name for p in self.cache_dir.glob(f"*{FRAME_SUFFIX}"))
            if frames and not meta_file.exists():  # (another writer may have just created both)
                raise SealCacheError(
                    f"{self.cache_dir}: holds {len(frames)} frame files (e.g. {frames[0]}) but no {META_FILE}, "
                    f"so which teacher wrote them is unknown; refusing to add frames. Restore its {META_FILE} "
                    f"or use an empty folder."
                )
            try:
                if not frames and create_exclusive(meta_file, json.dumps(meta.to_json(), indent=2).encode()):
                    return
            except OSError as err:
                raise SealCacheError(f"{meta_file}: cannot create the cache metadata ({type(err).__name__}: "
                                     f"{err})") from err
        diffs = _read_meta_settled(self.cache_dir).mismatches(meta)
        if diffs:
            raise SealCacheError(
                f"{meta_file}: existing cache was written with different settings "
                f"(existing vs requested): {'; '.join(diffs)}. Use another folder."
            )

    def path(self, frame_id: str) -> Path:
        """The file of ``frame_id``."""
        return frame_path(self.cache_dir, frame_id)

    def has(self, frame_id: str) -> bool:
        """True when the frame is complete (files appear only by atomic rename)."""
        return self.path(frame_id).is_file()

    def remove_stale_temps(self, frame_ids: Iterable[str]) -> int:
        """Delete temp files that killed runs left for these frames; return how many.

        Only temps whose owner is provably gone (:func:`temp_owner_gone`) are removed; those of
        live processes and of other hosts are left alone and logged.
        """
        removed, kept = 0, []
        for frame_id in frame_ids:
            for temp in map(Path, glob.glob(temp_glob(self.path(frame_id)))):
                if temp_owner_gone(temp):
                    temp.unlink(missing_ok=True)
                    removed += 1
                else:
                    kept.append(temp.name)
        if kept:
            logger.info("%s: left %d temp files of other live writers or hosts, e.g. %s", self.cache_dir,
                        len(kept), kept[0])
        return removed

    def write(self, frame_id: str, coords: Union[np.ndarray, torch.Tensor],
              feats: Union[np.ndarray, torch.Tensor]) -> Path:
        """Store one frame atomically.

        Args:
            frame_id: OpenPCDet's frame id.
            coords: (M, 3) integer teacher-cell indices (x, y, z), unique.
            feats: (M, C) float features, C = ``meta.feature_dim``, all finite.
        """
        path = self.path(frame_id)
        coords = coords.cpu().numpy() if isinstance(coords, torch.Tensor) else np.asarray(coords)
        feats = feats.detach().float().cpu().numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats)
        if coords.ndim != 2 or coords.shape[1] != 3 or not np.issubdtype(coords.dtype, np.integer):
            raise SealCacheError(f"frame {frame_id!r}: coords must be integer (M, 3), got "
                                 f"{coords.dtype} {coords.shape}")
        if feats.shape != (coords.shape[0], self.meta.feature_dim):
            raise SealCacheError(f"frame {frame_id!r}: feats must be ({coords.shape[0]}, "
                                 f"{self.meta.feature_dim}), got {feats.shape}")
        if not np.isfinite(feats).all():
            bad = int((~np.isfinite(feats)).any(axis=1).sum())
            raise SealCacheError(f"frame {frame_id!r}: {bad} feature rows hold NaN/inf; not writing {path}")
        if np.abs(coords).max(initial=0) > np.iinfo(np.int32).max:
            raise SealCacheError(f"frame {frame_id!r}: cell coordinates overflow int32")
        if coords.shape[0] == 0:
            logger.warning("frame %r: no teacher cells (empty point cloud after cropping?); writing an empty "
                           "frame to %s", frame_id, path)
        coords = coords.astype(np.int32)
        order = np.lexsort((coords[:, 2], coords[:, 1], coords[:, 0]))
        arrays = {"coords": coords[order], **encode_features(feats[order], self.meta.dtype),
                  FRAME_TEACHER_KEY: np.asarray(self.meta.teacher_sha256)}
        saver = np.savez_compressed if self.meta.compressed else np.savez
        try:
            atomic_write(path, lambda f: saver(f, **arrays))
        except OSError as err:
            raise SealCacheError(f"frame {frame_id!r}: cannot write {path} ({type(err).__name__}: {err}); "
                                 f"nothing was left behind") from err
        return path

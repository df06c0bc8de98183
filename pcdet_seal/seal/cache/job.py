"""The resumable, shardable frame loop that fills a cache (scripts/seal_features.py):
:func:`write_features` over the :class:`Frame` list, one shard (:func:`select_shard`) per process,
point clouds checked (:func:`check_points`) before they reach the teacher."""
from __future__ import annotations

import logging
from typing import Any, Callable, NamedTuple, Sequence, Union

import numpy as np
import torch
from tqdm import tqdm

from .format import BadFrameError, SealCacheError
from .reader import FeatureCache
from .writer import FeatureCacheWriter

logger = logging.getLogger(__package__)  # "pcdet_seal.seal.cache", the name it had before the package split

#: Points farther than this (metres, any axis) are refused as absurd before the teacher runs:
#: LiDARs reach a few hundred metres, and the teacher's sparse grid spans the cells' extent.
MAX_ABS_COORD = 1000.0


def check_points(points: Any, frame_id: str) -> np.ndarray:
    """Refuse a point cloud the teacher cannot take, naming the frame and what is wrong.

    Needs a float (N, ≥4) array, every value finite and |x|, |y|, |z| ≤ :data:`MAX_ABS_COORD`.
    Raises :class:`BadFrameError`.
    """
    where = f"frame {frame_id!r}"
    try:
        arr = np.asarray(points)
    except Exception as err:  # noqa: BLE001 - whatever the source returned
        raise BadFrameError(f"{where}: points are not an array ({type(err).__name__}: {err})") from err
    if arr.ndim != 2 or arr.shape[1] < 4 or not np.issubdtype(arr.dtype, np.number):
        raise BadFrameError(f"{where}: points must be a numeric (N, >=4) array, got {arr.dtype} {arr.shape}")
    finite = np.isfinite(arr)
    if not finite.all():
        rows = np.flatnonzero(~finite.all(axis=1))
        raise BadFrameError(f"{where}: {len(rows)} of {len(arr)} points hold NaN/inf (first: row "
                            f"{rows[0]} = {arr[rows[0]].tolist()})")
    if arr.size:
        peak = np.abs(arr[:, :3]).max(axis=0)
        if (peak > MAX_ABS_COORD).any():
            axis = int(peak.argmax())
            raise BadFrameError(f"{where}: {'xyz'[axis]} reaches {float(peak[axis]):.4g} m; coordinates beyond "
                                f"±{MAX_ABS_COORD:g} m are not a LiDAR scan (wrong units or a corrupt file?)")
    return arr


class Frame(NamedTuple):
    """A frame to process: its OpenPCDet frame id and a loader returning (N, ≥4) points."""

    frame_id: str
    load: Callable[[], np.ndarray]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` → ``(i, N)`` with 0 ≤ i < N."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError as err:
        raise ValueError(f"--shard must look like i/N (e.g. 0/4), got {text!r}") from err
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: need 0 <= i < N")
    return index, count


def select_shard(frames: Sequence[Frame], index: int, count: int) -> list[Frame]:
    """Every ``count``-th frame in frame-id order, starting at ``index``; raises on duplicates."""
    ordered = sorted(frames, key=lambda f: f.frame_id)
    for a, b in zip(ordered, ordered[1:]):
        if a.frame_id == b.frame_id:
            raise ValueError(f"frame id {a.frame_id!r} occurs twice in the frame source")
    return ordered[index::count]


FeatureFn = Callable[[np.ndarray], tuple[Union[np.ndarray, torch.Tensor], Union[np.ndarray, torch.Tensor]]]


def write_features(frames: Sequence[Frame], features_fn: FeatureFn, writer: FeatureCacheWriter,
                   shard: tuple[int, int] = (0, 1), progress: bool = True, verify: bool = False,
                   skip_bad_frames: bool = False) -> dict[str, Any]:
    """Fill the cache: compute and write every frame of the shard that is not yet complete.

    Args:
        frames: all frames (each shard sees the same list and takes its part).
        features_fn: points (N, ≥4) → (coords (M, 3) int, feats (M, C)) for one frame.
        writer: the cache to fill.
        shard: ``(i, N)``; frames already in the cache are skipped (resume).
        verify: load every frame already in the cache and write the broken ones again.
        skip_bad_frames: go on past a frame whose points fail :func:`check_points` (listed in
            ``bad_frames``) instead of stopping.

    Returns:
        Counts ``shard_frames``, ``skipped`` (already cached and, with ``verify``, readable),
        ``written``, ``empty`` (written without cells), and ``{frame_id: reason}`` maps
        ``broken_frames`` (found unreadable by ``verify``, written again) and ``bad_frames``.
    """
    mine = select_shard(frames, *shard)
    done = [f for f in mine if writer.has(f.frame_id)]
    broken: dict[str, str] = {}
    if verify and done:
        broken = FeatureCache(writer.cache_dir).check(f.frame_id for f in done)
        for frame_id, reason in broken.items():
            logger.warning("--verify: %s; writing it again", reason)
    todo = [f for f in mine if not writer.has(f.frame_id) or f.frame_id in broken]
    stale = writer.remove_stale_temps(f.frame_id for f in todo)
    logger.info("shard %d/%d: %d frames, %d already cached, %d to write%s", shard[0], shard[1],
                len(mine), len(mine) - len(todo), len(todo),
                f"; removed {stale} temp files of interrupted runs" if stale else "")
    bad: dict[str, str] = {}
    written = empty = 0
    for frame in tqdm(todo, unit="frame", desc=f"Seal features {shard[0]}/{shard[1]}",
                      disable=not progress):
        if frame.frame_id not in broken and writer.has(frame.frame_id):
            continue  # another writer (an overlapping run) finished it meanwhile
        try:
            points = check_points(frame.load(), frame.frame_id)
            coords, feats = features_fn(points)
        except BadFrameError as err:
            if not skip_bad_frames:
                raise
            logger.warning("skipping: %s", err)
            bad[frame.frame_id] = str(err)
            continue
        except Exception as err:
            raise SealCacheError(f"frame {frame.frame_id!r}: {type(err).__name__}: {err}") from err
        writer.write(frame.frame_id, coords, feats)
        written += 1
        empty += int(len(coords) == 0)
    return {"shard_frames": len(mine), "skipped": len(mine) - len(todo), "written": written, "empty": empty,
            "broken_frames": broken, "bad_frames": bad}

"""Offline Seal feature store (docs/cache-format.md): ``meta.json`` + one ``<frame_id>.npz`` per
frame with integer teacher-cell ``coords``, ``feats`` and the ``teacher_sha256`` that wrote it;
atomic writer, validating reader that joins rows by coordinate, and the resumable, shardable
frame loop that fills it.

Format version 2 records the teacher hash in every frame file, so a folder that mixes teachers
is detected frame by frame. Version-1 caches (frames without it) are refused by reader and writer
alike, naming the version: write their features again into a new folder.

Several processes — on several hosts over shared storage — may fill one cache. ``meta.json`` is
created exclusively (the first writer's settings win; a writer with other settings is refused),
frames appear only by atomic rename, and a temp file ``.<frame>.npz.<host>.<pid>.<random>.tmp``
is deleted only by a process on the same host that sees its pid gone. Hosts writing one cache
must therefore have distinct host names.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import re
import secrets
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from tqdm import tqdm

from ..targets import QUANT_MODES, join_by_coords

logger = logging.getLogger(__package__)  # "pcdet_seal.seal.cache", as before the move

PathLike = Union[str, os.PathLike]
FORMAT_VERSION = 2
DTYPES = ("float16", "int8")
META_FILE = "meta.json"
#: Array of every frame file naming the teacher (``meta.json``'s sha256) that wrote it.
FRAME_TEACHER_KEY = "teacher_sha256"
#: Points farther than this (metres, any axis) are refused as absurd before the teacher runs:
#: LiDARs reach a few hundred metres, and the teacher's sparse grid spans the cells' extent.
MAX_ABS_COORD = 1000.0
_INT8_MAX = 127
#: This host in temp-file names (no dots, so that names split unambiguously).
HOST = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "unknown-host"


class SealCacheError(RuntimeError):
    """The feature cache is missing, inconsistent with the config, or holds a bad file."""


class MissingFrameError(SealCacheError):
    """A frame has no file in the feature cache."""


class BadFrameError(SealCacheError):
    """A frame's point cloud cannot go through the teacher (NaN/inf or absurd coordinates)."""


@dataclasses.dataclass(frozen=True)
class CacheMeta:
    """Contents of ``meta.json``: who made the features and how rows are keyed."""

    teacher_id: str
    teacher_sha256: str
    quant_mode: str
    cell_size: tuple[float, float, float]
    feature_dim: int
    dtype: str = "float16"
    compressed: bool = False
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"cache dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.quant_mode not in QUANT_MODES:
            raise ValueError(f"cache quantisation must be one of {QUANT_MODES}, got {self.quant_mode!r}")
        if len(self.cell_size) != 3 or self.feature_dim <= 0:
            raise ValueError(f"bad cell_size {self.cell_size} or feature_dim {self.feature_dim}")

    def to_json(self) -> dict[str, Any]:
        """The ``meta.json`` layout."""
        return {
            "format_version": self.format_version,
            "teacher": {"id": self.teacher_id, "sha256": self.teacher_sha256},
            "quantization": {"mode": self.quant_mode, "cell_size": [float(v) for v in self.cell_size]},
            "feature_dim": self.feature_dim,
            "dtype": self.dtype,
            "compressed": self.compressed,
            "coords": "int32 (M, 3) teacher-cell indices, "
                      + ("(rho, phi, z)" if self.quant_mode == "cylindrical" else "(x, y, z)") + " order",
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> "CacheMeta":
        """Parse ``meta.json`` contents; errors name ``source`` and the bad key."""
        try:
            return cls(
                teacher_id=str(data["teacher"]["id"]),
                teacher_sha256=str(data["teacher"]["sha256"]),
                quant_mode=data["quantization"]["mode"],
                cell_size=tuple(float(v) for v in data["quantization"]["cell_size"]),
                feature_dim=int(data["feature_dim"]),
                dtype=data["dtype"],
                compressed=bool(data.get("compressed", False)),
                format_version=int(data["format_version"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise SealCacheError(f"{source}: malformed cache metadata ({type(err).__name__}: {err})") from err

    def mismatches(self, other: "CacheMeta") -> list[str]:
        """Differences that make two caches incompatible (compression is not one)."""
        fields = ("format_version", "teacher_id", "teacher_sha256", "quant_mode", "cell_size",
                  "feature_dim", "dtype")
        return [f"{f}: {getattr(other, f)!r} vs {getattr(self, f)!r}" for f in fields
                if getattr(self, f) != getattr(other, f)]


def check_frame_id(frame_id: str) -> str:
    """Frame ids become file names: reject empty ids, path separators and leading dots."""
    if not isinstance(frame_id, str) or not frame_id or frame_id.startswith(".") \
            or any(c in frame_id for c in ("/", "\\", "\0")):
        raise ValueError(f"frame id {frame_id!r} cannot name a cache file")
    return frame_id


def _meta_path(cache_dir: Path) -> Path:
    return cache_dir / META_FILE


def _temp_path(path: Path) -> Path:
    return path.parent / f".{path.name}.{HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def _write_temp(path: Path, write: Callable[[Any], None]) -> Path:
    """Write through ``write(file)`` into a fresh temp file next to ``path``, fsynced."""
    tmp = _temp_path(path)
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write through ``write(file)`` into ``.<name>.<host>.<pid>.<random>.tmp`` next to ``path``,
    fsync, then rename: readers see the old file or the complete new one, never a partial one."""
    tmp = _write_temp(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` only if it does not exist; True if this call created it.

    The complete file appears at once (a hard link of a fsynced temp file), so concurrent
    creators race safely: exactly one wins and readers never see a partial file. Where the file
    system has no hard links, ``O_EXCL`` creation is used instead.
    """
    tmp = _write_temp(path, lambda f: f.write(data))
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links here (some network or FUSE file systems)
        try:
            with open(path, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return True
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False


def temp_owner_gone(temp: Path) -> bool:
    """True only when the process that named ``temp`` provably no longer runs: the temp file
    names this host and a pid that does not exist. Other hosts' temps are never judged."""
    parts = temp.name.rsplit(".", 4)  # [".<frame>.npz", host, pid, random, "tmp"]
    if len(parts) != 5 or parts[4] != "tmp" or not parts[2].isdigit():
        return False
    return parts[1] == HOST and _pid_gone(int(parts[2]))


def read_meta(cache_dir: PathLike) -> CacheMeta:
    """Read ``<cache_dir>/meta.json``."""
    path = _meta_path(Path(cache_dir))
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise SealCacheError(f"{path}: no Seal feature cache here (meta.json missing)") from err
    except (OSError, json.JSONDecodeError) as err:
        raise SealCacheError(f"{path}: unreadable cache metadata ({err})") from err
    if not isinstance(data, dict):
        raise SealCacheError(f"{path}: cache metadata must be a JSON object, got {type(data).__name__}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        old = (" (its frames do not record their teacher, so a cache mixing teachers cannot be told "
               "apart)" if version == 1 else "")
        raise SealCacheError(f"{path}: cache format version {version!r}{old}; this version reads and "
                             f"writes version {FORMAT_VERSION} only. Write the features again into a new "
                             f"folder (scripts/seal_features.py).")
    return CacheMeta.from_json(data, str(path))


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


class FeatureCacheWriter:
    """Writes frames into a cache folder; creates ``meta.json`` or checks it matches ``meta``."""

    def __init__(self, cache_dir: PathLike, meta: CacheMeta) -> None:
        self.cache_dir = Path(cache_dir)
        self.meta = meta
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        meta_path = _meta_path(self.cache_dir)
        if not meta_path.exists():
            frames = sorted(p.name for p in self.cache_dir.glob("*.npz"))
            if frames and not meta_path.exists():  # (another writer may have just created both)
                raise SealCacheError(
                    f"{self.cache_dir}: holds {len(frames)} frame files (e.g. {frames[0]}) but no {META_FILE}, "
                    f"so which teacher wrote them is unknown; refusing to add frames. Restore its {META_FILE} "
                    f"or use an empty folder."
                )
            try:
                if not frames and create_exclusive(meta_path, json.dumps(meta.to_json(), indent=2).encode()):
                    return
            except OSError as err:
                raise SealCacheError(f"{meta_path}: cannot create the cache metadata ({type(err).__name__}: "
                                     f"{err})") from err
        diffs = _read_meta_settled(self.cache_dir).mismatches(meta)
        if diffs:
            raise SealCacheError(
                f"{meta_path}: existing cache was written with different settings "
                f"(existing vs requested): {'; '.join(diffs)}. Use another folder."
            )

    def path(self, frame_id: str) -> Path:
        """The file of ``frame_id``."""
        return self.cache_dir / f"{check_frame_id(frame_id)}.npz"

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
            pattern = glob.escape(str(self.cache_dir / f".{check_frame_id(frame_id)}.npz.")) + "*.tmp"
            for temp in map(Path, glob.glob(pattern)):
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
                raise SealCacheError(f"{_meta_path(self.cache_dir)}: {key} is {have!r} but the "
                                     f"config expects {want!r}")

    def path(self, frame_id: str) -> Path:
        """The file of ``frame_id``."""
        return self.cache_dir / f"{check_frame_id(frame_id)}.npz"

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
        if self.meta.dtype == "int8":
            scale = arrays.get("scale")
            if scale is None or scale.shape != () or not np.isfinite(scale) or scale <= 0:
                raise SealCacheError(f"{where}: int8 features need a positive scalar 'scale', got {scale!r}")
            values = feats.astype(np.float32) * np.float32(scale)
        else:
            values = feats.astype(np.float32)
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
        return sorted(p.name[: -len(".npz")] for p in self.cache_dir.glob("*.npz"))

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

"""The on-disk format of the feature cache (docs/cache-format.md): the folder layout, ``meta.json``
(:class:`CacheMeta`, read with :func:`read_meta`), frame ids as file names and the cache's errors.

Format version 2 records the teacher hash in every frame file, so a folder that mixes teachers
is detected frame by frame. Version-1 caches (frames without it) are refused by reader and writer
alike, naming the version: write their features again into a new folder.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Union

from ..targets import QUANT_MODES

PathLike = Union[str, os.PathLike]
FORMAT_VERSION = 2
DTYPES = ("float16", "int8")
META_FILE = "meta.json"
#: Every frame is one ``<frame_id>.npz`` next to ``meta.json``.
FRAME_SUFFIX = ".npz"
#: Array of every frame file naming the teacher (``meta.json``'s sha256) that wrote it.
FRAME_TEACHER_KEY = "teacher_sha256"


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


def meta_path(cache_dir: Path) -> Path:
    """The ``meta.json`` of a cache folder."""
    return cache_dir / META_FILE


def frame_path(cache_dir: Path, frame_id: str) -> Path:
    """The file of ``frame_id`` in a cache folder (reader and writer alike); ValueError for an id
    that cannot name a file (:func:`check_frame_id`)."""
    return cache_dir / f"{check_frame_id(frame_id)}{FRAME_SUFFIX}"


def read_meta(cache_dir: PathLike) -> CacheMeta:
    """Read ``<cache_dir>/meta.json``."""
    path = meta_path(Path(cache_dir))
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

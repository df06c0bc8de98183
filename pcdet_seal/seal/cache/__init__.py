"""Offline Seal feature store (docs/cache-format.md): ``meta.json`` + one ``<frame_id>.npz`` per
frame with integer teacher-cell ``coords``, ``feats`` and the ``teacher_sha256`` that wrote it;
atomic writer, validating reader that joins rows by coordinate, and the resumable, shardable
frame loop that fills it.

Several processes — on several hosts over shared storage — may fill one cache. ``meta.json`` is
created exclusively (the first writer's settings win; a writer with other settings is refused),
frames appear only by atomic rename, and a temp file ``.<frame>.npz.<host>.<pid>.<random>.tmp``
is deleted only by a process on the same host that sees its pid gone. Hosts writing one cache
must therefore have distinct host names.

One concept per module, every public name re-exported here:

- :mod:`.format` — the folder layout (:func:`frame_path`, :func:`meta_path`), ``meta.json``
  (:class:`CacheMeta`, :func:`read_meta`), frame ids as file names, the errors;
- :mod:`.codec` — float16 / int8 features in a frame file;
- :mod:`.reader` — :class:`FeatureCache`;
- :mod:`.writer` — :class:`FeatureCacheWriter`;
- :mod:`.job` — the frame loop: :class:`Frame`, shards, :func:`check_points`, :func:`write_features`;
- :mod:`._atomic` — atomic and exclusive file creation, temp files and their owners.
"""
from ._atomic import HOST, atomic_write, create_exclusive, temp_owner_gone
from .codec import decode_features, encode_features
from .format import (DTYPES, FORMAT_VERSION, FRAME_SUFFIX, FRAME_TEACHER_KEY, META_FILE, BadFrameError, CacheMeta,
                     MissingFrameError, PathLike, SealCacheError, check_frame_id, frame_path, meta_path, read_meta)
from .job import MAX_ABS_COORD, FeatureFn, Frame, check_points, parse_shard, select_shard, write_features
from .reader import FeatureCache
from .writer import FeatureCacheWriter

__all__ = [
    "DTYPES", "FORMAT_VERSION", "FRAME_SUFFIX", "FRAME_TEACHER_KEY", "HOST", "MAX_ABS_COORD", "META_FILE",
    "BadFrameError", "CacheMeta", "FeatureCache", "FeatureCacheWriter", "FeatureFn", "Frame", "MissingFrameError",
    "PathLike", "SealCacheError", "atomic_write", "check_frame_id", "check_points", "create_exclusive",
    "decode_features", "encode_features", "frame_path", "meta_path", "parse_shard", "read_meta", "select_shard",
    "temp_owner_gone", "write_features",
]

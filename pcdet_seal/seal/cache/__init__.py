"""Offline Seal feature store (docs/cache-format.md); the code is in :mod:`.format` for now."""
from .format import (DTYPES, FORMAT_VERSION, FRAME_TEACHER_KEY, HOST, MAX_ABS_COORD, META_FILE, BadFrameError,
                     CacheMeta, FeatureCache, FeatureCacheWriter, FeatureFn, Frame, MissingFrameError, PathLike,
                     SealCacheError, atomic_write, check_frame_id, check_points, create_exclusive, encode_features,
                     parse_shard, read_meta, select_shard, temp_owner_gone, write_features)

"""Offline Seal feature cache, the on-disk format (pcdet_seal.seal.cache.format): format version 2
records the teacher in every frame, version 1 is refused, frame ids cannot escape the folder, frames
without meta.json are not adopted."""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers_cache import cache_frame, cache_meta
from pcdet_seal.seal.cache import FORMAT_VERSION, FeatureCache, FeatureCacheWriter, SealCacheError


# --- issue 13: nothing wrong in silence -------------------------------------------------------

def test_every_frame_records_its_teacher_and_a_mixed_cache_is_refused_frame_by_frame(tmp_path):
    coords, feats = cache_frame()
    FeatureCacheWriter(tmp_path / "a", cache_meta(sha="aa" * 32)).write("f", coords, feats)
    FeatureCacheWriter(tmp_path / "b", cache_meta(sha="bb" * 32)).write("f", coords, feats)
    with np.load(tmp_path / "a" / "f.npz") as data:
        assert str(data["teacher_sha256"]) == "aa" * 32
    assert json.loads((tmp_path / "a" / "meta.json").read_text())["format_version"] == FORMAT_VERSION == 2
    (tmp_path / "b" / "f.npz").replace(tmp_path / "a" / "g.npz")  # a frame of teacher bb in cache aa
    cache = FeatureCache(tmp_path / "a")
    assert cache.load("f")[0].shape == coords.shape
    with pytest.raises(SealCacheError, match=r"frame 'g' \(.*g\.npz\): written by teacher bbbb.*names teacher "
                                             r"aaaa.*mixes teachers"):
        cache.load("g")
    assert list(cache.check()) == ["g"]


def test_frames_without_meta_are_refused_instead_of_adopted_by_another_teacher(tmp_path):
    coords, feats = cache_frame()
    FeatureCacheWriter(tmp_path, cache_meta(sha="aa" * 32)).write("old", coords, feats)
    (tmp_path / "meta.json").unlink()
    with pytest.raises(SealCacheError, match=r"holds 1 frame files \(e\.g\. old\.npz\) but no meta\.json"):
        FeatureCacheWriter(tmp_path, cache_meta(sha="bb" * 32))
    assert not (tmp_path / "meta.json").exists()


def test_a_version_1_cache_is_refused_by_reader_and_writer_naming_the_version(tmp_path):
    coords, feats = cache_frame()
    FeatureCacheWriter(tmp_path, cache_meta()).write("f", coords, feats)
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["format_version"] = 1
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with np.load(tmp_path / "f.npz") as data:  # a version-1 frame: no teacher hash
        np.savez(tmp_path / "f.npz", coords=data["coords"], feats=data["feats"])
    match = r"meta\.json: cache format version 1 \(its frames do not record their teacher.*version 2 only.*again"
    with pytest.raises(SealCacheError, match=match):
        FeatureCache(tmp_path)
    with pytest.raises(SealCacheError, match=match):
        FeatureCacheWriter(tmp_path, cache_meta())
    meta["format_version"] = 2  # a v1 frame under a v2 meta.json is still refused
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SealCacheError, match=r"frame 'f' .*no 'teacher_sha256' string"):
        FeatureCache(tmp_path).load("f")


@pytest.mark.parametrize("frame_id", ["../evil", "..", "/etc/passwd", "a/b", "a\\b", ".hidden", "", "x\0y"])
def test_frame_ids_cannot_escape_the_cache_on_read_or_write(tmp_path, frame_id):
    coords, feats = cache_frame(20)
    writer = FeatureCacheWriter(tmp_path / "c", cache_meta())
    with pytest.raises(ValueError, match="cannot name a cache file"):
        writer.write(frame_id, coords, feats)
    with pytest.raises(ValueError, match="cannot name a cache file"):
        FeatureCache(tmp_path / "c").load(frame_id)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["meta.json"]

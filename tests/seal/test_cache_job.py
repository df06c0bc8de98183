"""Offline Seal feature cache, the frame loop (pcdet_seal.seal.cache.job): resume after a killed
writer, shards, --verify, empty and bad frames, and scripts/seal_features.py end to end."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from helpers_cache import FP16_REL_ERR, cache_frame, cache_meta
from pcdet_seal.tools.cli import check_seal_cache, seal_features
from pcdet_seal.seal.cache import (BadFrameError, FeatureCache, FeatureCacheWriter, Frame, MissingFrameError,
                                   check_points, parse_shard, select_shard, write_features)


def test_a_killed_writer_leaves_no_readable_partial_file_and_resume_completes(tmp_path):
    # The child writes half of the file, then SIGKILLs itself: no cleanup code runs.
    child = textwrap.dedent(f"""
        import os, signal, numpy as np, torch
        from pcdet_seal.seal.cache import CacheMeta, FeatureCacheWriter
        meta = CacheMeta("seal-test", "ab" * 32, "cartesian", (0.32, 0.32, 0.1875), 64)
        writer = FeatureCacheWriter({str(tmp_path)!r}, meta)
        def dying_savez(f, **arrays):
            f.write(b"PK\\x03\\x04" + bytes(100000))
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        np.savez = dying_savez
        writer.write("frame_007", np.zeros((10, 3), np.int32), np.zeros((10, 64), np.float32))
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    leftovers = list(tmp_path.glob(".frame_007.npz.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 100000
    cache = FeatureCache(tmp_path)
    with pytest.raises(MissingFrameError, match=r"'frame_007' is not in the Seal feature cache: .*frame_007\.npz"):
        cache.load("frame_007")
    coords, feats = cache_frame()
    stats = write_features([Frame("frame_007", lambda: np.zeros((1, 4)))], lambda pts: (coords, feats),
                           FeatureCacheWriter(tmp_path, cache_meta()), progress=False)
    assert (stats["shard_frames"], stats["skipped"], stats["written"]) == (1, 0, 1)
    assert not list(tmp_path.glob("*.tmp"))  # the stale temp file was removed
    assert cache.load("frame_007")[0].shape == coords.shape


def test_resume_skips_finished_frames_and_shards_partition(tmp_path):
    calls: list[int] = []
    frames = [Frame(f"seq_{i:03d}", lambda i=i: np.full((5, 4), i, np.float32)) for i in range(7)]

    def features(points):
        calls.append(int(points[0, 0]))
        coords, feats = cache_frame(50, seed=int(points[0, 0]))
        return coords, feats

    writer = FeatureCacheWriter(tmp_path, cache_meta())
    shards = [select_shard(frames, i, 3) for i in range(3)]
    assert sorted(f.frame_id for s in shards for f in s) == sorted(f.frame_id for f in frames)
    assert [f.frame_id for f in shards[1]] == ["seq_001", "seq_004"]
    assert write_features(frames, features, writer, (1, 3), progress=False)["written"] == 2
    assert sorted(calls) == [1, 4]
    stats = write_features(frames, features, writer, (0, 1), progress=False)
    assert (stats["shard_frames"], stats["skipped"], stats["written"]) == (7, 2, 5)
    assert sorted(calls) == list(range(7))  # frames 1 and 4 were not recomputed
    assert write_features(frames, features, writer, progress=False)["written"] == 0
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "1", "a/b", "-1/2"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
    with pytest.raises(ValueError, match="'seq_001' occurs twice"):
        select_shard(frames + [frames[1]], 0, 1)


@pytest.mark.spconv
def test_seal_features_script_end_to_end(tmp_path, capsys):
    pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")
    from helpers_models import random_teacher_file
    from pcdet_seal.seal.checkpoint import load_teacher
    from pcdet_seal.seal.minkunet import Res16UNetArch
    from pcdet_seal.seal.targets import teacher_input

    arch = Res16UNetArch(out_channels=16, init_dim=8, planes=(8, 16, 16, 24, 16, 16, 8, 8))
    random_teacher_file(tmp_path / "teacher.pth", arch, seed=5)
    lidar = tmp_path / "lidar"
    lidar.mkdir()
    g = np.random.default_rng(0)
    clouds = {}
    for i in range(3):
        pts = np.concatenate([g.uniform(-20, 20, (800, 3)), g.uniform(0, 1, (800, 1))], 1).astype(np.float32)
        clouds[f"seq_{i:03d}"] = pts
        np.save(lidar / f"seq_{i:03d}.npy", pts)
    pts = np.concatenate([g.uniform(-20, 20, (500, 3)), g.uniform(0, 255, (500, 2))], 1).astype(np.float32)
    clouds["n015.pcd"] = pts
    pts.tofile(lidar / "n015.pcd.bin")
    script = seal_features
    out = tmp_path / "cache"
    common = ["--ckpt", str(tmp_path / "teacher.pth"), "--input", str(lidar), "--out", str(out),
              "--cell-size", "0.32", "0.32", "0.1875", "--bin-dims", "5", "--no-progress"]
    assert script.main(common + ["--shard", "1/2"]) == 0
    assert "2 frames written, 0 already cached, of 2" in capsys.readouterr().out
    assert script.main(common + ["--shard", "0/1"]) == 0
    assert "2 frames written, 2 already cached, of 4" in capsys.readouterr().out
    cache = FeatureCache(out, feature_dim=16, quant_mode="cartesian")
    teacher, meta = load_teacher(tmp_path / "teacher.pth")
    assert cache.meta.teacher_sha256 == meta["source_sha256"]
    for frame_id, points in clouds.items():
        p = torch.from_numpy(points)
        cells, feats = teacher_input(p, torch.zeros(len(p), dtype=torch.long), (0.32, 0.32, 0.1875))
        expect = teacher(cells.coords, feats)
        got, found = cache.lookup(frame_id, cells.coords[:, 1:])
        assert found.all()
        assert (got - expect).abs().max() <= FP16_REL_ERR + 1e-6
    assert script.main(common + ["--dtype", "int8"]) == 1  # settings differ from the existing cache
    assert "different settings" in capsys.readouterr().err
    # A cloud with NaN stops the shard naming the frame, before the teacher; --skip-bad-frames lists it.
    bad_dir = tmp_path / "bad_lidar"
    bad_dir.mkdir()
    np.save(bad_dir / "good.npy", clouds["seq_000"])
    broken = clouds["seq_001"].copy()
    broken[7, 2] = np.nan
    np.save(bad_dir / "nan_frame.npy", broken)
    bad_common = ["--ckpt", str(tmp_path / "teacher.pth"), "--input", str(bad_dir), "--out", str(tmp_path / "c2"),
                  "--cell-size", "0.32", "0.32", "0.1875", "--no-progress"]
    assert script.main(bad_common) == 1
    assert "frame 'nan_frame': 1 of 800 points hold NaN/inf (first: row 7" in capsys.readouterr().err
    assert script.main(bad_common + ["--skip-bad-frames"]) == 0
    out = capsys.readouterr().out
    assert "0 frames written, 1 already cached, of 2" in out  # 'good' was written before the stop
    assert "1 frames skipped (bad input, --skip-bad-frames):" in out
    assert "frame 'nan_frame': 1 of 800 points" in out
    (tmp_path / "c2" / "good.npz").write_bytes(b"truncated")
    assert script.main(bad_common + ["--skip-bad-frames", "--verify"]) == 0
    assert "1 frames rewritten (--verify found them unreadable):" in capsys.readouterr().out
    assert FeatureCache(tmp_path / "c2").check() == {}


# --- issue 13: nothing wrong in silence -------------------------------------------------------

def test_verify_rewrites_truncated_frames_and_the_cache_check_lists_them(tmp_path, capsys):
    frames = [Frame(f"s{i}", lambda i=i: np.full((5, 4), i, np.float32)) for i in range(3)]
    writer = FeatureCacheWriter(tmp_path, cache_meta())
    write_features(frames, lambda pts: cache_frame(50, seed=int(pts[0, 0])), writer, progress=False)
    path = tmp_path / "s1.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # e.g. a host lost power
    assert write_features(frames, lambda pts: cache_frame(50), writer, progress=False)["written"] == 0  # not verified
    script = check_seal_cache
    assert script.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "BAD s1: frame 's1'" in out and "2 of 3 frames good, 1 bad" in out
    stats = write_features(frames, lambda pts: cache_frame(50, seed=int(pts[0, 0])), writer, progress=False, verify=True)
    assert (stats["written"], stats["skipped"], list(stats["broken_frames"])) == (1, 2, ["s1"])
    assert "corrupt cache file" in stats["broken_frames"]["s1"]
    assert script.main([str(tmp_path)]) == 0
    assert "3 of 3 frames good, 0 bad" in capsys.readouterr().out
    assert script.main([str(tmp_path / "nothing")]) == 2


def test_an_empty_frame_is_written_with_a_warning_and_looks_up_as_not_found(tmp_path, caplog):
    writer = FeatureCacheWriter(tmp_path, cache_meta())
    with caplog.at_level("WARNING", logger="pcdet_seal.seal.cache"):
        stats = write_features([Frame("e", lambda: np.zeros((0, 4), np.float32))],
                               lambda pts: (np.zeros((0, 3), np.int32), np.zeros((0, 64), np.float32)),
                               writer, progress=False)
    assert stats["empty"] == 1 and "frame 'e': no teacher cells" in caplog.text
    feats, found = FeatureCache(tmp_path).lookup("e", torch.tensor([[1, 2, 3], [4, 5, 6]]))
    assert feats.shape == (2, 64) and not found.any() and not feats.any()


def test_bad_point_clouds_are_refused_before_the_teacher_or_skipped_and_listed(tmp_path):
    good = np.zeros((10, 4), np.float32)
    nan = good.copy()
    nan[3, 1] = np.nan
    far = good.copy()
    far[2, 0] = 1e7
    with pytest.raises(BadFrameError, match=r"frame 'n': 1 of 10 points hold NaN/inf \(first: row 3"):
        check_points(nan, "n")
    with pytest.raises(BadFrameError, match=r"frame 'x': x reaches 1e\+07 m"):
        check_points(far, "x")
    with pytest.raises(BadFrameError, match=r"frame 's': points must be a numeric \(N, >=4\) array"):
        check_points(np.zeros((5, 3)), "s")
    frames = [Frame("a_nan", lambda: nan), Frame("b_far", lambda: far), Frame("c_ok", lambda: good)]
    calls: list[int] = []

    def teacher(points):
        calls.append(len(points))
        return cache_frame(20)

    writer = FeatureCacheWriter(tmp_path, cache_meta())
    with pytest.raises(BadFrameError, match="frame 'a_nan'"):
        write_features(frames, teacher, writer, progress=False)
    assert calls == []  # the teacher never saw the bad cloud
    stats = write_features(frames, teacher, writer, progress=False, skip_bad_frames=True)
    assert sorted(stats["bad_frames"]) == ["a_nan", "b_far"] and stats["written"] == 1 and calls == [10]

"""Offline Seal feature cache: format round trips, coordinate join, atomic writes, resume,
shards, clear errors, and scripts/seal_features.py end to end."""
from __future__ import annotations

import errno
import importlib.util
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pcdet_seal.seal.cache import (FORMAT_VERSION, HOST, BadFrameError, CacheMeta, FeatureCache,
                                   FeatureCacheWriter, Frame, MissingFrameError, SealCacheError,
                                   check_points, parse_shard, select_shard, write_features)
from pcdet_seal.seal.targets import quantize, teacher_cells

ROOT = Path(__file__).resolve().parents[2]
FP16_REL_ERR = 2.0 ** -11  # half precision rounding, relative
SHA = np.asarray("ab" * 32)  # the teacher hash every frame file records


def _meta(dtype: str = "float16", dim: int = 64, compressed: bool = False, sha: str = "ab" * 32) -> CacheMeta:
    return CacheMeta(teacher_id="seal-test", teacher_sha256=sha, quant_mode="cartesian",
                     cell_size=(0.32, 0.32, 0.1875), feature_dim=dim, dtype=dtype, compressed=compressed)


def _frame(m: int = 500, dim: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    coords = torch.unique(torch.randint(-300, 300, (m, 3), generator=g), dim=0)
    coords = coords[torch.randperm(coords.shape[0], generator=g)].int()
    feats = torch.nn.functional.normalize(torch.randn(coords.shape[0], dim, generator=g), dim=1)
    return coords, feats


@pytest.mark.parametrize("dtype,compressed", [("float16", False), ("int8", False), ("int8", True)])
def test_round_trip_within_the_stated_error(tmp_path, dtype, compressed):
    coords, feats = _frame()
    writer = FeatureCacheWriter(tmp_path, _meta(dtype, compressed=compressed))
    path = writer.write("seg-1_000", coords, feats)
    assert path == tmp_path / "seg-1_000.npz"
    cache = FeatureCache(tmp_path, feature_dim=64, teacher_sha256="ab" * 32, quant_mode="cartesian",
                         cell_size=(0.32 + 1e-12, 0.32, 0.1875))  # float noise tolerated
    got, found = cache.lookup("seg-1_000", coords)
    assert found.all()
    err = (got - feats).abs()
    if dtype == "float16":
        assert (err <= feats.abs() * FP16_REL_ERR + 1e-7).all()
    else:
        with np.load(path) as data:
            scale = float(data["scale"])
            assert data["feats"].dtype == np.int8
        assert scale == pytest.approx(float(feats.abs().max()) / 127, rel=1e-6)
        assert err.max() <= scale / 2 + 1e-7
    stored, _ = cache.load("seg-1_000")
    assert stored.dtype == torch.int32 and stored.shape == coords.shape
    assert json.loads((tmp_path / "meta.json").read_text())["dtype"] == dtype


def test_join_is_by_coordinate_not_row_order(tmp_path):
    coords, feats = _frame(seed=1)
    writer = FeatureCacheWriter(tmp_path, _meta())
    writer.write("a", coords, feats)
    perm = torch.randperm(coords.shape[0], generator=torch.Generator().manual_seed(2))
    writer.write("b", coords[perm], feats[perm])  # same frame, shuffled rows
    cache = FeatureCache(tmp_path)
    query = torch.cat([coords[perm[:100]], torch.tensor([[999, 999, 999]], dtype=torch.int32)])
    for frame in ("a", "b"):
        got, found = cache.lookup(frame, query)
        assert found.tolist() == [True] * 100 + [False]
        assert (got[:100] - feats[perm[:100]]).abs().max() < 1e-3
        assert torch.equal(got[100], torch.zeros(64))


def test_cached_targets_follow_shuffled_points(tmp_path):
    # Teacher cells of a shuffled copy of the same scan get the same features per point.
    g = torch.Generator().manual_seed(3)
    xyz = torch.rand(3000, 3, generator=g) * 40 - 20
    cells = teacher_cells(xyz, torch.zeros(3000, dtype=torch.long), (0.32, 0.32, 0.1875))
    feats = torch.nn.functional.normalize(torch.randn(cells.coords.shape[0], 64, generator=g), dim=1)
    FeatureCacheWriter(tmp_path, _meta()).write("f", cells.coords[:, 1:], feats)
    cache = FeatureCache(tmp_path)
    perm = torch.randperm(3000, generator=g)
    per_point = []
    for points in (xyz, xyz[perm]):
        got, found = cache.lookup("f", quantize(points, cache.meta.cell_size))
        assert found.all()
        per_point.append(got)
    assert torch.equal(per_point[0][perm], per_point[1])


def test_a_full_disk_names_the_frame_and_path_and_leaves_nothing(tmp_path, monkeypatch):
    writer = FeatureCacheWriter(tmp_path, _meta())
    coords, feats = _frame()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(SealCacheError, match=r"frame 'x': cannot write .*x\.npz \(OSError: .*No space left"):
        writer.write("x", coords, feats)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


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
    coords, feats = _frame()
    stats = write_features([Frame("frame_007", lambda: np.zeros((1, 4)))], lambda pts: (coords, feats),
                           FeatureCacheWriter(tmp_path, _meta()), progress=False)
    assert (stats["shard_frames"], stats["skipped"], stats["written"]) == (1, 0, 1)
    assert not list(tmp_path.glob("*.tmp"))  # the stale temp file was removed
    assert cache.load("frame_007")[0].shape == coords.shape


def test_resume_skips_finished_frames_and_shards_partition(tmp_path):
    calls: list[int] = []
    frames = [Frame(f"seq_{i:03d}", lambda i=i: np.full((5, 4), i, np.float32)) for i in range(7)]

    def features(points):
        calls.append(int(points[0, 0]))
        coords, feats = _frame(50, seed=int(points[0, 0]))
        return coords, feats

    writer = FeatureCacheWriter(tmp_path, _meta())
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


def test_errors_name_the_frame_and_the_file(tmp_path):
    coords, feats = _frame()
    writer = FeatureCacheWriter(tmp_path, _meta())
    bad = feats.clone()
    bad[3, 5] = float("nan")
    with pytest.raises(SealCacheError, match=r"frame 'n1': 1 feature rows hold NaN/inf; not writing .*n1\.npz"):
        writer.write("n1", coords, bad)
    with pytest.raises(SealCacheError, match=r"frame 'n1': feats must be \(\d+, 64\), got \(\d+, 32\)"):
        writer.write("n1", coords, feats[:, :32])
    with pytest.raises(ValueError, match="frame id '../evil'"):
        writer.write("../evil", coords, feats)
    (tmp_path / "corrupt.npz").write_bytes(b"garbage")
    cache = FeatureCache(tmp_path)
    with pytest.raises(SealCacheError, match=r"frame 'corrupt' \(.*corrupt\.npz\): corrupt cache file"):
        cache.load("corrupt")
    zipped = FeatureCacheWriter(tmp_path / "z", _meta(compressed=True)).write("cut", coords, feats)
    zipped.write_bytes(zipped.read_bytes()[: zipped.stat().st_size // 2])
    with pytest.raises(SealCacheError, match=r"frame 'cut' \(.*cut\.npz\): corrupt cache file"):
        FeatureCache(tmp_path / "z").load("cut")
    np.savez(tmp_path / "nan.npz", coords=coords.numpy(), feats=bad.numpy().astype(np.float16), teacher_sha256=SHA)
    with pytest.raises(SealCacheError, match=r"frame 'nan' \(.*nan\.npz\): 1 feature rows hold NaN/inf"):
        cache.load("nan")
    np.savez(tmp_path / "wrongdim.npz", coords=coords.numpy(), feats=feats[:, :8].numpy().astype(np.float16), teacher_sha256=SHA)
    with pytest.raises(SealCacheError, match=r"frame 'wrongdim' .*feats must be float16 \(\d+, 64\), got float16"):
        cache.load("wrongdim")
    dup = np.concatenate([coords.numpy(), coords.numpy()[:1]])
    np.savez(tmp_path / "dup.npz", coords=dup, feats=np.zeros((len(dup), 64), np.float16), teacher_sha256=SHA)
    with pytest.raises(SealCacheError, match=r"frame 'dup' \(.*dup\.npz\): table holds 1 duplicate"):
        cache.lookup("dup", coords)
    with pytest.raises(SealCacheError, match=r"meta\.json: feature_dim is 64 but the config expects 96"):
        FeatureCache(tmp_path, feature_dim=96)
    with pytest.raises(SealCacheError, match=r"cell_size is \(0\.32, 0\.32, 0\.1875\) but the config expects \(0\.2, 0\.2, 0\.2\)"):
        FeatureCache(tmp_path, cell_size=[0.2, 0.2, 0.2])
    with pytest.raises(SealCacheError, match=r"teacher_sha256 is 'abab.*' but the config expects 'ff'"):
        FeatureCache(tmp_path, teacher_sha256="ff")
    with pytest.raises(SealCacheError, match=r"existing cache was written with different settings.*teacher_sha256"):
        FeatureCacheWriter(tmp_path, _meta(sha="cd" * 32))
    with pytest.raises(SealCacheError, match=r"empty.*meta\.json: no Seal feature cache here"):
        FeatureCache(tmp_path / "empty")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.spconv
def test_seal_features_script_end_to_end(tmp_path, capsys):
    pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")
    from me_reference import me_state_dict_spec, random_me_state_dict
    from pcdet_seal.seal.checkpoint import convert_checkpoint, load_teacher
    from pcdet_seal.seal.minkunet import Res16UNetArch
    from pcdet_seal.seal.targets import teacher_input

    arch = Res16UNetArch(out_channels=16, init_dim=8, planes=(8, 16, 16, 24, 16, 16, 8, 8))
    state = random_me_state_dict(me_state_dict_spec(1, 16, 8, arch.planes, arch.layers), seed=5)
    torch.save({"model_points": state}, tmp_path / "seal.pt")
    convert_checkpoint(tmp_path / "seal.pt", tmp_path / "teacher.pth", arch)
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
    script = _script("seal_features")
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

def test_every_frame_records_its_teacher_and_a_mixed_cache_is_refused_frame_by_frame(tmp_path):
    coords, feats = _frame()
    FeatureCacheWriter(tmp_path / "a", _meta(sha="aa" * 32)).write("f", coords, feats)
    FeatureCacheWriter(tmp_path / "b", _meta(sha="bb" * 32)).write("f", coords, feats)
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
    coords, feats = _frame()
    FeatureCacheWriter(tmp_path, _meta(sha="aa" * 32)).write("old", coords, feats)
    (tmp_path / "meta.json").unlink()
    with pytest.raises(SealCacheError, match=r"holds 1 frame files \(e\.g\. old\.npz\) but no meta\.json"):
        FeatureCacheWriter(tmp_path, _meta(sha="bb" * 32))
    assert not (tmp_path / "meta.json").exists()


@pytest.mark.parametrize("hard_links", [True, False])
def test_concurrent_writers_with_different_settings_exactly_one_wins(tmp_path, monkeypatch, hard_links):
    if not hard_links:  # file systems without hard links: O_EXCL creation
        def no_link(src, dst):
            raise PermissionError(errno.EPERM, "Operation not permitted")
        monkeypatch.setattr(os, "link", no_link)
    for attempt in range(5):
        folder = tmp_path / str(attempt)
        barrier = threading.Barrier(6)
        outcome: dict[str, str] = {}

        def start(sha: str) -> None:
            barrier.wait()
            try:
                FeatureCacheWriter(folder, _meta(sha=sha))
                outcome[sha] = "accepted"
            except SealCacheError as err:
                outcome[sha] = str(err)

        threads = [threading.Thread(target=start, args=(f"{i:02d}" * 32,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [sha for sha, result in outcome.items() if result == "accepted"]
        assert len(winners) == 1, outcome
        assert json.loads((folder / "meta.json").read_text())["teacher"]["sha256"] == winners[0]
        assert all("different settings" in r for sha, r in outcome.items() if sha != winners[0])
        assert sorted(p.name for p in folder.iterdir()) == ["meta.json"]  # no temp files left


def test_a_version_1_cache_is_refused_by_reader_and_writer_naming_the_version(tmp_path):
    coords, feats = _frame()
    FeatureCacheWriter(tmp_path, _meta()).write("f", coords, feats)
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["format_version"] = 1
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with np.load(tmp_path / "f.npz") as data:  # a version-1 frame: no teacher hash
        np.savez(tmp_path / "f.npz", coords=data["coords"], feats=data["feats"])
    match = r"meta\.json: cache format version 1 \(its frames do not record their teacher.*version 2 only.*again"
    with pytest.raises(SealCacheError, match=match):
        FeatureCache(tmp_path)
    with pytest.raises(SealCacheError, match=match):
        FeatureCacheWriter(tmp_path, _meta())
    meta["format_version"] = 2  # a v1 frame under a v2 meta.json is still refused
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SealCacheError, match=r"frame 'f' .*no 'teacher_sha256' string"):
        FeatureCache(tmp_path).load("f")


def test_an_overlapping_writer_does_not_delete_a_live_writers_temp_file(tmp_path, monkeypatch):
    coords, feats = _frame()
    first, second = FeatureCacheWriter(tmp_path, _meta()), FeatureCacheWriter(tmp_path, _meta())
    real_savez = np.savez

    def savez_while_another_run_starts(f, **arrays):
        real_savez(f, **arrays)
        assert second.remove_stale_temps(["f"]) == 0  # the other run resumes the same frame now

    monkeypatch.setattr(np, "savez", savez_while_another_run_starts)
    first.write("f", coords, feats)  # used to die with ENOENT at the rename
    assert FeatureCache(tmp_path).load("f")[0].shape == coords.shape


def test_only_temp_files_of_provably_gone_owners_are_removed(tmp_path):
    writer = FeatureCacheWriter(tmp_path, _meta())
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = tmp_path / f".f.npz.{HOST}.{sleeper.pid}.0a0b0c0d.tmp"
    gone = tmp_path / f".f.npz.{HOST}.{dead.pid}.0a0b0c0d.tmp"
    foreign = tmp_path / f".f.npz.other-host.{dead.pid}.0a0b0c0d.tmp"
    for temp in (live, gone, foreign):
        temp.write_bytes(b"partial")
    try:
        assert writer.remove_stale_temps(["f"]) == 1
        assert live.exists() and foreign.exists() and not gone.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert writer.remove_stale_temps(["f"]) == 1  # its owner is gone now
    assert not live.exists() and foreign.exists()  # another host's temp is never judged


def test_verify_rewrites_truncated_frames_and_the_cache_check_lists_them(tmp_path, capsys):
    frames = [Frame(f"s{i}", lambda i=i: np.full((5, 4), i, np.float32)) for i in range(3)]
    writer = FeatureCacheWriter(tmp_path, _meta())
    write_features(frames, lambda pts: _frame(50, seed=int(pts[0, 0])), writer, progress=False)
    path = tmp_path / "s1.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # e.g. a host lost power
    assert write_features(frames, lambda pts: _frame(50), writer, progress=False)["written"] == 0  # not verified
    script = _script("check_seal_cache")
    assert script.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "BAD s1: frame 's1'" in out and "2 of 3 frames good, 1 bad" in out
    stats = write_features(frames, lambda pts: _frame(50, seed=int(pts[0, 0])), writer, progress=False, verify=True)
    assert (stats["written"], stats["skipped"], list(stats["broken_frames"])) == (1, 2, ["s1"])
    assert "corrupt cache file" in stats["broken_frames"]["s1"]
    assert script.main([str(tmp_path)]) == 0
    assert "3 of 3 frames good, 0 bad" in capsys.readouterr().out
    assert script.main([str(tmp_path / "nothing")]) == 2


def test_every_read_error_is_a_cache_error_naming_frame_and_file(tmp_path):
    coords, feats = _frame(20)
    writer = FeatureCacheWriter(tmp_path, _meta())
    path = writer.write("f", coords, feats)
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    raw = members["coords.npy"]
    hlen = int.from_bytes(raw[8:10], "little")
    members["coords.npy"] = raw[:10] + b"{'descr': '<i4\n".ljust(hlen - 1) + b"\n" + raw[10 + hlen:]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    path.write_bytes(buf.getvalue())  # numpy raises tokenize.TokenError on this header
    with pytest.raises(SealCacheError, match=r"frame 'f' \(.*f\.npz\): corrupt cache file \(TokenError"):
        FeatureCache(tmp_path).load("f")


def test_an_empty_frame_is_written_with_a_warning_and_looks_up_as_not_found(tmp_path, caplog):
    writer = FeatureCacheWriter(tmp_path, _meta())
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
        return _frame(20)

    writer = FeatureCacheWriter(tmp_path, _meta())
    with pytest.raises(BadFrameError, match="frame 'a_nan'"):
        write_features(frames, teacher, writer, progress=False)
    assert calls == []  # the teacher never saw the bad cloud
    stats = write_features(frames, teacher, writer, progress=False, skip_bad_frames=True)
    assert sorted(stats["bad_frames"]) == ["a_nan", "b_far"] and stats["written"] == 1 and calls == [10]


@pytest.mark.parametrize("frame_id", ["../evil", "..", "/etc/passwd", "a/b", "a\\b", ".hidden", "", "x\0y"])
def test_frame_ids_cannot_escape_the_cache_on_read_or_write(tmp_path, frame_id):
    coords, feats = _frame(20)
    writer = FeatureCacheWriter(tmp_path / "c", _meta())
    with pytest.raises(ValueError, match="cannot name a cache file"):
        writer.write(frame_id, coords, feats)
    with pytest.raises(ValueError, match="cannot name a cache file"):
        FeatureCache(tmp_path / "c").load(frame_id)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["meta.json"]


def test_a_full_disk_while_creating_meta_names_the_file(tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(SealCacheError, match=r"meta\.json: cannot create the cache metadata \(OSError: .*No space"):
        FeatureCacheWriter(tmp_path, _meta())
    assert list(tmp_path.iterdir()) == []

"""Offline Seal feature cache, reader and writer (pcdet_seal.seal.cache.reader / .writer / .codec):
round trips within the stated error, the coordinate join, atomic writes, concurrent writers, temp
files of other writers, and errors that name the frame and the file."""
from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest
import torch

from helpers_cache import FP16_REL_ERR, SHA, cache_frame, cache_meta
from pcdet_seal.seal.cache import HOST, FeatureCache, FeatureCacheWriter, SealCacheError
from pcdet_seal.seal.targets import quantize, teacher_cells


@pytest.mark.parametrize("dtype,compressed", [("float16", False), ("int8", False), ("int8", True)])
def test_round_trip_within_the_stated_error(tmp_path, dtype, compressed):
    coords, feats = cache_frame()
    writer = FeatureCacheWriter(tmp_path, cache_meta(dtype, compressed=compressed))
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
    coords, feats = cache_frame(seed=1)
    writer = FeatureCacheWriter(tmp_path, cache_meta())
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
    FeatureCacheWriter(tmp_path, cache_meta()).write("f", cells.coords[:, 1:], feats)
    cache = FeatureCache(tmp_path)
    perm = torch.randperm(3000, generator=g)
    per_point = []
    for points in (xyz, xyz[perm]):
        got, found = cache.lookup("f", quantize(points, cache.meta.cell_size))
        assert found.all()
        per_point.append(got)
    assert torch.equal(per_point[0][perm], per_point[1])


def test_a_full_disk_names_the_frame_and_path_and_leaves_nothing(tmp_path, monkeypatch):
    writer = FeatureCacheWriter(tmp_path, cache_meta())
    coords, feats = cache_frame()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(SealCacheError, match=r"frame 'x': cannot write .*x\.npz \(OSError: .*No space left"):
        writer.write("x", coords, feats)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


def test_errors_name_the_frame_and_the_file(tmp_path):
    coords, feats = cache_frame()
    writer = FeatureCacheWriter(tmp_path, cache_meta())
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
    zipped = FeatureCacheWriter(tmp_path / "z", cache_meta(compressed=True)).write("cut", coords, feats)
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
        FeatureCacheWriter(tmp_path, cache_meta(sha="cd" * 32))
    with pytest.raises(SealCacheError, match=r"empty.*meta\.json: no Seal feature cache here"):
        FeatureCache(tmp_path / "empty")


# --- issue 13: nothing wrong in silence -------------------------------------------------------

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
                FeatureCacheWriter(folder, cache_meta(sha=sha))
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


def test_an_overlapping_writer_does_not_delete_a_live_writers_temp_file(tmp_path, monkeypatch):
    coords, feats = cache_frame()
    first, second = FeatureCacheWriter(tmp_path, cache_meta()), FeatureCacheWriter(tmp_path, cache_meta())
    real_savez = np.savez

    def savez_while_another_run_starts(f, **arrays):
        real_savez(f, **arrays)
        assert second.remove_stale_temps(["f"]) == 0  # the other run resumes the same frame now

    monkeypatch.setattr(np, "savez", savez_while_another_run_starts)
    first.write("f", coords, feats)  # used to die with ENOENT at the rename
    assert FeatureCache(tmp_path).load("f")[0].shape == coords.shape


def test_only_temp_files_of_provably_gone_owners_are_removed(tmp_path):
    writer = FeatureCacheWriter(tmp_path, cache_meta())
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


def test_every_read_error_is_a_cache_error_naming_frame_and_file(tmp_path):
    coords, feats = cache_frame(20)
    writer = FeatureCacheWriter(tmp_path, cache_meta())
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


def test_a_full_disk_while_creating_meta_names_the_file(tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(SealCacheError, match=r"meta\.json: cannot create the cache metadata \(OSError: .*No space"):
        FeatureCacheWriter(tmp_path, cache_meta())
    assert list(tmp_path.iterdir()) == []

"""scripts/seal_features.py --cfg over a Waymo / nuScenes split in OpenPCDet's on-disk layout:
every frame cached once under OpenPCDet's frame id, from the cloud as the loader builds it, in
shards and resumable; errors and a teacher of the wrong width refused before any frame."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.pcdet, pytest.mark.spconv]
pytest.importorskip("pcdet", reason="needs an importable OpenPCDet (pcdet) checkout")
pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")

from helpers_datasets import DATASETS, FP16_TOL, teacher_cells_and_features  # noqa: E402
from helpers_models import CFGS  # noqa: E402
from pcdet_seal.tools.cli import seal_features  # noqa: E402


def test_feature_generation_covers_the_split_under_openpcdet_frame_ids(written, teacher, capsys):
    """Every frame of the split is cached once, named by OpenPCDet's frame id, with the teacher's
    features of the cloud as OpenPCDet builds it (Waymo: tanh intensity, x/y range crop; nuScenes:
    10 sweeps shifted by their transforms, ego points dropped from the sweeps only)."""
    from pcdet_seal.seal.cache import FeatureCache

    name, cfg, expected, out, runs = written
    assert [code for code, _ in runs] == [0, 0, 0]
    assert sorted(p.name[:-4] for p in out.glob("*.npz")) == sorted(expected)
    cache = FeatureCache(out, feature_dim=64, quant_mode="cartesian",
                         cell_size=cfg.DATA_CONFIG.DATA_PROCESSOR[-1].VOXEL_SIZE)
    cell = cache.meta.cell_size
    for frame_id, want in expected.items():
        coords, feats = cache.load(frame_id)
        cells, teacher_feats = teacher_cells_and_features(teacher, want["xyz"], want["feature"], cell)
        assert {tuple(c) for c in coords.tolist()} == {tuple(c) for c in cells.tolist()}, frame_id
        got, found = cache.lookup(frame_id, cells)
        assert found.all()
        assert (got - teacher_feats).abs().max() <= FP16_TOL, frame_id


def test_script_shards_and_resumes(written):
    name, _, expected, out, runs = written
    n = len(expected)
    half = len(range(1, n, 2))
    assert f"shard 1/2: {half} frames written, 0 already cached, of {half}" in runs[0][1]
    assert f"shard 0/2: {n - half} frames written, 0 already cached, of {n - half}" in runs[1][1]
    assert f"shard 0/1: 0 frames written, {n} already cached, of {n}" in runs[2][1]
    assert not list(out.glob(".*.tmp"))


def test_script_errors_name_the_problem(written, teacher_file, tmp_path, capsys):
    name, cfg, _, _, _ = written
    cfg_name, _, _, set_prefix = DATASETS[name]
    script = seal_features
    base = ["--cfg", str(CFGS / cfg_name), "--ckpt", str(teacher_file), "--out", str(tmp_path / "c"), "--no-progress"]
    assert script.main(base + [*set_prefix, str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and str(tmp_path / "nothing") in err
    assert script.main(base + ["--tanh-feature"]) == 1
    assert "--tanh-feature" in capsys.readouterr().err
    assert script.main(base + ["--set", "DATA_CONFIG.NO_SUCH_KEY", "1"]) == 1
    assert "NO_SUCH_KEY" in capsys.readouterr().err


def test_a_teacher_of_another_width_than_the_config_is_refused_before_any_frame(written, teacher_file, tmp_path,
                                                                              capsys):
    name, cfg, _, _, _ = written
    cfg_name, _, _, set_prefix = DATASETS[name]
    out = tmp_path / "c"
    argv = ["--cfg", str(CFGS / cfg_name), *set_prefix, str(cfg.DATA_CONFIG.DATA_PATH),
            "MODEL.SEAL_TARGET.NUM_FEATURES", "32", "--ckpt", str(teacher_file), "--out", str(out), "--no-progress"]
    assert seal_features.main(argv) == 1
    err = capsys.readouterr().err
    assert "the teacher outputs 64 channels per cell but MODEL.SEAL_TARGET.NUM_FEATURES of" in err and "is 32" in err
    assert not out.exists() or not any(out.iterdir())

"""scripts/demo.py's guards, checked before any work: a non-empty --out needs --overwrite, and a
Seal teacher whose feature width differs from the config's is refused before the cache is written."""
from __future__ import annotations

import pytest

from pcdet_seal.tools.cli import demo


def test_a_non_empty_out_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "demo_results.json").write_text('{"first run": true}')
    assert demo.main(["--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out} is not empty" in err and "--overwrite" in err
    assert (out / "demo_results.json").read_text() == '{"first run": true}'  # nothing replaced
    assert sorted(p.name for p in out.iterdir()) == ["demo_results.json"]
    assert demo.build_parser().parse_args(["--out", str(out), "--overwrite"]).overwrite


@pytest.mark.pcdet
@pytest.mark.spconv
def test_a_teacher_of_the_wrong_width_is_refused_before_the_cache_is_written(tmp_path, capsys):
    pytest.importorskip("pcdet", reason="the demo needs an importable OpenPCDet (pcdet) checkout")
    pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")
    from helpers_models import random_teacher_file
    from pcdet_seal.seal.minkunet import Res16UNetArch

    arch = Res16UNetArch(out_channels=16, init_dim=8, planes=(8, 16, 16, 24, 16, 16, 8, 8))
    random_teacher_file(tmp_path / "seal16.pth", arch, seed=1)
    out = tmp_path / "demo"
    assert demo.main(["--quick", "--out", str(out), "--seal-ckpt", str(tmp_path / "seal16.pth")]) == 2
    err = capsys.readouterr().err
    assert "seal16.pth: the teacher outputs 16 channels per cell but MODEL.SEAL_TARGET.NUM_FEATURES of " \
           "seal_pretrain_tiny.yaml is 64" in err
    assert not list(out.rglob("*.npz")) and not list(out.rglob("meta.json"))


@pytest.mark.pcdet
@pytest.mark.spconv
def test_a_real_teacher_writes_the_synthetic_targets_through_the_feature_jobs_path(tmp_path):
    """The study's / demo's teacher step with a Seal checkpoint writes what the feature job's teacher
    function computes for each scene (one teacher → cache path for both)."""
    pytest.importorskip("pcdet", reason="needs an importable OpenPCDet (pcdet) checkout")
    pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")
    import torch

    from helpers_models import random_teacher_file
    from pcdet_seal.seal.cache import FeatureCache
    from pcdet_seal.seal.checkpoint import load_teacher
    from pcdet_seal.seal.minkunet import Res16UNetArch
    from pcdet_seal.seal.targets import teacher_features
    from pcdet_seal.synthetic import SyntheticConfig, generate_frame
    from pcdet_seal.tools.study import ARMS, QUICK_GRID, load_base_configs, pretrain_config
    from pcdet_seal.tools.synthetic_targets import write_targets

    arch = Res16UNetArch(out_channels=64, init_dim=8, planes=(8, 8, 16, 16, 16, 16, 8, 8))
    ckpt = random_teacher_file(tmp_path / "seal64.pth", arch, seed=2)
    cache = tmp_path / "cache"
    cfg = pretrain_config(load_base_configs()[0], QUICK_GRID, ARMS["picture"], cache, None)
    cfg.DATA_CONFIG.NUM_FRAMES.train = 2
    info = write_targets(cfg, cache, ckpt, torch.device("cpu"), progress=False)
    assert info["teacher"] == "seal"
    teacher, _ = load_teacher(ckpt, torch.device("cpu"))
    voxel = next(p.VOXEL_SIZE for p in cfg.DATA_CONFIG.DATA_PROCESSOR if "VOXEL_SIZE" in p)
    run = teacher_features(teacher, voxel, "cartesian", 3, 1.0)
    stored = FeatureCache(cache)
    assert len(stored.frame_ids()) == 2
    for index in range(2):
        frame = generate_frame(int(cfg.DATA_CONFIG.SEED.train), index, SyntheticConfig.from_dict(cfg.DATA_CONFIG.SYNTHETIC))
        coords, feats = run(frame["points"])
        got_coords, got_feats = stored.load(frame["frame_id"])
        assert torch.equal(got_coords.long(), coords.long())
        assert torch.allclose(got_feats.float(), feats.float(), atol=1e-2)  # the cache stores fp16

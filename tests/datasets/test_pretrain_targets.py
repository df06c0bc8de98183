"""The training side of the Waymo / nuScenes pre-training configs: Seal targets joined with the
cache by frame id for every batch of OpenPCDet's loader, the cache-miss policy
(MODEL.SEAL_TARGET.ON_MISSING) and its checks, the cylindrical cell defaults."""
from __future__ import annotations

import copy
import logging
import shutil

import pytest
import torch

pytestmark = [pytest.mark.pcdet, pytest.mark.spconv]
pytest.importorskip("pcdet", reason="needs an importable OpenPCDet (pcdet) checkout")
pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")

from helpers_datasets import FP16_TOL, LOGGER, teacher_cells_and_features  # noqa: E402
from helpers_models import random_teacher_file  # noqa: E402


def test_training_loader_finds_every_frame_in_the_cache(written, teacher):
    """The pre-training dataset built by OpenPCDet's build_dataloader (as tools/train.py does),
    batched, joined with the cache by SealTargetGenerator (cache mode): every frame id is found and
    every teacher cell of every batch cloud has its teacher feature."""
    from pcdet.datasets import build_dataloader

    from pcdet_seal.geometry import join_by_coords
    from pcdet_seal.models.seal_target import SealTargetGenerator
    from pcdet_seal.seal.targets import teacher_input

    name, cfg, expected, out, _ = written
    ds, loader, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=2, dist=False, workers=0,
                                     logger=LOGGER, training=True)
    assert type(ds).__name__ == cfg.DATA_CONFIG.DATASET and len(ds) == len(expected)
    target_cfg = copy.deepcopy(cfg.MODEL.SEAL_TARGET)
    target_cfg.update({"MODE": "cache", "CACHE_DIR": str(out)})
    gen = SealTargetGenerator(target_cfg, voxel_size=ds.voxel_size, point_cloud_range=ds.point_cloud_range)
    seen = []
    for batch in loader:
        assert "gt_boxes" not in batch
        points = torch.from_numpy(batch["points"])
        cells, feats_in = teacher_input(points[:, 1:], points[:, 0].long(), gen.cell_size)
        feats, valid = gen.cell_features(cells, feats_in, batch["frame_id"].tolist())
        assert valid.all()
        for b, frame_id in enumerate(batch["frame_id"].tolist()):
            seen.append(frame_id)
            rows = cells.coords[:, 0] == b
            want = expected[frame_id]
            ref_cells, ref_feats = teacher_cells_and_features(teacher, want["xyz"], want["feature"], gen.cell_size)
            index, found = join_by_coords(cells.coords[rows, 1:], ref_cells)
            assert found.all(), frame_id  # the batch cloud is the cloud the cache was written from
            assert (feats[rows] - ref_feats[index]).abs().max() <= FP16_TOL, frame_id
            if name == "nuscenes":
                lags = {round(float(v), 6) for v in points[points[:, 0] == b, 5].unique()}
                assert lags == want["lags"]  # Δt channel of the 10-sweep cloud
    assert sorted(seen) == sorted(expected)


def _missing_frame_setup(written, tmp_path, **target_keys):
    from pcdet.datasets import build_dataloader

    from pcdet_seal.models.seal_target import SealTargetGenerator
    from pcdet_seal.seal.targets import teacher_input

    name, cfg, expected, out, _ = written
    cache = tmp_path / "cache"
    shutil.copytree(out, cache)
    ds, _, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=2, dist=False, workers=0,
                                logger=LOGGER, training=True)
    batch = ds.collate_batch([ds[0], ds[1]])
    gone = str(batch["frame_id"][1])
    (cache / f"{gone}.npz").unlink()
    target_cfg = copy.deepcopy(cfg.MODEL.SEAL_TARGET)
    target_cfg.update({"MODE": "cache", "CACHE_DIR": str(cache), **target_keys})
    gen = SealTargetGenerator(target_cfg, voxel_size=ds.voxel_size, point_cloud_range=ds.point_cloud_range)
    points = torch.from_numpy(batch["points"])
    cells, feats_in = teacher_input(points[:, 1:], points[:, 0].long(), gen.cell_size)
    return gen, cells, feats_in, batch["frame_id"], gone, cache


def test_a_frame_missing_from_the_cache_is_an_error_naming_it_and_the_cache_dir(written, tmp_path):
    from pcdet_seal.seal.cache import MissingFrameError

    gen, cells, feats_in, frame_ids, gone, cache = _missing_frame_setup(written, tmp_path)
    assert gen.on_missing == "error" and gen.teacher is None
    with pytest.raises(MissingFrameError) as err:
        gen.cell_features(cells, feats_in, frame_ids)
    message = str(err.value)
    assert repr(gone) in message and str(cache) in message and "ON_MISSING" in message


def test_a_missing_frame_gets_the_online_teacher_when_configured(written, tmp_path, teacher_file, teacher, caplog):
    gen, cells, feats_in, frame_ids, gone, cache = _missing_frame_setup(
        written, tmp_path, ON_MISSING="online", TEACHER_CKPT=str(teacher_file))
    with caplog.at_level(logging.WARNING, logger="pcdet_seal.models.seal_target"):
        feats, valid = gen.cell_features(cells, feats_in, frame_ids)
    assert valid.all()
    assert any(gone in r.getMessage() and str(cache) in r.getMessage() for r in caplog.records)
    rows = cells.coords[:, 0] == 1
    online = teacher(torch.cat([torch.zeros_like(cells.coords[rows, :1]), cells.coords[rows, 1:]], 1), feats_in[rows])
    torch.testing.assert_close(feats[rows], online)
    assert feats[~rows].abs().sum() > 0 and valid[~rows].all()  # the cached frame still comes from the cache


def test_fallback_teacher_must_be_the_one_that_wrote_the_cache(written, tmp_path, teacher_file):
    """ON_MISSING online with another teacher's weights would mix two teachers' targets silently."""
    from pcdet_seal.seal.cache import SealCacheError
    from pcdet_seal.seal.checkpoint import load_teacher

    arch = load_teacher(teacher_file)[0].arch
    random_teacher_file(tmp_path / "other.pth", arch, seed=4)
    with pytest.raises(SealCacheError, match="teacher_sha256"):
        _missing_frame_setup(written, tmp_path, ON_MISSING="online", TEACHER_CKPT=str(tmp_path / "other.pth"))


def test_cylindrical_cells_default_to_slidr_sizes_not_the_voxel_size(written):
    from pcdet_seal.models.seal_target import SealTargetGenerator
    from pcdet_seal.seal.targets import SLIDR_CYLINDRICAL_CELL

    _, cfg, _, _, _ = written
    target_cfg = copy.deepcopy(cfg.MODEL.SEAL_TARGET)
    target_cfg.update({"MODE": "online", "RANDOM_TEACHER": True, "TEACHER_CKPT": "", "QUANT": "cylindrical",
                       "CELL_SIZE": None, "TEACHER_ARCH": {"planes": [8] * 8, "layers": [1] * 8, "init_dim": 8}})
    gen = SealTargetGenerator(target_cfg, voxel_size=[0.32, 0.32, 0.1875],
                              point_cloud_range=cfg.DATA_CONFIG.POINT_CLOUD_RANGE)
    assert gen.cell_size == list(SLIDR_CYLINDRICAL_CELL)


def test_on_missing_and_a_teacherless_fallback_are_rejected(written, tmp_path):
    from pcdet_seal.models.seal_target import SealTargetGenerator

    _, cfg, _, out, _ = written
    target_cfg = copy.deepcopy(cfg.MODEL.SEAL_TARGET)
    target_cfg.update({"MODE": "cache", "CACHE_DIR": str(out), "ON_MISSING": "zeros"})
    with pytest.raises(ValueError, match="ON_MISSING"):
        SealTargetGenerator(target_cfg, voxel_size=cfg.DATA_CONFIG.DATA_PROCESSOR[-1].VOXEL_SIZE,
                            point_cloud_range=cfg.DATA_CONFIG.POINT_CLOUD_RANGE)
    target_cfg.ON_MISSING = "online"
    with pytest.raises(ValueError, match="TEACHER_CKPT"):
        SealTargetGenerator(target_cfg, voxel_size=cfg.DATA_CONFIG.DATA_PROCESSOR[-1].VOXEL_SIZE,
                            point_cloud_range=cfg.DATA_CONFIG.POINT_CLOUD_RANGE)

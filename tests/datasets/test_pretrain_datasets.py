"""The box-free Waymo / nuScenes pre-training datasets (pcdet_seal.datasets.pretrain) on synthetic
trees in OpenPCDet's layouts: every frame kept under its own id without boxes or resampling, and
the real configs' path keys set with stock --set overrides."""
from __future__ import annotations

import copy

import pytest

pytestmark = [pytest.mark.pcdet, pytest.mark.spconv]
pytest.importorskip("pcdet", reason="needs an importable OpenPCDet (pcdet) checkout")
pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")

from helpers_datasets import LOGGER  # noqa: E402
from helpers_models import CFGS, load  # noqa: E402


def test_pretrain_datasets_need_no_boxes_and_keep_frame_ids(written):
    """Every frame (one without any box included) comes back as itself in training mode: no
    'resample when no box is left', no class-balanced resampling, no gt keys; evaluation is a note."""
    from pcdet.datasets import build_dataloader

    name, cfg, expected, _, _ = written
    ds, _, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=1, dist=False, workers=0,
                                logger=LOGGER, training=True)
    ids = [ds.frame_id_of(i) for i in range(len(ds))]
    assert sorted(ids) == sorted(expected)
    for i in range(len(ds)):
        item = ds[i]
        assert item["frame_id"] == ids[i]
        assert not {"gt_boxes", "gt_names", "num_points_in_gt"} & set(item)
    assert ds.evaluation([], [])[1] == {}
    data_cfg = copy.deepcopy(cfg.DATA_CONFIG)
    data_cfg.DATA_AUGMENTOR.AUG_CONFIG_LIST = [{"NAME": "random_world_flip", "ALONG_AXIS_LIST": ["x"]}]
    with pytest.raises(ValueError, match="AUG_CONFIG_LIST.*random_world_flip"):
        type(ds)(dataset_cfg=data_cfg, class_names=[], training=True, logger=LOGGER)


def test_nuscenes_balanced_resampling_without_classes(nuscenes):
    """Stock NuScenesDataset divides by zero with BALANCED_RESAMPLING and no classes; the
    pre-training class keeps every sample once."""
    from pcdet.datasets import NuScenesDataset

    name, cfg, expected, _, _ = nuscenes
    data_cfg = copy.deepcopy(cfg.DATA_CONFIG)
    data_cfg.BALANCED_RESAMPLING = True
    from pcdet_seal.datasets.pretrain import NuScenesPretrainDataset

    ds = NuScenesPretrainDataset(dataset_cfg=data_cfg, class_names=[], training=True, logger=LOGGER)
    assert sorted(ds.frame_id_of(i) for i in range(len(ds))) == sorted(expected)
    data_cfg.DATASET = "NuScenesDataset"
    with pytest.raises(ZeroDivisionError):
        NuScenesDataset(dataset_cfg=data_cfg, class_names=[], training=True, logger=LOGGER)


@pytest.mark.parametrize("name", ["seal_pretrain.yaml", "seal_pretrain_nuscenes.yaml"])
def test_paths_are_set_with_stock_set_overrides(name):
    """tools/train.py --set (pcdet.config.cfg_from_list) can fill the path keys and switch modes."""
    from pcdet.config import cfg_from_list

    cfg = load(CFGS / name)
    assert cfg.DATA_CONFIG.DATASET.endswith("PretrainDataset") and cfg.CLASS_NAMES == []
    cfg_from_list(["MODEL.SEAL_TARGET.MODE", "cache", "MODEL.SEAL_TARGET.CACHE_DIR", "/data/seal_cache",
                   "MODEL.SEAL_TARGET.TEACHER_CKPT", "/ckpt/seal_spconv.pth",
                   "MODEL.SEAL_TARGET.ON_MISSING", "online"], cfg)
    target = cfg.MODEL.SEAL_TARGET
    assert (target.MODE, target.CACHE_DIR, target.TEACHER_CKPT, target.ON_MISSING) == (
        "cache", "/data/seal_cache", "/ckpt/seal_spconv.pth", "online")

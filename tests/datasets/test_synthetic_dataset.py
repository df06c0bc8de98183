"""SyntheticLidarDataset: OpenPCDet's pipeline over the synthetic scenes, prediction dicts, evaluation."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pcdet = pytest.importorskip("pcdet", reason="needs OpenPCDet (pcdet) importable: a checkout + CPU mode is enough")
pytestmark = pytest.mark.pcdet

from easydict import EasyDict  # noqa: E402
from pcdet.config import cfg_from_yaml_file  # noqa: E402
from pcdet.datasets import build_dataloader  # noqa: E402

from pcdet_seal import register  # noqa: E402
from pcdet_seal.datasets import SyntheticLidarDataset  # noqa: E402
from pcdet_seal.datasets.synthetic_dataset import parse_frame_id  # noqa: E402

DEMO = Path(__file__).resolve().parents[2] / "cfgs" / "demo"
DATASET_YAML = DEMO / "synthetic_dataset.yaml"
CLASS_NAMES = ["Vehicle", "Pedestrian", "Cyclist"]
# Keys a demo config may set differently from synthetic_dataset.yaml (pre-training: no augmentation).
MAY_DIFFER = {"seal_pretrain_tiny.yaml": {"DATA_AUGMENTOR"}}


@pytest.fixture(scope="module")
def dataset_cfg() -> EasyDict:
    register()
    return cfg_from_yaml_file(str(DATASET_YAML), EasyDict())


def _dataset(cfg: EasyDict, training: bool) -> SyntheticLidarDataset:
    return SyntheticLidarDataset(copy.deepcopy(cfg), CLASS_NAMES, training=training)


def _demo_configs_on_synthetic() -> list[Path]:
    found = []
    for path in sorted(DEMO.glob("*.yaml")):
        data = yaml.safe_load(path.read_text()).get("DATA_CONFIG") or {}
        if data.get("DATASET") == "SyntheticLidarDataset":
            found.append(path)
    return found


@pytest.mark.parametrize("path", _demo_configs_on_synthetic(), ids=lambda p: p.name)
def test_inline_data_configs_equal_the_dataset_config(path):
    base = yaml.safe_load(DATASET_YAML.read_text())
    inline = yaml.safe_load(path.read_text())["DATA_CONFIG"]
    allowed = MAY_DIFFER.get(path.name, set())
    differing = {key for key in set(base) | set(inline) if base.get(key) != inline.get(key)}
    assert differing <= allowed, f"{path.name}: DATA_CONFIG differs from {DATASET_YAML.name} in {sorted(differing)}"


def test_registered_and_built_by_name(dataset_cfg):
    assert pcdet.datasets.__all__["SyntheticLidarDataset"] is SyntheticLidarDataset
    dataset, loader, _ = build_dataloader(dataset_cfg, CLASS_NAMES, batch_size=2, dist=False, workers=0,
                                          training=True)
    assert isinstance(dataset, SyntheticLidarDataset) and len(dataset) == dataset_cfg.NUM_FRAMES.train
    batch = next(iter(loader))
    assert batch["batch_size"] == 2 and batch["points"].shape[1] == 6  # batch index + 5 features
    assert set(np.unique(batch["points"][:, 0])) == {0.0, 1.0}
    assert batch["gt_boxes"].shape[0] == 2 and batch["gt_boxes"].shape[2] == 8  # 7-DoF + class index
    assert all(parse_frame_id(frame_id)[0] == dataset_cfg.SEED.train for frame_id in batch["frame_id"])


def test_test_split_is_deterministic_and_in_range(dataset_cfg):
    dataset = _dataset(dataset_cfg, training=False)
    first, again = dataset[1], dataset[1]
    assert first["frame_id"] == "synthetic_1_000001"
    np.testing.assert_array_equal(np.sort(first["points"], axis=0), np.sort(again["points"], axis=0))
    low, high = dataset.point_cloud_range[0:3], dataset.point_cloud_range[3:6]
    assert np.all(first["points"][:, 0:3] >= low) and np.all(first["points"][:, 0:3] <= high)
    labels = first["gt_boxes"][:, 7].astype(int)
    assert np.all((labels >= 1) & (labels <= 3))


def test_training_applies_the_configured_augmentation(dataset_cfg):
    augmented = _dataset(dataset_cfg, training=True)
    assert [a.NAME for a in augmented.dataset_cfg.DATA_AUGMENTOR.AUG_CONFIG_LIST] == \
        ["random_world_flip", "random_world_rotation", "random_world_scaling"]
    cfg = copy.deepcopy(dataset_cfg)
    cfg.DATA_AUGMENTOR.AUG_CONFIG_LIST = [EasyDict(NAME="random_world_scaling", WORLD_SCALE_RANGE=[1.25, 1.3])]
    scaled = _dataset(cfg, training=True)
    raw_sizes = scaled.frame(0)["gt_boxes"][:, 3:6]
    item = scaled[0]
    sizes = item["gt_boxes"][:, 3:6]
    assert len(sizes) > 0
    scale = item["noise_scale"]
    assert 1.25 <= scale <= 1.3
    for size in sizes:  # every kept box is a raw box scaled by the drawn factor
        assert np.isclose(raw_sizes * scale, size, rtol=1e-5).all(axis=1).any()


def test_frame_cache_returns_the_generated_frame_and_survives_in_place_changes(dataset_cfg):
    from pcdet_seal.synthetic import generate_frame

    dataset = _dataset(dataset_cfg, training=True)
    fresh = generate_frame(dataset.seed, 1, dataset.synthetic_config)
    first = dataset.frame(1)
    first["points"][:] = 0.0          # what an in-place augmentation could do
    first["gt_boxes"][:, 6] += 1.0
    second = dataset.frame(1)
    assert 1 in dataset._frames
    for key in ("points", "gt_boxes", "gt_names", "point_labels"):
        assert np.array_equal(second[key], fresh[key]), key
    truth = dataset.ground_truth(fresh["frame_id"])  # evaluation's lookup goes through the same cache
    assert np.array_equal(truth["gt_boxes"], fresh["gt_boxes"]) and np.array_equal(truth["gt_names"], fresh["gt_names"])
    other = dataset.ground_truth("synthetic_7_000001")  # another seed: regenerated, not cached
    assert np.array_equal(other["gt_boxes"], generate_frame(7, 1, dataset.synthetic_config)["gt_boxes"])
    assert list(dataset._frames) == [1]
    dataset.ground_truth(f"synthetic_{dataset.seed}_000002")  # a frame of this split not visited yet: now kept
    assert list(dataset._frames) == [1, 2]
    # training items with and without the cache are identical, augmentation included
    cfg = copy.deepcopy(dataset_cfg)
    cfg.FRAME_CACHE_SIZE = 0
    uncached = _dataset(cfg, training=True)
    for index in (0, 1, 0):
        np.random.seed(index)
        a = dataset[index]
        np.random.seed(index)
        b = uncached[index]
        assert np.array_equal(a["points"], b["points"]) and np.array_equal(a["gt_boxes"], b["gt_boxes"])
    assert not uncached._frames


def test_frame_cache_keeps_at_most_its_size(dataset_cfg):
    cfg = copy.deepcopy(dataset_cfg)
    cfg.FRAME_CACHE_SIZE = 2
    cfg.NUM_FRAMES.test = 3
    dataset = _dataset(cfg, training=False)
    for index in (0, 1, 0, 1):
        dataset.frame(index)
    assert list(dataset._frames) == [0, 1]
    dataset.frame(0)  # most recently used now: frame 1 goes first
    dataset.frame(2)
    assert list(dataset._frames) == [0, 2]
    cfg.FRAME_CACHE_SIZE = -1
    with pytest.raises(ValueError, match="FRAME_CACHE_SIZE"):
        _dataset(cfg, training=False)


def test_merge_all_iters_to_one_epoch(dataset_cfg):
    dataset = _dataset(dataset_cfg, training=True)
    dataset.merge_all_iters_to_one_epoch(merge=True, epochs=3)
    assert len(dataset) == 3 * dataset.num_frames
    assert dataset[dataset.num_frames]["frame_id"] == "synthetic_0_000000"


def test_missing_split_key_names_it(dataset_cfg):
    cfg = copy.deepcopy(dataset_cfg)
    del cfg["NUM_FRAMES"]
    with pytest.raises(KeyError, match="DATA_CONFIG.NUM_FRAMES.train"):
        SyntheticLidarDataset(cfg, CLASS_NAMES, training=True)
    with pytest.raises(ValueError, match="not a synthetic frame id"):
        parse_frame_id("segment-123_000")


def _predictions_from_gt(dataset: SyntheticLidarDataset, shift: float = 0.0) -> tuple[list[dict], dict]:
    """Prediction dicts (OpenPCDet's format) holding each test frame's in-range gt boxes."""
    pred_dicts, frame_ids = [], []
    for index in range(dataset.num_frames):
        item = dataset[index]
        boxes = torch.from_numpy(item["gt_boxes"][:, 0:7].copy())
        boxes[:, 0] += shift
        pred_dicts.append({"pred_boxes": boxes, "pred_scores": torch.linspace(0.9, 0.5, len(boxes)),
                           "pred_labels": torch.from_numpy(item["gt_boxes"][:, 7].astype(np.int64))})
        frame_ids.append(item["frame_id"])
    return pred_dicts, {"frame_id": np.array(frame_ids)}


def test_evaluation_scores_perfect_shifted_and_empty_predictions(dataset_cfg, tmp_path):
    dataset = _dataset(dataset_cfg, training=False)
    pred_dicts, batch = _predictions_from_gt(dataset)
    annos = dataset.generate_prediction_dicts(batch, pred_dicts, CLASS_NAMES, output_path=tmp_path)
    assert [a["frame_id"] for a in annos] == list(batch["frame_id"])
    lines = (tmp_path / f"{annos[0]['frame_id']}.txt").read_text().splitlines()
    assert len(lines) == len(annos[0]["name"]) and lines[0].split()[0] in CLASS_NAMES
    text, perfect = dataset.evaluation(annos, CLASS_NAMES)
    assert "AP_BEV" in text
    assert perfect["mAP_BEV"] == pytest.approx(1.0) and perfect["mAP_3D"] == pytest.approx(1.0)

    shifted_dicts, _ = _predictions_from_gt(dataset, shift=1.0)
    _, shifted = dataset.evaluation(dataset.generate_prediction_dicts(batch, shifted_dicts, CLASS_NAMES),
                                    CLASS_NAMES)
    assert shifted["mAP_3D"] < perfect["mAP_3D"]

    empty = [{"pred_boxes": torch.zeros(0, 7), "pred_scores": torch.zeros(0),
              "pred_labels": torch.zeros(0, dtype=torch.int64)} for _ in pred_dicts]
    _, none = dataset.evaluation(dataset.generate_prediction_dicts(batch, empty, CLASS_NAMES), CLASS_NAMES)
    assert none["mAP_BEV"] == 0.0

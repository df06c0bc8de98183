"""Frames of an OpenPCDet dataset split for the Seal feature cache: each cloud exactly as the
pre-training loader builds it (the pre-training dataset's own ``__getitem__``, no augmentation),
keyed by OpenPCDet's ``frame_id`` (docs/cache-format.md).
"""
from __future__ import annotations

import copy
import logging
from functools import partial
from typing import Any, Optional

import numpy as np

from pcdet_seal.seal.cache import Frame

from .pretrain import NuScenesPretrainDataset, PretrainDatasetMixin, WaymoPretrainDataset

logger = logging.getLogger(__name__)

#: ``DATA_CONFIG.DATASET`` → the pre-training class that reads the same files.
PRETRAIN_CLASSES: dict[str, type] = {
    "WaymoDataset": WaymoPretrainDataset,
    "WaymoPretrainDataset": WaymoPretrainDataset,
    "NuScenesDataset": NuScenesPretrainDataset,
    "NuScenesPretrainDataset": NuScenesPretrainDataset,
}
#: ``--split`` → OpenPCDet's dataset mode (``DATA_SPLIT`` / ``INFO_PATH`` key).
SPLIT_MODES = {"train": "train", "test": "test", "val": "test"}


def dataset_config(cfg: Any) -> Any:
    """``DATA_CONFIG`` of a model config, or the config itself when it is a dataset config."""
    data_cfg = cfg.get("DATA_CONFIG", cfg)
    if "DATASET" not in data_cfg:
        raise KeyError("config has neither DATA_CONFIG.DATASET (model config) nor DATASET (dataset config)")
    return data_cfg


def build_pretrain_dataset(data_cfg: Any, split: str = "train", class_names: Optional[list] = None,
                           root_path: Any = None, log: Optional[logging.Logger] = None) -> PretrainDatasetMixin:
    """The pre-training dataset over ``data_cfg``'s files, its augmentations removed.

    Args:
        data_cfg: an OpenPCDet ``DATA_CONFIG`` (stock ``WaymoDataset`` / ``NuScenesDataset`` or
            the plugin's pre-training classes).
        split: ``train`` (``DATA_SPLIT.train`` / ``INFO_PATH.train``) or ``val`` / ``test``
            (the test-mode entries: ``val`` in OpenPCDet's stock configs).
    """
    name = data_cfg.DATASET
    if name not in PRETRAIN_CLASSES:
        raise ValueError(f"DATASET {name!r}: Seal features from a dataset config support "
                         f"{sorted(PRETRAIN_CLASSES)}; for other data use --input or --source-fn")
    if split not in SPLIT_MODES:
        raise ValueError(f"split must be one of {sorted(SPLIT_MODES)}, got {split!r}")
    data_cfg = copy.deepcopy(data_cfg)
    augmentations = data_cfg.get("DATA_AUGMENTOR", {}).get("AUG_CONFIG_LIST", [])
    if augmentations:
        logger.info("ignoring the config's augmentations %s: Seal features are computed on un-augmented "
                    "clouds", [a.get("NAME", "?") for a in augmentations])
        data_cfg.DATA_AUGMENTOR.AUG_CONFIG_LIST = []
    return PRETRAIN_CLASSES[name](dataset_cfg=data_cfg, class_names=class_names, root_path=root_path,
                                  training=SPLIT_MODES[split] == "train",
                                  logger=log or logging.getLogger("pcdet_seal.datasets"))


def _load_points(dataset: PretrainDatasetMixin, index: int, frame_id: str) -> np.ndarray:
    data = dataset[index]
    if str(data["frame_id"]) != frame_id:
        raise ValueError(f"dataset item {index} is frame {data['frame_id']!r}, its info names {frame_id!r}")
    return data["points"]


def dataset_frames(dataset: PretrainDatasetMixin) -> list[Frame]:
    """One :class:`Frame` per info of ``dataset``; loading gives (N, F) points, x y z first, in
    the channel order the pre-training batch carries (``POINT_FEATURE_ENCODING``)."""
    return [Frame(dataset.frame_id_of(i), partial(_load_points, dataset, i, dataset.frame_id_of(i)))
            for i in range(len(dataset.infos))]

"""Build an OpenPCDet network from a config without its dataset on disk: the grid and feature
geometry come from ``DATA_CONFIG`` through OpenPCDet's own ``PointFeatureEncoder`` and
``DataProcessor`` (what ``DatasetTemplate`` does), which is all ``build_network`` reads."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml


class DatasetGeometry:
    """The attributes of a ``DatasetTemplate`` that network building uses, from ``DATA_CONFIG``."""

    def __init__(self, data_config: Any, class_names: list[str]) -> None:
        from pcdet.datasets.processor.data_processor import DataProcessor
        from pcdet.datasets.processor.point_feature_encoder import PointFeatureEncoder

        self.dataset_cfg = data_config
        self.class_names = list(class_names)
        self.point_cloud_range = np.array(data_config.POINT_CLOUD_RANGE, dtype=np.float32)
        self.point_feature_encoder = PointFeatureEncoder(data_config.POINT_FEATURE_ENCODING,
                                                         point_cloud_range=self.point_cloud_range)
        processor = DataProcessor(data_config.DATA_PROCESSOR, point_cloud_range=self.point_cloud_range,
                                  training=False, num_point_features=self.point_feature_encoder.num_point_features)
        self.grid_size = processor.grid_size
        self.voxel_size = processor.voxel_size
        self.depth_downsample_factor = None
        self.training = False


def build_network_from_config(cfg: Any):
    """``pcdet.models.build_network`` for ``cfg`` (a loaded OpenPCDet config) with no data files."""
    from pcdet.models import build_network

    geometry = DatasetGeometry(cfg.DATA_CONFIG, cfg.CLASS_NAMES)
    return build_network(model_cfg=cfg.MODEL, num_class=len(cfg.CLASS_NAMES), dataset=geometry)


def pcdet_tools_dir() -> Path:
    """OpenPCDet's ``tools/`` folder, next to the imported ``pcdet`` package."""
    import pcdet

    return Path(pcdet.__file__).resolve().parent.parent / "tools"


def load_config(path: Any):
    """Load an OpenPCDet config as ``tools/train.py`` does (a fresh EasyDict).

    ``_BASE_CONFIG_`` paths are opened relative to the working directory, as in OpenPCDet; when
    one is missing there, OpenPCDet's ``tools/`` folder is used instead (where the stock scripts run).
    """
    from easydict import EasyDict
    from pcdet.config import cfg_from_yaml_file

    path = Path(path).resolve()
    with open(path) as f:
        raw = yaml.safe_load(f)
    bases = [raw.get("_BASE_CONFIG_")] + [v.get("_BASE_CONFIG_") for v in raw.values() if isinstance(v, dict)]
    bases = [b for b in bases if b]
    where = Path.cwd()
    if bases and not all(Path(b).exists() for b in bases) and all((pcdet_tools_dir() / b).exists() for b in bases):
        where = pcdet_tools_dir()
    cfg = EasyDict()
    old = os.getcwd()
    os.chdir(where)
    try:
        cfg_from_yaml_file(str(path), cfg)
    finally:
        os.chdir(old)
    return cfg

"""OpenPCDet dataset classes of the plugin (they import pcdet)."""
from .pretrain import NuScenesPretrainDataset, WaymoPretrainDataset
from .synthetic_dataset import SyntheticLidarDataset

__all__ = ["NuScenesPretrainDataset", "SyntheticLidarDataset", "WaymoPretrainDataset"]

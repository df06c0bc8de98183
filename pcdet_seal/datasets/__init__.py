"""OpenPCDet dataset classes of the plugin (they import pcdet)."""
# First: with the start-up hook on, importing pcdet.datasets registers the plugin's classes, which
# imports the modules below; run it before they start importing, or the registration sees them
# half-initialised.
import pcdet.datasets  # noqa: F401  isort: skip

from .pretrain import NuScenesPretrainDataset, WaymoPretrainDataset
from .synthetic_dataset import SyntheticLidarDataset

__all__ = ["NuScenesPretrainDataset", "SyntheticLidarDataset", "WaymoPretrainDataset"]

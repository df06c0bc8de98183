"""Pre-training datasets (docs/method.md §1): OpenPCDet's own Waymo and nuScenes
classes with annotations dropped at load time, so that no frame needs a box, none is resampled
for lack of boxes, there is no class-balanced resampling, and ``frame_id`` passes through as is.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pcdet.datasets.nuscenes.nuscenes_dataset import NuScenesDataset
from pcdet.datasets.waymo.waymo_dataset import WaymoDataset

logger = logging.getLogger(__name__)


class PretrainDatasetMixin:
    """Turns an OpenPCDet dataset class into a box-free pre-training one (mix in first).

    Subclasses name the info keys holding annotations (``ANNOTATION_KEYS``), drop them in
    ``include_*_data`` via :meth:`_drop_annotations`, and say how an info names its frame
    (:meth:`frame_id_of`, exactly as the parent's ``__getitem__`` does).
    """

    ANNOTATION_KEYS: tuple[str, ...] = ()

    def __init__(self, dataset_cfg: Any, class_names: Any, training: bool = True, root_path: Any = None,
                 logger: Any = None) -> None:
        augmentations = [a.get("NAME", "?") for a in dataset_cfg.get("DATA_AUGMENTOR", {}).get("AUG_CONFIG_LIST", [])]
        if training and augmentations:
            raise ValueError(
                f"{type(self).__name__}: DATA_CONFIG.DATA_AUGMENTOR.AUG_CONFIG_LIST must be empty for "
                f"pre-training, got {augmentations} (there are no boxes to sample, and cached Seal features "
                "are keyed by the coordinates of the un-augmented cloud)")
        super().__init__(dataset_cfg=dataset_cfg, class_names=list(class_names or []), training=training,
                         root_path=root_path, logger=logger)

    def _drop_annotations(self) -> None:
        for info in self.infos:
            for key in self.ANNOTATION_KEYS:
                info.pop(key, None)

    def frame_id_of(self, index: int) -> str:
        """OpenPCDet's ``frame_id`` of ``self.infos[index]``, without loading the frame."""
        raise NotImplementedError

    def prepare_data(self, data_dict: dict) -> dict:
        """OpenPCDet's own ``prepare_data`` as it runs for a test split (point feature encoding and
        the data processors; no augmentor, no box filter, no "resample when no box is left"), also
        on the training split. The data processors keep their own train/test mode."""
        training, self.training = self.training, False
        try:
            return super().prepare_data(data_dict)
        finally:
            self.training = training

    def evaluation(self, det_annos: list, class_names: Any, **kwargs: Any) -> tuple[str, dict]:
        """Pre-training predicts no boxes: the stock test loop gets a note, not a box metric."""
        return "pre-training dataset: no box evaluation", {}


class WaymoPretrainDataset(PretrainDatasetMixin, WaymoDataset):
    """``WaymoDataset`` without ``annos``; frames are read by its ``get_lidar`` (tanh per
    ``POINTS_TANH_DIM``) and named ``<sequence>_<idx:03d>`` as in its infos."""

    ANNOTATION_KEYS = ("annos",)

    def include_waymo_data(self, mode: str):
        seq_name_to_infos = super().include_waymo_data(mode)
        self._drop_annotations()
        return seq_name_to_infos

    def frame_id_of(self, index: int) -> str:
        return str(self.infos[index]["frame_id"])


class NuScenesPretrainDataset(PretrainDatasetMixin, NuScenesDataset):
    """``NuScenesDataset`` without boxes and without class-balanced resampling; frames are built
    by its ``get_lidar_with_sweeps`` (``MAX_SWEEPS`` sweeps, Δt channel, ego points removed from
    the sweeps) and named ``Path(lidar_path).stem`` as in its ``__getitem__``."""

    ANNOTATION_KEYS = ("gt_boxes", "gt_names", "gt_boxes_velocity", "gt_boxes_token", "num_lidar_pts",
                       "num_radar_pts")

    def include_nuscenes_data(self, mode: str) -> None:
        super().include_nuscenes_data(mode)
        self._drop_annotations()

    def balanced_infos_resampling(self, infos: list) -> list:
        logger.warning("%s: BALANCED_RESAMPLING is on in the config but ignored (no class-balanced "
                       "resampling in pre-training; set it to False)", type(self).__name__)
        return infos

    def frame_id_of(self, index: int) -> str:
        return Path(self.infos[index]["lidar_path"]).stem

"""OpenPCDet dataset over the procedural scenes of :mod:`pcdet_seal.synthetic` (test and demo data).

Frames are generated on the fly, deterministically per (split seed, index): no files, no info
pickles. The stock pipeline applies (augmentations, point/voxel processing from the config), and
``evaluation()`` scores predictions with the synthetic AP metric (BEV and 3-D, rotated IoU).

Config keys (``DATA_CONFIG``), besides OpenPCDet's usual ``POINT_CLOUD_RANGE``,
``POINT_FEATURE_ENCODING``, ``DATA_AUGMENTOR``, ``DATA_PROCESSOR``:
    ``DATA_SPLIT``: ``{train: <name>, test: <name>}`` (names only label the splits);
    ``NUM_FRAMES``: ``{train: int, test: int}`` frames per split;
    ``SEED``: ``{train: int, test: int}`` scene seed per split (frames differ across seeds);
    ``SYNTHETIC``: generator settings, ``SyntheticConfig.from_dict`` keys (e.g. ``SENSOR.NUM_BEAMS``);
    ``EVAL_IOU_THRESHOLDS`` (optional): ``{Vehicle: 0.7, Pedestrian: 0.5, Cyclist: 0.5}``;
    ``FRAME_CACHE_SIZE`` (optional, default :data:`FRAME_CACHE_SIZE`): generated frames kept in
    memory (least recently used dropped first; 0 = none). A frame takes about 18 ms to generate
    and 0.15 MB to keep at the tiny configs' 16 beams; training visits each frame once per epoch.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from pcdet.datasets.dataset import DatasetTemplate
from pcdet.utils import box_utils

from pcdet_seal.synthetic import SyntheticConfig, generate_frame

logger = logging.getLogger(__name__)

FRAME_PREFIX = "synthetic"
#: Default ``DATA_CONFIG.FRAME_CACHE_SIZE``: frames kept in memory per dataset (and per loader worker).
FRAME_CACHE_SIZE = 256


def parse_frame_id(frame_id: str) -> tuple[int, int]:
    """``'synthetic_<seed>_<index:06d>'`` -> ``(seed, index)``."""
    parts = str(frame_id).split("_")
    if len(parts) != 3 or parts[0] != FRAME_PREFIX or not (parts[1].isdigit() and parts[2].isdigit()):
        raise ValueError(f"not a synthetic frame id: {frame_id!r} (expected '{FRAME_PREFIX}_<seed>_<index>')")
    return int(parts[1]), int(parts[2])


def _per_split(dataset_cfg: Any, key: str, mode: str) -> Any:
    values = dataset_cfg.get(key)
    if values is None or mode not in values:
        raise KeyError(f"DATA_CONFIG.{key}.{mode} is missing (SyntheticLidarDataset needs {key}: "
                       "{train: ..., test: ...})")
    return values[mode]


class SyntheticLidarDataset(DatasetTemplate):
    """OpenPCDet ``DatasetTemplate`` whose frames come from :func:`pcdet_seal.synthetic.generate_frame`."""

    def __init__(self, dataset_cfg: Any, class_names: Sequence[str], training: bool = True,
                 root_path: Optional[Path] = None, logger: Optional[logging.Logger] = None) -> None:
        if root_path is None:  # no data on disk: DATA_PATH is optional (gt sampling would need one)
            root_path = Path(dataset_cfg.get("DATA_PATH", "."))
        super().__init__(dataset_cfg=dataset_cfg, class_names=class_names, training=training,
                         root_path=root_path, logger=logger)
        self.split = _per_split(dataset_cfg, "DATA_SPLIT", self.mode)
        self.seed = int(_per_split(dataset_cfg, "SEED", self.mode))
        self.num_frames = int(_per_split(dataset_cfg, "NUM_FRAMES", self.mode))
        if self.num_frames <= 0 or self.seed < 0:
            raise ValueError(f"DATA_CONFIG: NUM_FRAMES.{self.mode} must be > 0 and SEED.{self.mode} >= 0, "
                             f"got {self.num_frames} and {self.seed}")
        self.synthetic_config = SyntheticConfig.from_dict(dataset_cfg.get("SYNTHETIC"))
        self.frame_cache_size = int(dataset_cfg.get("FRAME_CACHE_SIZE", FRAME_CACHE_SIZE))
        if self.frame_cache_size < 0:
            raise ValueError(f"DATA_CONFIG.FRAME_CACHE_SIZE must be >= 0, got {self.frame_cache_size}")
        self._frames: OrderedDict[int, dict[str, Any]] = OrderedDict()
        if self.logger is not None:
            self.logger.info(f"SyntheticLidarDataset: split {self.split!r}, {self.num_frames} frames, seed {self.seed}")

    def __len__(self) -> int:
        if self._merge_all_iters_to_one_epoch:
            return self.num_frames * self.total_epochs
        return self.num_frames

    def frame(self, index: int) -> dict[str, Any]:
        """The raw synthetic frame ``index`` of this split (see ``generate_frame``).

        Kept in memory up to ``FRAME_CACHE_SIZE`` frames; every call returns fresh copies of the
        arrays, so a caller that changes them in place (OpenPCDet's augmentations do) never
        changes what the next call returns.
        """
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame index {index} out of range for {self.num_frames} {self.mode} frames")
        frame = self._frames.get(index)
        if frame is None:
            frame = generate_frame(self.seed, index, self.synthetic_config)
            if self.frame_cache_size:
                self._frames[index] = frame
                while len(self._frames) > self.frame_cache_size:
                    self._frames.popitem(last=False)
        else:
            self._frames.move_to_end(index)
        return {key: value.copy() if isinstance(value, np.ndarray) else value for key, value in frame.items()}

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self._merge_all_iters_to_one_epoch:
            index = index % self.num_frames
        frame = self.frame(index)
        input_dict = {
            "frame_id": frame["frame_id"],
            "points": frame["points"],
            "gt_names": frame["gt_names"],
            "gt_boxes": frame["gt_boxes"],
        }
        return self.prepare_data(data_dict=input_dict)

    def ground_truth(self, frame_id: str) -> dict[str, np.ndarray]:
        """``{'gt_names': (M,), 'gt_boxes': (M, 7)}`` of a frame, from its id: a frame of this split through
        :meth:`frame` (and its cache), any other seed or index regenerated."""
        seed, index = parse_frame_id(frame_id)
        if seed == self.seed and 0 <= index < self.num_frames:
            frame = self.frame(index)
        else:
            frame = generate_frame(seed, index, self.synthetic_config)
        return {"gt_names": frame["gt_names"], "gt_boxes": frame["gt_boxes"]}

    def generate_prediction_dicts(self, batch_dict: dict, pred_dicts: list, class_names: Sequence[str],
                                  output_path: Optional[Path] = None) -> list[dict]:
        """OpenPCDet's prediction dicts; with ``output_path`` also one ``<frame_id>.txt`` per frame.

        Each line: ``name x y z dx dy dz heading score``.
        """
        annos = super().generate_prediction_dicts(batch_dict, pred_dicts, class_names, output_path=None)
        if output_path is not None:
            output_path = Path(output_path)
            output_path.mkdir(parents=True, exist_ok=True)
            for anno in annos:
                with open(output_path / f"{anno['frame_id']}.txt", "w") as f:
                    for name, box, score in zip(anno["name"], anno["boxes_lidar"], anno["score"]):
                        f.write(" ".join([str(name), *(f"{v:.4f}" for v in box[:7]), f"{score:.4f}"]) + "\n")
        return annos

    def evaluation(self, det_annos: list[dict], class_names: Sequence[str], **kwargs: Any) -> tuple[str, dict]:
        """AP (BEV and 3-D, R40) per class on the frames of ``det_annos`` with the synthetic metric.

        Ground truth is regenerated from each frame id, so it is the unaugmented scene; gt boxes
        whose centre lies outside ``POINT_CLOUD_RANGE`` are left out, as the training pipeline drops them.
        Returns ``(result_str, result_dict)`` as OpenPCDet's ``eval_utils`` expects.
        """
        from pcdet_seal.synthetic import metric

        thresholds = dict(self.dataset_cfg.get("EVAL_IOU_THRESHOLDS", {}) or {})
        gt_annos = [self._in_range(self.ground_truth(anno["frame_id"])) for anno in det_annos]
        results = metric.evaluate_ap(det_annos, gt_annos, class_names=list(class_names),
                                     iou_thresholds=thresholds or None)
        return metric.format_ap(results), results

    def _in_range(self, gt: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keep = box_utils.mask_boxes_outside_range_numpy(gt["gt_boxes"], self.point_cloud_range,
                                                         use_center_to_filter=True)
        return {"gt_names": gt["gt_names"][keep], "gt_boxes": gt["gt_boxes"][keep]}

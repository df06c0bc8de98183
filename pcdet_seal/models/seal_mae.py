"""``SealMAE``: the PICTURE pre-training detector (docs/method.md; docs/architecture.md §3).

VFE (stock) → Seal targets → masking → stock ``DSVT`` encoder on the visible voxels only →
decoder (``backbone_2d.*``) → reconstruction head (``dense_head.*``). Checkpoint keys of
``vfe.*`` and ``backbone_3d.*`` are those of a stock DSVT detector, so fine-tuning loads them.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import torch
from pcdet.models.detectors.detector3d_template import Detector3DTemplate

from pcdet_seal import registry
from pcdet_seal.geometry import grid_cells, point_to_voxel

from . import nonfinite
from .seal_target import SealTargetGenerator
from .voxel_masking import VoxelMasking

logger = logging.getLogger(__name__)


class SealMAE(Detector3DTemplate):
    """Masked pre-training with Seal feature and point reconstruction targets.

    Config blocks: ``VFE`` (stock, e.g. ``DynamicVoxelVFE``), ``SEAL_TARGET``, ``MASKING``,
    ``BACKBONE_3D`` (stock ``DSVT``), ``DECODER`` (``DSVTMaskDecoder`` | ``SparseConvDecoder``),
    ``DENSE_HEAD`` (``SealMAEHead``), ``POST_PROCESSING.RECALL_THRESH_LIST`` (for ``test.py``),
    ``ON_NONFINITE_LOSS`` (``error``, default: stop every rank at the first NaN/inf loss, naming the
    iteration, frames and loss terms; ``skip``: such a batch gives every parameter a zero gradient
    and its norm running statistics are restored — the optimizer's moments still advance).

    Training returns ``({'loss'}, tb_dict, disp_dict)``; evaluation returns one dict per frame with
    empty boxes (so the stock ``test.py`` runs) and the reconstructions of the masked voxels:
    ``masked_voxel_coords`` (M, 4), ``pred_points`` (M, P, 3) metres, ``pred_seal`` (M, C_t).
    """

    def __init__(self, model_cfg: Any, num_class: int, dataset: Any) -> None:
        super().__init__(model_cfg=model_cfg, num_class=num_class, dataset=dataset)
        self.module_topology = ["vfe", "seal_target", "masking", "backbone_3d", "backbone_2d", "dense_head"]
        self.on_nonfinite = nonfinite.check_policy(model_cfg.get("ON_NONFINITE_LOSS", None))
        self.batches_with_unvoxelized_points = 0
        self.module_list = self.build_networks()

    # --- building (Detector3DTemplate.build_networks calls build_<name>) ---------------------

    def build_seal_target(self, model_info_dict: dict):
        module = SealTargetGenerator(self.model_cfg.SEAL_TARGET, voxel_size=model_info_dict["voxel_size"],
                                     point_cloud_range=model_info_dict["point_cloud_range"])
        model_info_dict["module_list"].append(module)
        return module, model_info_dict

    def build_masking(self, model_info_dict: dict):
        module = VoxelMasking(self.model_cfg.MASKING, voxel_size=model_info_dict["voxel_size"],
                              point_cloud_range=model_info_dict["point_cloud_range"])
        model_info_dict["module_list"].append(module)
        return module, model_info_dict

    def encoder_stride(self) -> list[int]:
        """Total (x, y, z) downsampling of the DSVT encoder (product of ``downsample_stride``)."""
        strides = self.model_cfg.BACKBONE_3D.INPUT_LAYER.get("downsample_stride", [])
        return [math.prod(int(s[axis]) for s in strides) for axis in range(3)]

    def build_backbone_2d(self, model_info_dict: dict):
        cfg = self.model_cfg.DECODER
        decoders = registry.plugin_classes("backbone_2d")  # the decoders registered with OpenPCDet
        if cfg.NAME not in decoders:
            raise KeyError(f"MODEL.DECODER.NAME {cfg.NAME!r} is unknown; choose one of {sorted(decoders)}")
        module = decoders[cfg.NAME](cfg, input_channels=model_info_dict["num_point_features"],
                                      encoder_stride=self.encoder_stride(), grid_size=model_info_dict["grid_size"])
        model_info_dict["module_list"].append(module)
        model_info_dict["num_point_features"] = module.num_point_features
        return module, model_info_dict

    def build_dense_head(self, model_info_dict: dict):
        cfg = self.model_cfg.DENSE_HEAD
        heads = registry.plugin_classes("dense_head")  # the heads registered with OpenPCDet
        if cfg.NAME not in heads:
            raise KeyError(f"MODEL.DENSE_HEAD.NAME {cfg.NAME!r} is unknown for SealMAE; choose one of {sorted(heads)}")
        target_width = int(self.model_cfg.SEAL_TARGET.get("NUM_FEATURES", 64))
        head_width = int(cfg.get("NUM_SEAL_FEATURES", 64))
        if target_width != head_width:
            raise ValueError(f"MODEL.SEAL_TARGET.NUM_FEATURES ({target_width}) must equal "
                             f"MODEL.DENSE_HEAD.NUM_SEAL_FEATURES ({head_width}): the head predicts the Seal targets")
        module = heads[cfg.NAME](cfg, input_channels=model_info_dict["num_point_features"],
                                 voxel_size=model_info_dict["voxel_size"],
                                 point_cloud_range=model_info_dict["point_cloud_range"])
        model_info_dict["module_list"].append(module)
        return module, model_info_dict

    # --- running ---------------------------------------------------------------------------

    def run_encoder(self, batch_dict: dict) -> dict:
        """Stock DSVT on the visible voxels, in a dict of its own (DSVT overwrites its inputs)."""
        visible = ~batch_dict["mae_mask"]
        enc = self.backbone_3d({"voxel_features": batch_dict["voxel_features"][visible],
                                "voxel_coords": batch_dict["voxel_coords"][visible],
                                "batch_size": batch_dict["batch_size"]})
        batch_dict["encoder_features"] = enc["pillar_features"]
        batch_dict["encoder_coords"] = enc["voxel_coords"]
        return batch_dict

    def forward(self, batch_dict: dict):
        buffers = self._buffer_snapshot() if self.training and self.on_nonfinite == "skip" else None
        batch_dict = self.vfe(batch_dict)
        batch_dict["point2voxel"] = point_to_voxel(batch_dict["points"], batch_dict["voxel_coords"],
                                                   self.dataset.point_cloud_range, self.dataset.voxel_size,
                                                   self.dataset.grid_size)
        self.count_unvoxelized_points(batch_dict)
        batch_dict = self.seal_target(batch_dict)
        batch_dict = self.masking(batch_dict)
        batch_dict = self.run_encoder(batch_dict)
        batch_dict = self.backbone_2d(batch_dict)
        batch_dict = self.dense_head(batch_dict)
        if self.training:
            loss, tb_dict, disp_dict = self.get_training_loss(batch_dict)
            if nonfinite.check_loss(loss, tb_dict, batch_dict, int(self.global_step.item()), self.on_nonfinite):
                self._restore_buffers(buffers)
                loss = nonfinite.zero_loss(self.parameters(), loss)
                tb_dict = {**tb_dict, "loss": 0.0, "skipped_nonfinite": 1.0}
            return {"loss": loss}, tb_dict, disp_dict
        return self.post_processing(batch_dict), {}

    def count_unvoxelized_points(self, batch_dict: dict) -> int:
        """Points inside the grid that the VFE put in no voxel: counted into
        ``batch_dict['points_without_voxel']`` (logged to TensorBoard) and warned about, naming the
        frames (on the 1st, 2nd, 4th, 8th ... such batch). They get no reconstruction target."""
        _, inside = grid_cells(batch_dict["points"], self.dataset.point_cloud_range, self.dataset.voxel_size,
                               self.dataset.grid_size)
        missing = inside & (batch_dict["point2voxel"] < 0)
        count = int(missing.sum())
        batch_dict["points_without_voxel"] = count
        if count:
            self.batches_with_unvoxelized_points += 1
            seen = self.batches_with_unvoxelized_points
            if seen & (seen - 1) == 0:
                frames = nonfinite.frame_ids(batch_dict)
                rows = torch.unique(batch_dict["points"][missing, 0].long()).tolist()
                logger.warning("%d points inside the grid found no voxel (frames %s; batch %d with such points): "
                               "the VFE dropped them, so they get no reconstruction target", count,
                               [frames[b] if b < len(frames) else f"batch index {b}" for b in rows], seen)
        return count

    def _buffer_snapshot(self) -> dict[str, torch.Tensor]:
        return {name: buf.detach().clone() for name, buf in self.named_buffers() if name != "global_step"}

    def _restore_buffers(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Undo what a skipped batch wrote into running statistics (BatchNorm mean / var / count)."""
        with torch.no_grad():
            for name, buf in self.named_buffers():
                if name in snapshot:
                    buf.copy_(snapshot[name])

    def get_training_loss(self, batch_dict: dict):
        loss, tb_dict = self.dense_head.get_loss()
        n_voxels = batch_dict["voxel_coords"].shape[0]
        ratio = float(batch_dict["mask_stats"]["mask_ratio"])
        tb_dict = {"loss": loss.item(), **tb_dict, "mask_ratio": ratio, "num_voxels": n_voxels,
                   "points_without_voxel": batch_dict.get("points_without_voxel", 0),
                   "seal_valid_ratio": float(batch_dict["seal_valid"].float().mean()) if n_voxels else 0.0,
                   **self.masking.masker.log_scalars(batch_dict["mask_stats"])}
        return loss, tb_dict, {"mask_ratio": f"{ratio:.3f}"}

    def post_processing(self, batch_dict: dict) -> list[dict]:
        masked = batch_dict["mae_masked_index"]
        coords = batch_dict["voxel_coords"][masked]
        device = coords.device
        out = []
        for b in range(int(batch_dict["batch_size"])):
            rows = coords[:, 0] == b
            out.append({
                "pred_boxes": torch.zeros(0, 7, device=device),
                "pred_scores": torch.zeros(0, device=device),
                "pred_labels": torch.zeros(0, dtype=torch.long, device=device),
                "masked_voxel_coords": coords[rows],
                "pred_points": batch_dict["pred_points"][rows],
                "pred_seal": batch_dict["pred_seal"][rows],
            })
        return out

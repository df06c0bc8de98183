"""Reconstruction head of pre-training (docs/method.md §8): point offsets (Chamfer) and Seal
features (SmoothL1) for the masked voxels."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

from pcdet_seal.geometry import group_points, voxel_centres
from pcdet_seal.losses import chamfer_distance, masked_smooth_l1


#: ``MODEL.DENSE_HEAD.SEAL_TARGET_NORM`` values (docs/method.md §8)
SEAL_TARGET_NORMS = ("none", "channel")
#: lower bound of a channel's standard deviation under ``SEAL_TARGET_NORM: channel``
TARGET_STD_FLOOR = 1e-4


class SealMAEHead(nn.Module):
    """``Linear(C → P·3)`` offsets from the voxel centre (metres) and ``Linear(C → C_t)`` Seal features.

    Config (``MODEL.DENSE_HEAD``): ``NUM_PRED_POINTS`` P (16), ``NUM_GT_POINTS`` G (64),
    ``NUM_SEAL_FEATURES`` C_t (64), ``LOSS_WEIGHTS`` [coord, seal] ([1.0, 3.0]),
    ``SMOOTH_L1_BETA`` (1.0), ``CHAMFER_CHUNK`` (20000 voxels per cdist chunk),
    ``SEAL_TARGET_NORM`` (``none``: the paper's raw targets; ``channel``: each channel standardised
    with the mean and standard deviation of the batch's valid targets, see :meth:`target_stats`).

    Ground truth of a voxel: its first ≤ G points in stored (shuffled) order, minus its centre,
    with their count (no padding weight). L_coord: Chamfer summed over masked voxels / N_m;
    L_seal: SmoothL1 over masked ∧ valid voxels × C_t elements. Both terms depend on their layer
    even when no voxel is masked (a zero), so every step gives every parameter a gradient.
    With ``SEAL_TARGET_NORM: channel`` the feature branch learns standardised targets and
    ``pred_seal`` in the batch dict is mapped back to target units with the same statistics.
    """

    def __init__(self, model_cfg: Any, input_channels: int, voxel_size: Sequence[float],
                 point_cloud_range: Sequence[float], **kwargs: Any) -> None:
        super().__init__()
        self.model_cfg = model_cfg
        self.num_pred_points = int(model_cfg.get("NUM_PRED_POINTS", 16))
        self.num_gt_points = int(model_cfg.get("NUM_GT_POINTS", 64))
        self.num_seal_features = int(model_cfg.get("NUM_SEAL_FEATURES", 64))
        weights = list(model_cfg.get("LOSS_WEIGHTS", [1.0, 3.0]))
        if len(weights) != 2:
            raise ValueError(f"MODEL.DENSE_HEAD.LOSS_WEIGHTS must be [coord, seal], got {weights}")
        self.coord_weight, self.seal_weight = float(weights[0]), float(weights[1])
        self.beta = float(model_cfg.get("SMOOTH_L1_BETA", 1.0))
        self.chunk = int(model_cfg.get("CHAMFER_CHUNK", 20000))
        self.target_norm = str(model_cfg.get("SEAL_TARGET_NORM", "none"))
        if self.target_norm not in SEAL_TARGET_NORMS:
            raise ValueError(f"MODEL.DENSE_HEAD.SEAL_TARGET_NORM must be one of {SEAL_TARGET_NORMS}, "
                             f"got {self.target_norm!r}")
        self.voxel_size = [float(v) for v in voxel_size]
        self.point_cloud_range = [float(v) for v in point_cloud_range]
        self.point_pred = nn.Linear(input_channels, self.num_pred_points * 3)
        self.seal_pred = nn.Linear(input_channels, self.num_seal_features)
        self.forward_ret_dict: dict = {}

    @torch.no_grad()
    def target_stats(self, target: torch.Tensor, valid: torch.Tensor) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """Per-channel ``(mean, std)``, each (1, C_t), of the batch's valid targets (every voxel with a
        target, masked or not; no gradient), or ``None`` when ``SEAL_TARGET_NORM`` is ``none``.

        ``channel`` removes the direction all features share and weighs every channel by its spread,
        as MAE's normalised-pixel targets do for image patches: without it the feature loss of the
        stand-in teacher's targets is dominated by their common direction (docs/method.md §8).
        With fewer than two valid voxels the statistics are the identity (mean 0, std 1).
        """
        if self.target_norm == "none":
            return None
        rows = target[valid].float()
        if rows.shape[0] < 2:
            return target.new_zeros(1, target.shape[1]), target.new_ones(1, target.shape[1])
        mean = rows.mean(dim=0, keepdim=True)
        std = rows.std(dim=0, keepdim=True).clamp_min(TARGET_STD_FLOOR)
        return mean.to(target.dtype), std.to(target.dtype)

    def forward(self, batch_dict: dict) -> dict:
        feats = batch_dict["decoder_features"]
        masked = torch.nonzero(batch_dict["mae_mask"], as_tuple=True)[0]
        pred_points = self.point_pred(feats).view(-1, self.num_pred_points, 3)
        pred_seal = self.seal_pred(feats)
        coords = batch_dict["voxel_coords"][masked]
        centers = voxel_centres(coords, self.voxel_size, self.point_cloud_range)
        target, valid = batch_dict["seal_target"], batch_dict["seal_valid"]
        stats = self.target_stats(target, valid)
        target = target[masked]
        if stats is not None:  # the branch learns standardised targets; the batch dict gets target units
            target = (target - stats[0]) / stats[1]
            batch_dict["pred_seal_normalised"] = pred_seal
        batch_dict.update(mae_masked_index=masked, pred_point_offsets=pred_points,
                          pred_seal=pred_seal if stats is None else pred_seal * stats[1] + stats[0])
        if self.training:
            gt, counts = group_points(batch_dict["points"][:, 1:4], batch_dict["point2voxel"],
                                      batch_dict["voxel_coords"].shape[0], masked, self.num_gt_points)
            self.forward_ret_dict = {
                "pred_points": pred_points, "pred_seal": pred_seal,
                "gt_points": gt - centers[:, None, :], "gt_counts": counts,
                "seal_target": target, "seal_valid": valid[masked],
            }
        else:
            batch_dict["pred_points"] = pred_points + centers[:, None, :]
        return batch_dict

    @torch.no_grad()
    def predict_mean_loss(self, target: torch.Tensor, valid: torch.Tensor) -> float:
        """``loss_seal`` of predicting the mean masked target for every masked voxel: the level the
        Seal branch must beat to have learnt anything beyond the average feature (predicting zero is
        a far weaker baseline when targets share a common direction; docs/method.md §3)."""
        if not bool(valid.any()):
            return 0.0
        mean = target[valid].mean(dim=0, keepdim=True).expand_as(target)
        return float(masked_smooth_l1(mean, target, valid, beta=self.beta))

    def get_loss(self) -> tuple[torch.Tensor, dict]:
        """``(loss, tb_dict)`` with ``loss_coord``, ``loss_seal`` and the weighted total."""
        d = self.forward_ret_dict
        n = d["pred_points"].shape[0]
        if n == 0:  # nothing masked: a zero that still reaches point_pred (DDP needs every gradient)
            loss_coord = d["pred_points"].sum() * 0.0
        else:
            chamfer = chamfer_distance(d["pred_points"], d["gt_points"], d["gt_counts"], chunk_size=self.chunk)
            loss_coord = chamfer.sum() / n
        loss_seal = masked_smooth_l1(d["pred_seal"], d["seal_target"], d["seal_valid"], beta=self.beta)
        loss = self.coord_weight * loss_coord + self.seal_weight * loss_seal
        tb_dict = {"loss_coord": loss_coord.item(), "loss_seal": loss_seal.item(), "loss_mae": loss.item(),
                   "loss_seal_predict_mean": self.predict_mean_loss(d["seal_target"], d["seal_valid"]),
                   "num_masked": n, "num_masked_valid": int(d["seal_valid"].sum())}
        return loss, tb_dict

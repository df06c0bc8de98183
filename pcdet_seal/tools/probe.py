"""Frozen-encoder linear probe: how much superclass information the encoder's tokens carry.

The encoder (``vfe`` + ``backbone_3d`` of the fine-tuning network, loaded from a pre-training
checkpoint or randomly initialised) runs unmasked on every voxel of a synthetic scene; each voxel
takes its pillar's token, as the pre-training decoder does; its label is the majority superclass
of its points. A linear classifier with a fixed optimiser and step count is fitted on tokens of
pre-training scenes and scored by mIoU on val scenes, over the superclasses present in val.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ProbeRecipe:
    """The probe's fixed training recipe (identical for every arm)."""

    steps: int = 300
    lr: float = 0.01
    weight_decay: float = 1e-4
    batch_size: int = 4096
    max_train_voxels: int = 60_000


def majority_labels(point_labels: torch.Tensor, point2voxel: torch.Tensor, num_voxels: int,
                    num_classes: int) -> torch.Tensor:
    """(N_v,) int64 majority label of each voxel's points (ties to the lower label), -1 if none.

    Args:
        point_labels: (N_p,) int labels in ``[0, num_classes)``; point2voxel: (N_p,) voxel row, -1 outside.
    """
    keep = point2voxel >= 0
    counts = torch.zeros(num_voxels * num_classes, dtype=torch.long, device=point_labels.device)
    counts.index_add_(0, point2voxel[keep] * num_classes + point_labels[keep].long(),
                      torch.ones(int(keep.sum()), dtype=torch.long, device=point_labels.device))
    counts = counts.view(num_voxels, num_classes)
    labels = counts.argmax(dim=1)
    labels[counts.sum(dim=1) == 0] = -1
    return labels


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     recipe: ProbeRecipe = ProbeRecipe(), seed: int = 0) -> nn.Module:
    """Fit ``Linear(C, num_classes)`` (after standardisation with the train statistics) by Adam.

    Args:
        features: (N, C) float; labels: (N,) int64 in ``[0, num_classes)``.
        seed: fixes the subsample, the classifier's initialisation and the mini-batch order.
    """
    if features.shape[0] != labels.shape[0] or features.shape[0] == 0:
        raise ValueError(f"linear probe: {features.shape[0]} feature rows for {labels.shape[0]} labels")
    generator = torch.Generator().manual_seed(seed)
    if features.shape[0] > recipe.max_train_voxels:
        pick = torch.randperm(features.shape[0], generator=generator)[:recipe.max_train_voxels]
        features, labels = features[pick], labels[pick]
    features = features.float()
    mean, std = features.mean(0), features.std(0, unbiased=False).clamp(min=1e-6)
    linear = nn.Linear(features.shape[1], num_classes)
    with torch.no_grad():
        bound = 1.0 / features.shape[1] ** 0.5
        linear.weight.copy_(torch.empty_like(linear.weight).uniform_(-bound, bound, generator=generator))
        linear.bias.zero_()
    model = nn.Sequential(Standardize(mean, std), linear)
    optimizer = torch.optim.Adam(linear.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    x = (features - mean) / std
    with torch.enable_grad():
        for _ in range(recipe.steps):
            rows = torch.randint(0, x.shape[0], (min(recipe.batch_size, x.shape[0]),), generator=generator)
            loss = nn.functional.cross_entropy(linear(x[rows]), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


class Standardize(nn.Module):
    """``(x - mean) / std`` with fixed statistics."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def mean_iou(pred: torch.Tensor, labels: torch.Tensor, classes: Iterable[int]) -> float:
    """Mean over ``classes`` of ``|pred = c ∧ label = c| / |pred = c ∨ label = c|``."""
    ious = []
    for c in classes:
        union = int(((pred == c) | (labels == c)).sum())
        if union:
            ious.append(int(((pred == c) & (labels == c)).sum()) / union)
    if not ious:
        raise ValueError("mean_iou: none of the classes occurs in predictions or labels")
    return float(np.mean(ious))


def majority_class_miou(train_labels: torch.Tensor, val_labels: torch.Tensor, classes: Sequence[int]) -> float:
    """mIoU of the constant predictor that outputs the most frequent train label (the chance level)."""
    top = int(torch.bincount(train_labels).argmax())
    return mean_iou(torch.full_like(val_labels, top), val_labels, classes)


@torch.no_grad()
def encoder_voxel_tokens(model: Any, points: np.ndarray, point_labels: np.ndarray, num_classes: int,
                         device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pillar token and majority label of every voxel of one frame.

    Args:
        model: an OpenPCDet detector with ``vfe`` and a ``backbone_3d`` returning pillar tokens
            (DSVT), in eval mode; its ``dataset`` gives the grid.
        points: (N, F) x, y, z and features in the dataset's point-feature order, already cropped
            to the point-cloud range; point_labels: (N,) superclass per point.

    Returns:
        ``(tokens (N_v, C), labels (N_v,))`` for the voxels that hold at least one point.
    """
    from pcdet_seal.geometry import join_by_coords, point_to_voxel

    pts = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)).to(device)
    pts = torch.cat([pts.new_zeros(pts.shape[0], 1), pts], dim=1)
    batch = model.vfe({"points": pts, "batch_size": 1})
    coords = batch["voxel_coords"].clone()
    dataset = model.dataset
    p2v = point_to_voxel(pts, coords, dataset.point_cloud_range, dataset.voxel_size, dataset.grid_size)
    labels = majority_labels(torch.from_numpy(np.asarray(point_labels)).to(device).long(), p2v, coords.shape[0],
                             num_classes)
    enc = model.backbone_3d({"voxel_features": batch["voxel_features"], "voxel_coords": coords,
                             "batch_size": 1})
    pillars = enc["voxel_coords"].long()
    query = torch.stack([coords[:, 0], torch.zeros_like(coords[:, 0]), coords[:, 2], coords[:, 3]], dim=1).long()
    table = torch.stack([pillars[:, 0], torch.zeros_like(pillars[:, 0]), pillars[:, 2], pillars[:, 3]], dim=1)
    index, found = join_by_coords(query, table)
    if not bool(found.all()):
        raise RuntimeError(f"linear probe: {int((~found).sum())} of {found.numel()} voxels have no pillar token")
    keep = labels >= 0
    return enc["pillar_features"][index][keep].cpu(), labels[keep].cpu()


def probe_miou(train_tokens: torch.Tensor, train_labels: torch.Tensor, val_tokens: torch.Tensor,
               val_labels: torch.Tensor, num_classes: int, recipe: ProbeRecipe = ProbeRecipe(),
               seed: int = 0, classes: Optional[Sequence[int]] = None) -> dict[str, float]:
    """Fit on train tokens, score on val: ``{"probe_miou", "majority_miou", "classes"}``.

    ``classes`` defaults to the labels present in val.
    """
    classes = sorted(int(c) for c in torch.unique(val_labels)) if classes is None else list(classes)
    probe = fit_linear_probe(train_tokens, train_labels, num_classes, recipe, seed)
    with torch.no_grad():
        pred = probe(val_tokens.float()).argmax(dim=1)
    return {"probe_miou": mean_iou(pred, val_labels, classes),
            "majority_miou": majority_class_miou(train_labels, val_labels, classes),
            "classes": classes}


def synthetic_frames(data_config: Any, split: str, count: int) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """``(points, point_labels)`` of the first ``count`` synthetic scenes of ``split`` (``train`` or
    ``test``), cropped to ``POINT_CLOUD_RANGE`` as the dataset's first processor does."""
    from pcdet.utils.common_utils import mask_points_by_range

    from pcdet_seal.synthetic import SyntheticConfig, generate_frame

    synthetic = SyntheticConfig.from_dict(data_config.get("SYNTHETIC"))
    limits = np.asarray(data_config.POINT_CLOUD_RANGE, dtype=np.float32)
    for index in range(count):
        frame = generate_frame(int(data_config.SEED[split]), index, synthetic)
        keep = mask_points_by_range(frame["points"], limits)  # x and y only; the VFE drops the rest in z
        yield frame["points"][keep], frame["point_labels"][keep]


def encoder_probe(finetune_cfg: Any, checkpoint: Optional[Any], seed: int, train_frames: int, val_frames: int,
                  device: torch.device, recipe: ProbeRecipe = ProbeRecipe()) -> dict[str, Any]:
    """Linear probe of the fine-tuning network's encoder: loaded from ``checkpoint`` (100 % of
    ``vfe.*`` and ``backbone_3d.*`` or an error), or randomly initialised with ``seed`` when
    ``checkpoint`` is None. Tokens of ``train_frames`` pre-training scenes fit the probe; mIoU is
    measured on ``val_frames`` val scenes."""
    from pcdet_seal.tools.config_network import build_network_from_config
    from pcdet_seal.synthetic.labels import SUPERCLASSES
    from pcdet_seal.tools.training import load_encoder, seed_everything

    seed_everything(seed)
    model = build_network_from_config(finetune_cfg)
    if checkpoint is not None:
        load_encoder(model, checkpoint, device, desc="linear probe")
    model.to(device).eval()
    num_classes = len(SUPERCLASSES)

    def tokens(split: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [encoder_voxel_tokens(model, points, labels, num_classes, device)
                 for points, labels in synthetic_frames(finetune_cfg.DATA_CONFIG, split, count)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    train_x, train_y = tokens("train", train_frames)
    val_x, val_y = tokens("test", val_frames)
    return probe_miou(train_x, train_y, val_x, val_y, num_classes, recipe, seed)

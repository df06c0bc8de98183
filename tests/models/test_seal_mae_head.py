"""SealMAEHead's Seal-target normalisation (``SEAL_TARGET_NORM``): ``none`` leaves the paper's loss
as it was, ``channel`` standardises targets with the batch's valid-target statistics and maps the
prediction back to target units."""
from __future__ import annotations

import pytest
import torch
from easydict import EasyDict

from pcdet_seal.models.seal_mae_head import SealMAEHead

VOXEL, RANGE = [0.4, 0.4, 0.4], [0.0, 0.0, 0.0, 4.0, 4.0, 4.0]


def _head(norm: str) -> SealMAEHead:
    torch.manual_seed(0)
    return SealMAEHead(EasyDict(NUM_SEAL_FEATURES=4, NUM_PRED_POINTS=2, NUM_GT_POINTS=4, SEAL_TARGET_NORM=norm),
                       8, VOXEL, RANGE)


def _batch(target: torch.Tensor, valid: torch.Tensor) -> dict:
    """Six voxels of one frame, one point each; voxels 1, 2, 4 and 5 are masked (decoder rows)."""
    n = target.shape[0]
    mask = torch.tensor([0, 1, 1, 0, 1, 1]).bool()
    coords = torch.tensor([[0, 0, 0, i] for i in range(n)], dtype=torch.int32)
    points = torch.zeros(n, 4)
    points[:, 1] = (torch.arange(n) + 0.5) * VOXEL[0]
    points[:, 2:4] = 0.2
    gen = torch.Generator().manual_seed(1)
    return {"decoder_features": torch.randn(int(mask.sum()), 8, generator=gen), "mae_mask": mask,
            "voxel_coords": coords, "points": points, "point2voxel": torch.arange(n),
            "seal_target": target, "seal_valid": valid}


def _targets() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    target = torch.tensor([0.9, 0.3, 0.0, 0.1]) + 0.2 * torch.randn(6, 4, generator=gen)
    valid = torch.tensor([1, 1, 1, 1, 1, 0]).bool()
    target[5] = 50.0  # an invalid row: part of neither the statistics nor the loss
    return target, valid


def test_unknown_norm_is_refused():
    with pytest.raises(ValueError, match="SEAL_TARGET_NORM must be one of"):
        _head("batch")


def test_none_keeps_raw_targets_and_predictions():
    head = _head("none").train()
    target, valid = _targets()
    data = head(_batch(target, valid))
    assert head.target_stats(target, valid) is None
    masked = data["mae_masked_index"]
    assert torch.equal(head.forward_ret_dict["seal_target"], target[masked])
    assert torch.equal(data["pred_seal"], head.forward_ret_dict["pred_seal"])
    assert "pred_seal_normalised" not in data


def test_channel_standardises_with_the_valid_targets_of_the_batch():
    head = _head("channel").train()
    target, valid = _targets()
    mean, std = head.target_stats(target, valid)
    assert torch.allclose(mean, target[valid].mean(0, keepdim=True))
    assert torch.allclose(std, target[valid].std(0, keepdim=True))
    data = head(_batch(target, valid))
    masked = data["mae_masked_index"]
    assert torch.allclose(head.forward_ret_dict["seal_target"], (target[masked] - mean) / std)
    # the batch dict carries the prediction in target units, the loss sees the standardised one
    assert torch.allclose(data["pred_seal"], data["pred_seal_normalised"] * std + mean)
    # a perfect standardised prediction costs nothing
    head.forward_ret_dict["pred_seal"] = head.forward_ret_dict["seal_target"].clone()
    _, tb = head.get_loss()
    assert tb["loss_seal"] == pytest.approx(0.0, abs=1e-7)


def test_channel_loss_ignores_an_affine_change_of_each_target_channel():
    """What ``channel`` is for: a common direction or a channel's scale no longer sets the loss."""
    target, valid = _targets()
    scale, shift = torch.tensor([0.01, 2.0, 5.0, 0.3]), torch.tensor([3.0, -1.0, 0.5, 10.0])
    losses = {}
    for name, t in (("raw", target), ("affine", target * scale + shift)):
        for norm in ("none", "channel"):
            head = _head(norm).train()
            head(_batch(t, valid))
            losses[name, norm] = head.get_loss()[1]["loss_seal"]
    assert losses["raw", "channel"] == pytest.approx(losses["affine", "channel"], rel=1e-4)
    assert abs(losses["raw", "none"] - losses["affine", "none"]) > 0.1


def test_channel_with_too_few_valid_targets_is_the_identity():
    head = _head("channel")
    target, _ = _targets()
    one = torch.tensor([1, 0, 0, 0, 0, 0]).bool()
    mean, std = head.target_stats(target, one)
    assert torch.equal(mean, torch.zeros(1, 4)) and torch.equal(std, torch.ones(1, 4))
    constant = torch.ones(6, 4)
    assert float(head.target_stats(constant, torch.ones(6).bool())[1].min()) > 0  # floored, never 0

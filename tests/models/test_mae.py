"""SealMAE end to end on synthetic frames: one training step (loss, gradients, teacher frozen and
absent from the state dict), stock-DSVT encoder keys, decoders, cache mode, evaluation output."""
from __future__ import annotations

import copy
import math

import pytest
import torch

pytestmark = [pytest.mark.pcdet, pytest.mark.spconv]
pytest.importorskip("pcdet", reason="needs an importable OpenPCDet (pcdet) checkout")
pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")

from helpers_models import batch, dataset, network  # noqa: E402


@pytest.fixture(scope="module")
def step(cfg, ds):
    """One training step of the tiny config: (model, batch_dict, ret, tb_dict, encoder input count)."""
    torch.manual_seed(0)
    model = network(cfg, ds)
    model.train()
    seen = {}
    model.backbone_3d.register_forward_pre_hook(lambda m, args: seen.update(n=args[0]["voxel_features"].shape[0]))
    data = batch(ds)
    ret, tb, disp = model(data)
    ret["loss"].backward()
    return model, data, ret, tb, seen["n"]


def _grad_norm(params):
    return sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)


def test_training_step_gives_finite_loss_and_logs_every_term(step):
    model, data, ret, tb, _ = step
    assert torch.isfinite(ret["loss"])
    for key in ("loss", "loss_coord", "loss_seal", "loss_seal_predict_mean", "mask_ratio", "num_masked", "num_voxels"):
        assert key in tb and math.isfinite(tb[key]), key
    assert 0.0 < tb["mask_ratio"] < 1.0
    assert tb["loss"] == pytest.approx(1.0 * tb["loss_coord"] + 3.0 * tb["loss_seal"], rel=1e-5)
    assert tb["num_masked"] == int(data["mae_mask"].sum())
    # I2Mask statistics reach TensorBoard: ratio spread over frames and cluster balance.
    assert tb["mask_ratio_min"] <= tb["mask_ratio"] <= tb["mask_ratio_max"]
    assert tb["mask_fallback_frames"] == 0.0
    clustered = data["mask_stats"]["frames"]
    assert clustered and all(sum(f["cluster_sizes"]) == f["n"] for f in clustered)
    assert tb["cluster_min_frac"] == pytest.approx(min(min(f["cluster_sizes"]) / f["n"] for f in clustered))
    assert tb["cluster_max_frac"] == pytest.approx(max(max(f["cluster_sizes"]) / f["n"] for f in clustered))


def test_gradients_reach_vfe_encoder_decoder_and_head(step):
    model = step[0]
    for prefix in ("vfe.", "backbone_3d.", "backbone_2d.", "dense_head."):
        params = [p for n, p in model.named_parameters() if n.startswith(prefix)]
        assert params, prefix
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params), prefix
        assert _grad_norm(params) > 0, prefix
    assert model.backbone_2d.mask_token.weight.grad.abs().sum() > 0


def test_teacher_is_frozen_in_eval_mode_and_not_saved(step):
    model = step[0]
    teacher = model.seal_target.teacher.net
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert not teacher.training  # model.train() did not flip it
    own = {id(p) for p in model.parameters()}
    assert not any(id(p) in own for p in teacher.parameters())
    keys = model.state_dict().keys()
    assert {k.split(".")[0] for k in keys} == {"vfe", "backbone_3d", "backbone_2d", "dense_head", "global_step"}
    assert not any("teacher" in k or "seal_target" in k for k in keys)


def test_encoder_sees_only_visible_voxels_and_has_stock_dsvt_keys(step, cfg):
    from pcdet.models.backbones_3d.dsvt import DSVT

    model, data, _, _, n_encoder_input = step
    assert n_encoder_input == int((~data["mae_mask"]).sum()) < data["voxel_coords"].shape[0]
    stock = DSVT(cfg.MODEL.BACKBONE_3D)
    assert type(model.backbone_3d) is DSVT
    assert {k: v.shape for k, v in model.backbone_3d.state_dict().items()} == \
        {k: v.shape for k, v in stock.state_dict().items()}


def test_masked_voxels_only_get_reconstruction_targets(step):
    model, data, _, _, _ = step
    d = model.dense_head.forward_ret_dict
    n_masked = int(data["mae_mask"].sum())
    assert d["pred_points"].shape == (n_masked, 16, 3)
    assert d["pred_seal"].shape == (n_masked, 64)
    assert d["gt_points"].shape == (n_masked, 64, 3)
    assert (d["gt_counts"] >= 1).all() and (d["gt_counts"] <= 64).all()
    # offsets from the voxel centre lie inside the voxel (0.4, 0.4, 0.375 m)
    gt = d["gt_points"][torch.arange(64)[None, :] < d["gt_counts"][:, None]]
    assert (gt.abs() <= torch.tensor([0.2, 0.2, 0.1875]) + 1e-4).all()


def test_mask_token_is_zero_initialised(cfg, ds):
    fresh = network(cfg, ds)
    assert torch.count_nonzero(fresh.backbone_2d.mask_token.weight) == 0


@pytest.mark.parametrize("decoder", [
    {"NAME": "SparseConvDecoder"},
    {"NAME": "DSVTMaskDecoder", "DECODER_MODE": "reference_tokens"},
], ids=["sparse_conv", "reference_tokens"])
def test_decoder_variants_train(cfg, ds, decoder):
    cfg = copy.deepcopy(cfg)
    cfg.MODEL.DECODER.update(decoder)
    torch.manual_seed(1)
    model = network(cfg, ds)
    model.train()
    ret, tb, _ = model(batch(ds))
    ret["loss"].backward()
    assert torch.isfinite(ret["loss"])
    assert _grad_norm(p for n, p in model.named_parameters() if n.startswith("backbone_2d.")) > 0
    assert _grad_norm(p for n, p in model.named_parameters() if n.startswith("backbone_3d.")) > 0


@pytest.mark.parametrize("masking", [{"NAME": "RandomMask", "MASK_RATIO": 0.6},
                                     {"NAME": "I2Mask", "PARTITION": [4, 2, 2], "LAMBDA": 0.8}],
                         ids=["random", "i2mask_ablation"])
def test_masking_is_chosen_by_config(cfg, ds, masking):
    cfg = copy.deepcopy(cfg)
    cfg.MODEL.MASKING.update(masking)
    model = network(cfg, ds)
    model.train()
    data = batch(ds)
    with torch.no_grad():
        _, tb, _ = model(data)
    assert type(model.masking.masker).__name__ == masking["NAME"]
    assert 0.0 < tb["mask_ratio"] < 1.0
    if masking["NAME"] == "I2Mask":  # PARTITION reached the algorithm through the detector's config
        frames = data["mask_stats"]["frames"]
        assert frames and all([len(s) for s in f["partition"]] == [4, 2, 2] for f in frames)
    if masking["NAME"] == "RandomMask":
        assert tb["mask_ratio"] == pytest.approx(0.6, abs=0.02)


def test_cache_mode_joins_features_by_coordinate(cfg, ds, tmp_path):
    """Cache rows are written in a shuffled order; the targets must equal those computed from the
    features in cell order (stand-in teacher: random unit features stored as float16)."""
    from pcdet_seal.geometry import point_to_voxel
    from pcdet_seal.seal.cache import CacheMeta, FeatureCacheWriter
    from pcdet_seal.seal.targets import teacher_cells, voxel_targets

    data = batch(ds)
    pts = data["points"]
    cell = list(cfg.DATA_CONFIG.DATA_PROCESSOR[-1].VOXEL_SIZE)
    writer = FeatureCacheWriter(tmp_path, CacheMeta("random-unit", "00" * 32, "cartesian", tuple(cell), 64))
    gen = torch.Generator().manual_seed(0)
    cells = teacher_cells(pts[:, 1:4], pts[:, 0].long(), cell)
    feats = torch.nn.functional.normalize(torch.randn(cells.coords.shape[0], 64, generator=gen), dim=1)
    feats = feats.half().float()  # what the cache stores
    for b, frame_id in enumerate(data["frame_id"]):
        rows = torch.nonzero(cells.coords[:, 0] == b, as_tuple=True)[0]
        perm = rows[torch.randperm(rows.numel(), generator=gen)]  # row order must not matter
        writer.write(str(frame_id), cells.coords[perm, 1:].int(), feats[perm])
    cfg = copy.deepcopy(cfg)
    cfg.MODEL.SEAL_TARGET.update({"MODE": "cache", "CACHE_DIR": str(tmp_path), "CELL_SIZE": cell})
    model = network(cfg, ds)
    assert model.seal_target.teacher is None
    model.train()
    ret, tb, _ = model(data)
    assert torch.isfinite(ret["loss"]) and tb["seal_valid_ratio"] == 1.0
    p2v = point_to_voxel(pts, data["voxel_coords"], ds.point_cloud_range, ds.voxel_size, ds.grid_size)
    expected, valid = voxel_targets(feats, cells.point2cell, p2v, data["voxel_coords"].shape[0])
    assert valid.all()
    torch.testing.assert_close(data["seal_target"], expected, atol=1e-6, rtol=0)


def test_online_mode_without_checkpoint_names_the_key(cfg, ds):
    cfg = copy.deepcopy(cfg)
    cfg.MODEL.SEAL_TARGET.RANDOM_TEACHER = False
    with pytest.raises(ValueError, match="TEACHER_CKPT"):
        network(cfg, ds)


def test_eval_mode_returns_reconstructions_and_empty_boxes(step, cfg):
    model = step[0]
    ds = dataset(cfg, training=False)
    model.eval()
    with torch.no_grad():
        pred_dicts, ret_dict = model(batch(ds))
    model.train()
    assert len(pred_dicts) == 2 and ret_dict == {}
    for p in pred_dicts:
        assert p["pred_boxes"].shape == (0, 7) and p["pred_scores"].shape == (0,)
        m = p["masked_voxel_coords"].shape[0]
        assert m > 0 and p["pred_points"].shape == (m, 16, 3) and p["pred_seal"].shape == (m, 64)
    annos = ds.generate_prediction_dicts({"frame_id": ds.collate_batch([ds[0], ds[1]])["frame_id"], "batch_size": 2},
                                         pred_dicts, cfg.CLASS_NAMES)
    assert len(annos) == 2 and all(len(a["name"]) == 0 for a in annos)


@pytest.mark.gpu
def test_one_cuda_step_is_finite(cfg, ds):
    """GPU smoke step: finite loss and a realised mask ratio inside (0, 0.9)."""
    torch.manual_seed(0)
    model = network(cfg, ds).cuda()
    model.train()
    data = batch(ds)
    for key, value in data.items():
        if isinstance(value, torch.Tensor):
            data[key] = value.cuda()
    ret, tb, _ = model(data)
    ret["loss"].backward()
    assert torch.isfinite(ret["loss"])
    assert 0.0 < tb["mask_ratio"] < 0.9
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_predict_mean_baseline_is_the_loss_of_the_mean_target():
    """``loss_seal_predict_mean``: what predicting the batch's mean target costs. Targets sharing a
    common direction make it far lower than predicting zero; identical targets make it zero."""
    from easydict import EasyDict

    from pcdet_seal.models.seal_mae_head import SealMAEHead

    head = SealMAEHead(EasyDict(NUM_SEAL_FEATURES=4), 8, [0.4, 0.4, 0.4], [0, 0, 0, 4, 4, 4])
    gen = torch.Generator().manual_seed(0)
    common = torch.tensor([1.0, 1.0, 0.0, 0.0])
    target = common + 0.1 * torch.randn(50, 4, generator=gen)
    valid = torch.ones(50, dtype=torch.bool)
    valid[:5] = False
    target[:5] = 100.0  # invalid rows take no part in the mean or the loss
    zero = float(torch.nn.functional.smooth_l1_loss(torch.zeros(45, 4), target[5:]))
    mean = target[5:].mean(0, keepdim=True).expand(45, 4)
    expected = float(torch.nn.functional.smooth_l1_loss(mean, target[5:]))
    assert head.predict_mean_loss(target, valid) == pytest.approx(expected)
    assert head.predict_mean_loss(target, valid) < zero / 20
    assert head.predict_mean_loss(common.expand(50, 4), valid) == 0.0
    assert head.predict_mean_loss(target, torch.zeros(50, dtype=torch.bool)) == 0.0

"""One resolver of the Seal teacher's settings (pcdet_seal.seal.teacher_settings) for the model, the
feature job and the demo; the teacher's z crop (MASK_Z); the SEAL_TARGET.NUM_FEATURES /
DENSE_HEAD.NUM_SEAL_FEATURES check; in-grid points without a voxel counted and reported."""
from __future__ import annotations

import argparse
import copy
import logging

import pytest
import torch

from pcdet_seal.seal.targets import SLIDR_CYLINDRICAL_CELL
from pcdet_seal.seal.teacher_settings import MissingCellSizeError, resolve_teacher_settings
from pcdet_seal.tools.cli import seal_features

VOXEL = [0.2, 0.2, 0.2]
NUSCENES_RANGE = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]


def test_cell_size_defaults_depend_on_the_quantisation():
    assert resolve_teacher_settings({}, VOXEL).cell_size == tuple(VOXEL)
    assert resolve_teacher_settings({"QUANT": "cylindrical", "CELL_SIZE": None}, VOXEL).cell_size == \
        SLIDR_CYLINDRICAL_CELL
    assert resolve_teacher_settings({"CELL_SIZE": [0.5, 0.5, 0.5]}, VOXEL).cell_size == (0.5, 0.5, 0.5)
    with pytest.raises(MissingCellSizeError, match="MODEL.SEAL_TARGET.CELL_SIZE"):
        resolve_teacher_settings({}, None)
    with pytest.raises(ValueError, match="MODEL.SEAL_TARGET.QUANT"):
        resolve_teacher_settings({"QUANT": "spherical"}, VOXEL)
    with pytest.raises(ValueError, match="MODEL.SEAL_TARGET.CELL_SIZE"):
        resolve_teacher_settings({"CELL_SIZE": [0.1, 0.0, 0.1]}, VOXEL)


def test_mask_z_keeps_points_inside_the_z_range_only():
    settings = resolve_teacher_settings({"MASK_Z": True}, VOXEL, NUSCENES_RANGE)
    xyz = torch.tensor([[0.0, 0.0, -5.5], [0.0, 0.0, -5.0], [1.0, 2.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, 3.2]])
    assert settings.keep(xyz).tolist() == [False, True, True, True, False]
    assert resolve_teacher_settings({}, VOXEL, NUSCENES_RANGE).keep(xyz) is None
    with pytest.raises(ValueError, match="MASK_Z"):
        resolve_teacher_settings({"MASK_Z": True}, VOXEL, None)


def _args(**overrides) -> argparse.Namespace:
    """The feature job's options as its parser leaves them (nothing given on the command line)."""
    args = seal_features.build_parser().parse_args(["--input", "unused"])
    args.cfg = "cfg.yaml"
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


@pytest.mark.pcdet
@pytest.mark.spconv
def test_the_feature_job_resolves_cells_as_training_does():
    """``scripts/seal_features.py --cfg`` fills its options from the config as ``config_frames``
    hands them over (``MODEL.SEAL_TARGET`` + the dataset's voxel size and range): cylindrical cells
    with ``CELL_SIZE: null`` are SLidR's — the cells training looks up — not the voxel size."""
    pytest.importorskip("pcdet", reason="needs an importable OpenPCDet (pcdet) checkout")
    pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")
    from helpers_models import CFGS, SMALL_TEACHER, load

    from pcdet_seal.models.seal_target import SealTargetGenerator

    cfg = load(CFGS / "seal_pretrain_nuscenes.yaml")
    target = copy.deepcopy(cfg.MODEL.SEAL_TARGET)
    target.update({"QUANT": "cylindrical", "CELL_SIZE": None, "TEACHER_CKPT": "teacher.pth", "CACHE_DIR": "cache",
                   "TEACHER_ARCH": SMALL_TEACHER})
    voxel = [float(v) for v in cfg.DATA_CONFIG.DATA_PROCESSOR[-1].VOXEL_SIZE]
    pc_range = list(cfg.DATA_CONFIG.POINT_CLOUD_RANGE)
    settings = {**dict(target), "VOXEL_SIZE": voxel, "POINT_CLOUD_RANGE": pc_range}
    args = _args()
    job = seal_features.resolve_settings(args, settings)
    assert args.cell_size == list(SLIDR_CYLINDRICAL_CELL) and args.quant == "cylindrical"
    assert job.mask_z and job.z_range == (-5.0, 3.0)  # nuScenes: MASK_Z on, as in training
    target.update({"TEACHER_CKPT": None, "RANDOM_TEACHER": True})
    model_side = SealTargetGenerator(target, voxel_size=voxel, point_cloud_range=pc_range)
    assert model_side.settings == job and model_side.cell_size == list(SLIDR_CYLINDRICAL_CELL)
    # command-line options win over the config; a cartesian cell without any voxel size is required
    args = _args(cell_size=[0.4, 0.4, 0.4], quant="cartesian")
    assert seal_features.resolve_settings(args, settings).cell_size == (0.4, 0.4, 0.4)
    with pytest.raises(ValueError, match="--cell-size is required"):
        seal_features.resolve_settings(_args(ckpt="t.pth", out="o"), {})


@pytest.mark.spconv
def test_the_feature_job_crops_z_for_the_teacher():
    pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")
    from pcdet_seal.seal.minkunet import Res16UNet, Res16UNetArch, SealTeacher
    from pcdet_seal.seal.targets import teacher_features

    teacher = SealTeacher(Res16UNet(Res16UNetArch(planes=(8,) * 8, layers=(1,) * 8, init_dim=8)))
    gen = torch.Generator().manual_seed(0)
    points = torch.cat([torch.rand(200, 3, generator=gen) * torch.tensor([20.0, 20.0, 12.0])
                        - torch.tensor([10.0, 10.0, 7.0]), torch.rand(200, 1, generator=gen)], 1).numpy()
    crop = NUSCENES_RANGE  # as the feature job maps --point-cloud-range with --mask-z (or the config's MASK_Z)
    run = teacher_features(teacher, VOXEL, "cartesian", 3, 1.0, False, xy_range=[*crop[:2], *crop[3:5]],
                           z_range=[crop[2], crop[5]])
    with torch.no_grad():
        coords, _ = run(points)
    z = coords[:, 2].float() * VOXEL[2]
    assert coords.shape[0] > 0 and bool(((z >= -5.0 - VOXEL[2]) & (z <= 3.0)).all())
    outside = ((points[:, 2] < -5.0) | (points[:, 2] > 3.0)).sum()
    assert outside > 0  # the cloud did hold points the crop removed


@pytest.mark.pcdet
@pytest.mark.spconv
def test_online_teacher_sees_no_point_outside_the_z_range_with_mask_z():
    pytest.importorskip("pcdet", reason="needs an importable OpenPCDet (pcdet) checkout")
    pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")
    from helpers_models import batch, dataset, network, tiny_pretrain

    cfg = tiny_pretrain()
    ds = dataset(cfg)
    z_lo, z_hi = cfg.DATA_CONFIG.POINT_CLOUD_RANGE[2], cfg.DATA_CONFIG.POINT_CLOUD_RANGE[5]
    data = batch(ds)
    high = data["points"][:50].clone()
    high[:, 3] = z_hi + 1.0  # inside x/y, above the grid: OpenPCDet's x/y crop keeps such points
    low = data["points"][50:100].clone()
    low[:, 3] = z_lo - 1.0  # and below it
    data["points"] = torch.cat([data["points"], high, low])
    seen = {}
    for mask_z in (False, True):
        cfg_z = copy.deepcopy(cfg)
        cfg_z.MODEL.SEAL_TARGET.MASK_Z = mask_z
        torch.manual_seed(0)
        model = network(cfg_z, ds)
        model.train()
        model.seal_target.teacher.register_forward_pre_hook(lambda m, args, k=mask_z: seen.update({k: args[0].clone()}))
        with torch.no_grad():
            model(copy.deepcopy(data))
    cell_z = torch.tensor(model.seal_target.cell_size[2])
    top = lambda coords: float(coords[:, 3].max() * cell_z)  # noqa: E731
    bottom = lambda coords: float(coords[:, 3].min() * cell_z)  # noqa: E731
    assert top(seen[False]) >= z_hi + 1.0 - float(cell_z)
    assert bottom(seen[False]) <= z_lo - 1.0
    assert top(seen[True]) <= z_hi
    assert bottom(seen[True]) >= z_lo - float(cell_z)


@pytest.mark.pcdet
@pytest.mark.spconv
def test_seal_width_mismatch_names_both_keys():
    pytest.importorskip("pcdet", reason="needs an importable OpenPCDet (pcdet) checkout")
    pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")
    from helpers_models import dataset, network, tiny_pretrain

    cfg = tiny_pretrain()
    cfg.MODEL.DENSE_HEAD.NUM_SEAL_FEATURES = 32
    with pytest.raises(ValueError, match=r"MODEL\.SEAL_TARGET\.NUM_FEATURES \(64\).*MODEL\.DENSE_HEAD\."
                                         r"NUM_SEAL_FEATURES \(32\)"):
        network(cfg, dataset(cfg))


@pytest.mark.pcdet
@pytest.mark.spconv
def test_points_inside_the_grid_without_a_voxel_are_counted_and_reported(caplog):
    pytest.importorskip("pcdet", reason="needs an importable OpenPCDet (pcdet) checkout")
    pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")
    from helpers_models import batch, dataset, network, tiny_pretrain

    from pcdet_seal.geometry import point_to_voxel

    cfg = tiny_pretrain()
    ds = dataset(cfg)
    model = network(cfg, ds)
    model.train()
    data = model.vfe(batch(ds))
    assert model.count_unvoxelized_points({**data, "point2voxel": point_to_voxel(
        data["points"], data["voxel_coords"], ds.point_cloud_range, ds.voxel_size, ds.grid_size)}) == 0
    last = data["voxel_coords"][-1]
    kept = data["voxel_coords"][:-1]  # a VFE that dropped one voxel of the second frame
    p2v = point_to_voxel(data["points"], kept, ds.point_cloud_range, ds.voxel_size, ds.grid_size)
    full = point_to_voxel(data["points"], data["voxel_coords"], ds.point_cloud_range, ds.voxel_size, ds.grid_size)
    expected = int((full == data["voxel_coords"].shape[0] - 1).sum())
    assert expected > 0 and int(last[0]) == 1
    with caplog.at_level(logging.WARNING, logger="pcdet_seal.models.seal_mae"):
        count = model.count_unvoxelized_points({**data, "voxel_coords": kept, "point2voxel": p2v})
    assert count == expected
    assert f"{expected} points inside the grid found no voxel" in caplog.text
    assert str(data["frame_id"][1]) in caplog.text and str(data["frame_id"][0]) not in caplog.text

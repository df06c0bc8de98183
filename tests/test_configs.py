"""Every shipped model config builds through pcdet's ``build_network`` (real-size ones: build only);
pre-training configs follow docs/method.md §1/§9; pre-training and fine-tuning encoders are identical."""
from __future__ import annotations

import copy

import pytest
import torch

pytestmark = pytest.mark.pcdet
pytest.importorskip("pcdet", reason="needs an importable OpenPCDet (pcdet) checkout")

from helpers_models import CFGS, SMALL_TEACHER, load  # noqa: E402

MODEL_CONFIGS = sorted(p.relative_to(CFGS).as_posix() for p in CFGS.rglob("*.yaml")
                       if "MODEL:" in p.read_text())
PRETRAIN = ["seal_pretrain.yaml", "seal_pretrain_nuscenes.yaml", "demo/seal_pretrain_tiny.yaml"]
PAIRS = [("seal_pretrain.yaml", "finetune/dsvt_voxel_waymo.yaml"),
         ("seal_pretrain_nuscenes.yaml", "finetune/dsvt_voxel_nuscenes.yaml"),
         ("demo/seal_pretrain_tiny.yaml", "demo/finetune_tiny.yaml")]
_BUILT: dict = {}


def _buildable(cfg):
    """Real data sets are not on disk: build with the config's geometry and, for pre-training, a small
    random teacher instead of a Seal checkpoint (the real teacher is covered by the seal tests)."""
    cfg = copy.deepcopy(cfg)
    if cfg.MODEL.NAME == "SealMAE":
        cfg.MODEL.SEAL_TARGET.update({"RANDOM_TEACHER": True, "TEACHER_ARCH": SMALL_TEACHER, "TEACHER_CKPT": None})
    return cfg


def built(name):
    if name not in _BUILT:
        pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")
        from pcdet_seal import registry
        from pcdet_seal.tools.config_network import build_network_from_config

        registry.register()
        _BUILT[name] = build_network_from_config(_buildable(load(CFGS / name)))
    return _BUILT[name]


def test_all_configs_are_covered():
    assert set(PRETRAIN) | {f for _, f in PAIRS} <= set(MODEL_CONFIGS)


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_config_builds_with_build_network(name):
    model = built(name)
    cfg = load(CFGS / name)
    assert type(model).__name__ == cfg.MODEL.NAME
    assert model.vfe is not None and type(model.backbone_3d).__name__ == "DSVT"


@pytest.mark.parametrize("name", PRETRAIN)
def test_pretraining_config_follows_the_method(name):
    cfg = load(CFGS / name)
    assert cfg.MODEL.NAME == "SealMAE"
    assert cfg.DATA_CONFIG.DATA_AUGMENTOR.AUG_CONFIG_LIST == []
    assert cfg.OPTIMIZATION.OPTIMIZER == "adamw_onecycle"
    assert cfg.MODEL.DENSE_HEAD.LOSS_WEIGHTS == [1.0, 3.0]
    assert cfg.MODEL.MASKING.NAME == "I2Mask" and cfg.MODEL.MASKING.BASE_RATIOS == [0.9, 0.45, 0.0]
    assert cfg.MODEL.DECODER.set_info == [[48, 2]] or name.startswith("demo/")
    assert cfg.MODEL.DECODER.NAME == "DSVTMaskDecoder" and cfg.MODEL.DECODER.DECODER_MODE == "z_resolved"
    for key in ("TEACHER_CKPT", "CACHE_DIR", "MODE", "QUANT", "TARGET_MODE", "CELL_SIZE"):
        assert key in cfg.MODEL.SEAL_TARGET
    if cfg.DATA_CONFIG.DATASET in ("WaymoDataset", "WaymoPretrainDataset"):
        assert cfg.DATA_CONFIG.SAMPLED_INTERVAL.train == 1
    if cfg.DATA_CONFIG.DATASET in ("NuScenesDataset", "NuScenesPretrainDataset"):
        assert cfg.DATA_CONFIG.BALANCED_RESAMPLING is False


def test_real_pretraining_configs_need_a_teacher_path():
    for name in PRETRAIN[:2]:
        target = load(CFGS / name).MODEL.SEAL_TARGET
        assert target.MODE == "online" and not target.TEACHER_CKPT and not target.RANDOM_TEACHER


@pytest.mark.parametrize("pretrain,finetune", PAIRS, ids=[f for _, f in PAIRS])
def test_finetune_encoder_is_the_pretraining_encoder(pretrain, finetune):
    a, b = load(CFGS / pretrain), load(CFGS / finetune)
    assert a.MODEL.VFE == b.MODEL.VFE and a.MODEL.BACKBONE_3D == b.MODEL.BACKBONE_3D
    assert a.DATA_CONFIG.POINT_CLOUD_RANGE == b.DATA_CONFIG.POINT_CLOUD_RANGE
    assert a.DATA_CONFIG.DATA_PROCESSOR[-1].VOXEL_SIZE == b.DATA_CONFIG.DATA_PROCESSOR[-1].VOXEL_SIZE
    sa, sb = built(pretrain).state_dict(), built(finetune).state_dict()
    for prefix in ("vfe.", "backbone_3d."):
        ka = {k: v.shape for k, v in sa.items() if k.startswith(prefix)}
        kb = {k: v.shape for k, v in sb.items() if k.startswith(prefix)}
        assert ka == kb and ka, prefix


@pytest.mark.parametrize("name", ["seal_pretrain.yaml", "seal_pretrain_nuscenes.yaml"])
def test_real_size_encoder_runs_on_a_few_voxels(name):
    """The full-grid DSVT encoders run (a few hundred random voxels: cost scales with voxels, not the
    grid); for nuScenes this is docs/method.md §6's z = 40 fix (strides 4, 5, 2 → pillars)."""
    encoder = built(name).backbone_3d.eval()
    x, y, z = encoder.input_layer.sparse_shape
    gen = torch.Generator().manual_seed(0)
    n = 300
    coords = torch.stack([torch.randint(0, 2, (n,), generator=gen), torch.randint(0, z, (n,), generator=gen),
                          torch.randint(200, 240, (n,), generator=gen), torch.randint(200, 240, (n,), generator=gen)], 1)
    coords = torch.unique(coords, dim=0).int()
    feats = torch.randn(coords.shape[0], encoder.input_layer.d_model[0], generator=gen)
    with torch.no_grad():
        out = encoder({"voxel_features": feats, "voxel_coords": coords, "batch_size": 2})
    assert (out["voxel_coords"][:, 1] == 0).all()  # pillars at z = 0
    assert out["pillar_features"].shape[1] == encoder.input_layer.d_model[-1]
    assert torch.isfinite(out["pillar_features"]).all()

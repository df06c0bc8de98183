"""One pre-training step of each real config as configured (full grid, C 192 / 256, 8 encoder and 4
decoder layers, the Res16UNet34C teacher with random weights) on a synthetic frame of a few
thousand points in small clusters spread over the whole range: finite loss, a gradient on every parameter, the
decoder's output rows in input order, peak memory of the step ≤ 6 GiB."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.pcdet, pytest.mark.spconv]
pytest.importorskip("pcdet", reason="needs an importable OpenPCDet (pcdet) checkout")
pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")

from helpers_models import CFGS, load  # noqa: E402

MAX_PEAK_GIB = 6.0
NUM_POINTS = 4000


def _peak_rss_kib() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1))


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS (Linux ``clear_refs`` 5); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def full_range_frame(cfg, n: int, per_cluster: int = 16, seed: int = 0) -> dict:
    """A batch of one frame: ``n`` points in clusters of ``per_cluster`` (±0.5 m, like the returns
    of one object) whose centres are uniform over the whole ``POINT_CLOUD_RANGE``, with the
    config's point features (intensity-like values in [0, 1), the rest zero)."""
    rng = np.random.default_rng(seed)
    lo, hi = np.array(cfg.DATA_CONFIG.POINT_CLOUD_RANGE[:3]), np.array(cfg.DATA_CONFIG.POINT_CLOUD_RANGE[3:])
    features = cfg.DATA_CONFIG.POINT_FEATURE_ENCODING.used_feature_list
    points = np.zeros((n, 1 + len(features)), dtype=np.float32)
    centres = rng.uniform(lo, hi, (-(-n // per_cluster), 3))
    xyz = np.repeat(centres, per_cluster, axis=0)[:n] + rng.uniform(-0.5, 0.5, (n, 3))
    points[:, 1:4] = np.clip(xyz, lo, hi - 1e-3)
    points[:, 4] = rng.uniform(0.0, 1.0, n)
    return {"points": torch.from_numpy(points), "batch_size": 1,
            "frame_id": np.array([f"full_range_{cfg.DATA_CONFIG.DATASET}"])}


@pytest.mark.parametrize("name", ["seal_pretrain.yaml", "seal_pretrain_nuscenes.yaml"])
def test_one_step_of_the_real_config(name):
    from pcdet_seal import registry
    from pcdet_seal.tools.config_network import build_network_from_config

    registry.register()
    cfg = load(CFGS / name)
    cfg.MODEL.SEAL_TARGET.update({"RANDOM_TEACHER": True, "TEACHER_CKPT": None, "TEACHER_ARCH": None})
    can_measure = _reset_peak_rss()
    torch.manual_seed(0)
    model = build_network_from_config(cfg)
    model.train()
    teacher = model.seal_target.teacher
    assert teacher.arch.planes == (32, 64, 128, 256, 256, 128, 96, 96)  # Res16UNet34C
    decoder_io = {}  # DSVT writes its output into the dict it is given: clone the input first
    model.backbone_2d.decoder.register_forward_pre_hook(
        lambda m, args: decoder_io.update(inp=args[0]["voxel_coords"].clone()))
    model.backbone_2d.decoder.register_forward_hook(
        lambda m, args, out: decoder_io.update(out=out["voxel_coords"].clone()))
    data = full_range_frame(cfg, NUM_POINTS)
    ret, tb, _ = model(data)
    ret["loss"].backward()
    peak_gib = _peak_rss_kib() / 2 ** 20  # the whole process, libraries included

    assert torch.isfinite(ret["loss"]) and tb["num_masked"] > 0
    assert tb["points_without_voxel"] == 0
    # the voxels span the whole grid
    grid = model.dataset.grid_size
    coords = data["voxel_coords"]
    assert coords.shape[0] > NUM_POINTS // 4
    for axis, (col, size) in enumerate(zip((3, 2, 1), grid)):
        span = int(coords[:, col].max() - coords[:, col].min())
        assert span >= 0.9 * int(size), (axis, span, int(size))
    missing = [n for n, p in model.named_parameters() if p.requires_grad
               and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert missing == []
    assert torch.equal(decoder_io["out"].long(), decoder_io["inp"].long())  # out[mask] relies on it
    if can_measure:
        assert peak_gib <= MAX_PEAK_GIB, f"{name}: one step peaked at {peak_gib:.2f} GiB"

"""The masker table of pcdet_seal.masking: every name in it builds from its config block the one way
the detector builds it, and each masker reports its own TensorBoard scalars (``log_scalars``)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from helpers_masking import blob_features, coords_for
from pcdet_seal.masking import MASKERS, build_masker

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [ROOT / "cfgs" / "seal_pretrain.yaml", ROOT / "cfgs" / "seal_pretrain_nuscenes.yaml",
           ROOT / "cfgs" / "demo" / "seal_pretrain_tiny.yaml"]
GRID = {"VOXEL_SIZE": [0.4, 0.4, 0.2], "POINT_CLOUD_RANGE": [-40.0, -40.0, -2.0, 40.0, 40.0, 4.0]}


def _masking_block(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["MODEL"]["MASKING"]


@pytest.mark.parametrize("name", sorted(MASKERS))
def test_every_masker_in_the_table_builds_from_its_config(name):
    for path in SHIPPED:  # the shipped MASKING blocks with NAME switched, the grid as the detector passes it
        masker = build_masker({**_masking_block(path), "NAME": name}, voxel_size=GRID["VOXEL_SIZE"],
                              point_cloud_range=GRID["POINT_CLOUD_RANGE"])
        assert type(masker) is MASKERS[name], path.name
    masker = build_masker({"NAME": name, **GRID})  # the grid as config keys: the same masker
    feats, _ = blob_features(600, seed=1)
    mask, stats = masker(feats, coords_for([350, 250]), None, torch.Generator().manual_seed(0))
    assert 0 < int(mask.sum()) < 600
    scalars = masker.log_scalars(stats)
    assert scalars["mask_ratio_min"] <= stats["mask_ratio"] <= scalars["mask_ratio_max"]
    assert all(isinstance(value, float) for value in scalars.values()), scalars
    assert masker.log_scalars({"mask_ratio": 0.0, "frames": []}) == {}


def test_i2mask_reports_fallback_frames_and_cluster_balance():
    masker = build_masker({"NAME": "I2Mask"})
    feats, _ = blob_features(405, seed=2)
    _, stats = masker(feats, coords_for([400, 5]), None, torch.Generator().manual_seed(0))  # 5 < 8 clusters
    scalars = masker.log_scalars(stats)
    clustered = stats["frames"][0]
    assert set(scalars) == {"mask_ratio_min", "mask_ratio_max", "mask_fallback_frames", "cluster_min_frac",
                            "cluster_max_frac"}
    assert scalars["mask_fallback_frames"] == 1.0 and stats["frames"][1]["fallback"] is True
    assert scalars["cluster_min_frac"] == min(clustered["cluster_sizes"]) / 400
    assert scalars["cluster_max_frac"] == max(clustered["cluster_sizes"]) / 400


@pytest.mark.parametrize("name", ["RandomMask", "RangeAwareMask", "FPSMask"])
def test_baselines_report_the_ratio_spread_only(name):
    masker = build_masker({"NAME": name, **GRID})
    _, stats = masker(blob_features(500)[0], coords_for([300, 200]), None, torch.Generator().manual_seed(0))
    ratios = [frame["mask_ratio"] for frame in stats["frames"]]
    assert masker.log_scalars(stats) == {"mask_ratio_min": min(ratios), "mask_ratio_max": max(ratios)}

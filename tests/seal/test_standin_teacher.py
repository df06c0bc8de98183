"""Stand-in Seal teacher: unit-norm 64-d features, one k-means cluster per superclass,
deterministic per frame id, written through the offline cache, and a meaningful I2Mask ratio."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pcdet_seal.masking import I2Mask
from pcdet_seal.masking.kmeans import kmeans
from pcdet_seal.seal.cache import FeatureCache
from pcdet_seal.seal.standin import NOISE_LEVELS, StandInTeacher, write_standin_cache
from pcdet_seal.synthetic import SUPERCLASSES, SyntheticConfig, generate_frame

DEMO_SCENES = {"SENSOR": {"NUM_BEAMS": 16, "AZIMUTH_STEPS": 512, "MAX_RANGE": 40.0}, "SCENE": {"EXTENT": 30.0}}
VOXEL = (0.4, 0.4, 0.375)


def _balanced_labels(per_class: int = 300) -> torch.Tensor:
    return torch.arange(len(SUPERCLASSES)).repeat_interleave(per_class)


def test_features_are_64d_unit_norm():
    feats = StandInTeacher().point_features(_balanced_labels(50), "synthetic_0_000000")
    assert feats.shape == (50 * len(SUPERCLASSES), 64) and feats.dtype == torch.float32
    assert torch.allclose(feats.norm(dim=1), torch.ones(feats.shape[0]), atol=1e-5)


def test_deterministic_per_frame_id_and_seed():
    labels = _balanced_labels(20)
    a = StandInTeacher().point_features(labels, "synthetic_0_000003")
    assert torch.equal(a, StandInTeacher().point_features(labels, "synthetic_0_000003"))
    assert not torch.allclose(a, StandInTeacher().point_features(labels, "synthetic_0_000004"))
    assert not torch.allclose(a, StandInTeacher(seed=1).point_features(labels, "synthetic_0_000003"))
    assert StandInTeacher().sha256 == StandInTeacher().sha256 != StandInTeacher(seed=1).sha256


def test_kmeans_finds_one_cluster_per_superclass():
    labels = _balanced_labels(300)
    feats = StandInTeacher().point_features(labels, "synthetic_0_000000")
    res = kmeans(feats, len(SUPERCLASSES), n_init=5, max_iter=100, tol=1e-6, generator=torch.Generator().manual_seed(0))
    table = np.zeros((len(SUPERCLASSES), len(SUPERCLASSES)), dtype=int)
    np.add.at(table, (res.labels.numpy(), labels.numpy()), 1)
    # a bijection cluster <-> superclass; the widest classes (noise up to 2.9x the embedding)
    # lose a few points to a neighbour, the tight ones none
    assert sorted(table.argmax(1).tolist()) == list(range(len(SUPERCLASSES)))
    assert (table.max(0) >= 0.95 * 300).all(), table
    tight = [c for c, level in enumerate(NOISE_LEVELS) if level <= 0.3]
    assert (table.max(0)[tight] == 300).all(), table


def test_noise_levels_give_tight_and_spread_classes():
    """Some classes stay inside I2Mask's λ = 0.6 of their centre, some straddle it: the r_c spread."""
    labels = _balanced_labels(400)
    feats = StandInTeacher().point_features(labels, "synthetic_0_000000")
    beyond = []
    for c in range(len(SUPERCLASSES)):
        x = feats[labels == c]
        beyond.append(float(((x - x.mean(0)).norm(dim=1) > 0.6).float().mean()))
    tight = [b for b, level in zip(beyond, NOISE_LEVELS) if level <= 0.3]
    spread = [b for b, level in zip(beyond, NOISE_LEVELS) if level >= 0.9]
    assert tight and max(tight) == 0.0
    assert spread and all(0.1 < b < 0.9 for b in spread) and len(set(round(b, 2) for b in spread)) == len(spread)


def test_cache_round_trip_and_realised_i2mask_ratio(tmp_path):
    config = SyntheticConfig.from_dict(DEMO_SCENES)
    frames = [generate_frame(0, i, config) for i in range(2)]
    teacher = StandInTeacher()
    n = write_standin_cache(teacher, ((f["frame_id"], f["points"], f["point_labels"]) for f in frames),
                            tmp_path, VOXEL)
    assert n == 2 and write_standin_cache(teacher, ((f["frame_id"], f["points"], f["point_labels"]) for f in frames),
                                          tmp_path, VOXEL) == 0  # resumes
    cache = FeatureCache(tmp_path, feature_dim=64, teacher_sha256=teacher.sha256, cell_size=VOXEL)
    assert cache.meta.teacher_id.startswith("standin-superclass")
    ratios = []
    for frame in frames:
        coords, feats = cache.load(frame["frame_id"])
        want_coords, want = teacher.cell_features(frame["points"], frame["point_labels"], frame["frame_id"], VOXEL)
        assert coords.shape == want_coords.shape and feats.shape == want.shape
        assert torch.allclose(feats.norm(dim=1).max(), torch.tensor(1.0), atol=2e-3)  # cell means of unit vectors
        voxel_coords = torch.zeros(len(coords), 4, dtype=torch.long)
        voxel_coords[:, 1:] = coords.long()
        _, stats = I2Mask({})(feats, voxel_coords, None, torch.Generator().manual_seed(0))
        ratios.append(stats["mask_ratio"])
        assert max(stats["frames"][0]["r_c"]) == pytest.approx(1.0)  # some cluster has no member beyond λ
    assert 0.15 < float(np.mean(ratios)) < 0.7, ratios

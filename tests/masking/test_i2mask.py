"""I2Mask against independent re-statements of docs/method.md §4."""
import itertools
import math
from pathlib import Path

import pytest
import torch
import yaml
from easydict import EasyDict

from pcdet_seal.masking import build_masker
from pcdet_seal.masking.i2mask import (
    I2Mask,
    centre_cosine_distance,
    intra_class_coefficients,
    partition_clusters,
)

from helpers_masking import blob_features, coords_for

ROOT = Path(__file__).resolve().parents[2]


def brute_force_partition(centres: list[list[float]], sizes=(3, 3, 2)) -> list[list[int]]:
    """The reference's greedy rule written with python loops and math only."""

    def cosdist(a, b):
        dot = sum(x * y for x, y in zip(a, b))
        na = math.sqrt(sum(x * x for x in a))
        nb = math.sqrt(sum(x * x for x in b))
        return 1.0 - dot / (na * nb)

    remaining = list(range(len(centres)))
    out = []
    for size in sizes[:-1]:
        best, best_score = None, float("-inf")
        for subset in itertools.combinations(remaining, size):
            pairs = list(itertools.combinations(subset, 2))
            score = sum(cosdist(centres[a], centres[b]) for a, b in pairs) / len(pairs)
            if score > best_score:
                best, best_score = subset, score
        out.append(list(best))
        remaining = [c for c in remaining if c not in best]
    out.append(remaining)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_partition_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(8, 5, generator=g, dtype=torch.float64)
    counts = torch.ones(8, dtype=torch.long)
    ours = partition_clusters(centre_cosine_distance(centres, counts), [3, 3, 2])
    assert [s.tolist() for s in ours] == brute_force_partition(centres.tolist())


def test_partition_on_hand_made_centres():
    # Three mutually opposite-ish directions (0, 3, 6) must be picked first.
    angles = {0: 0.0, 3: 120.0, 6: 240.0, 1: 10.0, 2: 20.0, 4: 130.0, 5: 140.0, 7: 250.0}
    centres = torch.tensor([[math.cos(math.radians(angles[i])), math.sin(math.radians(angles[i]))] for i in range(8)],
                           dtype=torch.float64)
    sets = partition_clusters(centre_cosine_distance(centres, torch.ones(8, dtype=torch.long)), [3, 3, 2])
    assert sets[0].tolist() == [0, 3, 6]
    assert [s.tolist() for s in sets] == brute_force_partition(centres.tolist())


def test_partition_ties_take_first_combination():
    centres = torch.ones(8, 3, dtype=torch.float64)  # all distances 0: every subset ties
    sets = partition_clusters(centre_cosine_distance(centres, torch.ones(8, dtype=torch.long)), [3, 3, 2])
    assert [s.tolist() for s in sets] == [[0, 1, 2], [3, 4, 5], [6, 7]]


def test_other_partition_sizes():
    g = torch.Generator().manual_seed(11)
    centres = torch.randn(8, 4, generator=g, dtype=torch.float64)
    sets = partition_clusters(centre_cosine_distance(centres, torch.ones(8, dtype=torch.long)), [4, 2, 2])
    assert [s.tolist() for s in sets] == brute_force_partition(centres.tolist(), (4, 2, 2))


def test_intra_class_coefficients_by_hand():
    # Cluster 0: distances 0.5, 0.8, 1.0 -> far ones 0.8, 1.0 -> D0 = 0.9
    # Cluster 1: distance 0.7 -> D1 = 0.7;  cluster 2: distance 0.1 -> none beyond 0.6 -> D2 = 0
    feats = torch.tensor([[0.5, 0.0], [0.0, 0.8], [-1.0, 0.0], [10.7, 0.0], [20.0, 0.1]])
    labels = torch.tensor([0, 0, 0, 1, 2])
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
    rc, d = intra_class_coefficients(feats, labels, centres, 0.6)
    assert d.tolist() == pytest.approx([0.9, 0.7, 0.0])
    assert rc.tolist() == pytest.approx([0.0, 1 - 0.7 / 0.9, 1.0])


def test_intra_class_all_close_gives_ones():
    feats = torch.zeros(6, 2)
    rc, d = intra_class_coefficients(feats, torch.tensor([0, 0, 1, 1, 2, 2]), torch.zeros(3, 2), 0.6)
    assert rc.tolist() == [1.0, 1.0, 1.0] and d.tolist() == [0.0, 0.0, 0.0]


def _spread_frame(seed: int, n: int = 4000):
    # Spreads chosen so that distances to the centre straddle lambda = 0.6 differently per cluster.
    return blob_features(n, seed=seed, spreads=[0.04, 0.06, 0.08, 0.09, 0.1, 0.11, 0.12, 0.13])[0]


@pytest.mark.parametrize("seed", range(3))
def test_frame_invariants(seed):
    feats = _spread_frame(seed)
    masker = I2Mask({"N_CLUSTERS": 8, "PARTITION": [3, 3, 2], "BASE_RATIOS": [0.9, 0.45, 0.0], "LAMBDA": 0.6})
    mask, st = masker.mask_frame(feats, torch.Generator().manual_seed(seed))
    labels = st["labels"]
    sizes = torch.bincount(labels, minlength=8)
    masked = torch.bincount(labels[mask], minlength=8)
    # K3 is never masked, nor the cluster with the largest D.
    assert masked[st["partition"][2]].sum() == 0
    assert masked[int(torch.argmax(st["D"]))] == 0
    # r_c recomputed independently from the labels with the member means as centres.
    centres = torch.stack([feats[labels == j].double().mean(0) for j in range(8)])
    delta = (feats.double() - centres[labels]).norm(dim=1)
    d_ref = []
    for j in range(8):
        far = delta[(labels == j) & (delta > 0.6)]
        d_ref.append(float(far.mean()) if far.numel() else 0.0)
    rc_ref = [1 - x / max(d_ref) for x in d_ref]
    # Centres are float32 means inside the masker, float64 here.
    assert st["r_c"].tolist() == pytest.approx(rc_ref, abs=1e-6)
    base = {}
    for members, r in zip(st["partition"], [0.9, 0.45, 0.0]):
        for j in members.tolist():
            base[j] = r
    # Quotas are n_k * r_k rounded stochastically: floor or floor + 1, never anything else.
    floor = [int(int(sizes[j]) * (base[j] * rc_ref[j])) for j in range(8)]
    assert masked.tolist() == st["quota"].tolist()
    assert all(q - f in (0, 1) for q, f in zip(masked.tolist(), floor)), (masked.tolist(), floor)
    assert sum(floor) > 0


def test_batch_valid_and_stats():
    f0, f1 = _spread_frame(0, 3000), _spread_frame(1, 2000)
    feats = torch.cat([f0, f1])
    coords = coords_for([3000, 2000])
    valid = torch.ones(5000, dtype=torch.bool)
    valid[::5] = False
    mask, st = I2Mask()(feats, coords, valid, torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and mask.shape == (5000,)
    assert not mask[~valid].any()
    assert st["mask_ratio"] == pytest.approx(float(mask.float().mean()))
    assert [fr["batch_index"] for fr in st["frames"]] == [0, 1]
    assert [fr["n_voxels"] for fr in st["frames"]] == [3000, 2000]
    for fr in st["frames"]:
        assert len(fr["cluster_sizes"]) == 8 and sum(fr["cluster_sizes"]) == fr["n"]
        assert sorted(sum(fr["partition"], [])) == list(range(8))
        assert 0.0 < fr["mask_ratio"] < 0.9


def test_seeded_runs_identical():
    feats = _spread_frame(5)
    coords = coords_for([4000])
    m1, _ = I2Mask()(feats, coords, None, torch.Generator().manual_seed(3))
    m2, _ = I2Mask()(feats, coords, None, torch.Generator().manual_seed(3))
    m3, _ = I2Mask()(feats, coords, None, torch.Generator().manual_seed(4))
    assert torch.equal(m1, m2)
    assert not torch.equal(m1, m3)


@pytest.mark.parametrize("n", [3, 5, 7])
def test_fewer_voxels_than_clusters(n):
    feats = torch.randn(n, 64)
    expected = n * (3 * 0.9 + 3 * 0.45) / 8  # uniform at the partition-weighted base ratio
    counts = []
    for seed in range(400):
        mask, st = I2Mask()(feats, coords_for([n]), None, torch.Generator().manual_seed(seed))
        assert st["frames"][0]["fallback"] is True
        counts.append(int(mask.sum()))
    assert set(counts) <= {math.floor(expected), math.floor(expected) + 1}
    assert sum(counts) / len(counts) == pytest.approx(expected, abs=0.1)  # unbiased, not floored


def test_identical_features_no_nan():
    feats = torch.ones(500, 64) / 8.0
    mask, st = I2Mask()(feats, coords_for([500]), None, torch.Generator().manual_seed(0))
    fr = st["frames"][0]
    assert all(math.isfinite(x) for x in fr["r_c"] + fr["ratio"])
    # All voxels fall in one cluster; ties put it in K1; r_c = 1 (no spread): floor(500 * 0.9).
    assert int(mask.sum()) == 450


def test_frame_without_valid_voxels_is_skipped():
    feats = torch.randn(20, 8)
    coords = coords_for([10, 10])
    valid = torch.ones(20, dtype=torch.bool)
    valid[:10] = False
    mask, st = I2Mask()(feats, coords, valid, torch.Generator().manual_seed(0))
    assert [fr["batch_index"] for fr in st["frames"]] == [1]
    assert not mask[:10].any()


@pytest.mark.parametrize(
    "cfg,match",
    [
        ({"N_CLUSTERS": 8, "PARTITION": [3, 3, 3]}, "add up"),
        ({"BASE_RATIOS": [0.9, 0.45]}, "one ratio per"),
        ({"BASE_RATIOS": [1.2, 0.45, 0.0]}, r"\[0, 1\]"),
        ({"NAME": "NoSuchMask"}, "NoSuchMask"),
    ],
)
def test_config_errors_are_named(cfg, match):
    with pytest.raises((ValueError, KeyError), match=match):
        build_masker(dict(cfg))


def test_config_switches_reach_the_algorithm():
    feats = _spread_frame(2)
    m_default, _ = build_masker({"NAME": "I2Mask"}).mask_frame(feats, torch.Generator().manual_seed(0))
    m_low, _ = build_masker({"NAME": "I2Mask", "BASE_RATIOS": [0.6, 0.3, 0.0]}).mask_frame(
        feats, torch.Generator().manual_seed(0))
    assert 0 < int(m_low.sum()) < int(m_default.sum())


def _shipped_masking_block(**overrides) -> EasyDict:
    """``MODEL.MASKING`` of cfgs/seal_pretrain.yaml with ``--set``-style overrides, as the detector gets it."""
    block = EasyDict(yaml.safe_load((ROOT / "cfgs" / "seal_pretrain.yaml").read_text())["MODEL"]["MASKING"])
    block.update(overrides)
    return block


def _far_distance_means(feats: torch.Tensor, labels: torch.Tensor, lam: float, k: int = 8) -> list[float]:
    """D_k recomputed from the labels: mean distance to the member mean over members beyond ``lam``."""
    centres = torch.stack([feats[labels == j].double().mean(0) for j in range(k)])
    delta = (feats.double() - centres[labels]).norm(dim=1)
    far = [delta[(labels == j) & (delta > lam)] for j in range(k)]
    return [float(f.mean()) if f.numel() else 0.0 for f in far]


def test_partition_from_the_config_reaches_the_algorithm():
    feats = _spread_frame(2)
    _, st = build_masker(_shipped_masking_block(PARTITION=[4, 2, 2])).mask_frame(
        feats, torch.Generator().manual_seed(0))
    sets = [s.tolist() for s in st["partition"]]
    assert [len(s) for s in sets] == [4, 2, 2]
    centres = torch.stack([feats[st["labels"] == j].double().mean(0) for j in range(8)])
    assert sets == brute_force_partition(centres.tolist(), (4, 2, 2))


@pytest.mark.parametrize("lam", [0.5, 0.8])
def test_lambda_from_the_config_reaches_the_algorithm(lam):
    feats = _spread_frame(2)
    _, st = build_masker(_shipped_masking_block(LAMBDA=lam)).mask_frame(feats, torch.Generator().manual_seed(0))
    expected = _far_distance_means(feats, st["labels"], lam)
    assert expected != pytest.approx(_far_distance_means(feats, st["labels"], 0.6), abs=1e-3)  # data tells λ apart
    assert st["D"].tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.gpu
def test_cuda_runs_on_device():
    feats = _spread_frame(0).cuda()
    coords = coords_for([4000]).cuda()
    mask, st = I2Mask()(feats, coords, None, torch.Generator(device="cuda").manual_seed(0))
    assert mask.device.type == "cuda" and 0.0 < st["mask_ratio"] < 0.9


# --- issue 13: small frames, config errors, large partitions, NaN targets ----------------------

def _mean_masked(n: int, seeds: int = 150) -> tuple[float, float]:
    """Mean realised and mean expected (Σ n_k r_k) number of masked voxels of n-voxel frames."""
    masked, expected = [], []
    for seed in range(seeds):
        feats = blob_features(n, seed=seed)[0]
        mask, st = I2Mask().mask_frame(feats, torch.Generator().manual_seed(seed))
        masked.append(int(mask.sum()))
        if st["fallback"]:
            expected.append(n * (3 * 0.9 + 3 * 0.45) / 8)
        else:
            expected.append(float((st["cluster_sizes"].double() * st["ratio"]).sum()))
    return sum(masked) / seeds, sum(expected) / seeds


@pytest.mark.parametrize("n", [6, 8, 9, 12, 15])
def test_small_frames_are_masked_at_their_expected_ratio_not_at_zero(n):
    # The floor rule masked 0 voxels for 8 <= n < ~16 (tiny clusters) but ~45 % for n < 8.
    realised, expected = _mean_masked(n)
    assert realised == pytest.approx(expected, abs=0.35)
    assert realised / n > 0.1


def test_large_frames_change_by_less_than_one_voxel_per_cluster():
    feats = _spread_frame(7, 6000)
    for seed in range(5):
        mask, st = I2Mask().mask_frame(feats, torch.Generator().manual_seed(seed))
        exact = st["cluster_sizes"].double() * st["ratio"]
        masked = torch.bincount(st["labels"][mask], minlength=8).double()
        assert ((masked - exact).abs() < 1).all()
        assert ((masked - torch.floor(exact)) <= 1).all()  # at most one voxel above the floor rule


@pytest.mark.parametrize(
    "cfg,match",
    [
        ({"N_CLUSTERS": 0, "PARTITION": []}, r"MODEL\.MASKING\.N_CLUSTERS must be an integer >= 1, got 0"),
        ({"PARTITION": [3, 6, -1]}, r"MODEL\.MASKING\.PARTITION must be an integer >= 1, got -1"),
        ({"PARTITION": [0, 6, 2]}, r"MODEL\.MASKING\.PARTITION must be an integer >= 1, got 0"),
        ({"PARTITION": "332"}, r"MODEL\.MASKING\.PARTITION must be a list, got str '332'"),
        ({"LAMBDA": float("nan")}, r"MODEL\.MASKING\.LAMBDA must be a finite number in \[0, inf\], got nan"),
        ({"LAMBDA": "0.6"}, r"MODEL\.MASKING\.LAMBDA must be a finite number"),
        ({"KMEANS_N_INIT": 0}, r"MODEL\.MASKING\.KMEANS_N_INIT must be an integer >= 1"),
        ({"BASE_RATIOS": [0.9, float("nan"), 0.0]}, r"MODEL\.MASKING\.BASE_RATIOS must be a finite number in \[0, 1\]"),
        ({"NAME": "RandomMask", "MASK_RATIO": 1.0}, r"MODEL\.MASKING\.MASK_RATIO must be a finite number in \[0, 1\), got 1\.0"),
        ({"NAME": "RangeAwareMask", "VOXEL_SIZE": [1, 1, 1], "POINT_CLOUD_RANGE": [0] * 6, "DISTANCES": [50, 30]},
         r"MODEL\.MASKING\.DISTANCES must be positive finite distances in increasing order, got \[50, 30\]"),
        ({"NAME": "FPSMask", "VOXEL_SIZE": [1, 1, 1], "POINT_CLOUD_RANGE": [0] * 6, "NUM_SEEDS": 0},
         r"MODEL\.MASKING\.NUM_SEEDS must be an integer >= 1, got 0"),
        ({"NAME": "FPSMask", "VOXEL_SIZE": [1, 1, 1], "POINT_CLOUD_RANGE": [0] * 6, "NUM_SEEDS": -5},
         r"MODEL\.MASKING\.NUM_SEEDS must be an integer >= 1, got -5"),
    ],
)
def test_bad_config_values_are_refused_at_build_time_naming_the_key(cfg, match):
    with pytest.raises(ValueError, match=match):
        build_masker(dict(cfg))


def test_a_partition_search_too_large_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"N_CLUSTERS 32 with PARTITION \[12, 12, 8\]: the greedy partition would "
                                         r"score 225,918,810 cluster subsets per frame \(limit 1,000,000\)"):
        build_masker({"N_CLUSTERS": 32, "PARTITION": [12, 12, 8], "BASE_RATIOS": [0.9, 0.45, 0.0]})


def test_partition_is_scored_in_chunks_with_the_same_result(monkeypatch):
    import pcdet_seal.masking.i2mask as i2mask

    g = torch.Generator().manual_seed(11)
    centres = torch.randn(16, 6, generator=g)
    dist = centre_cosine_distance(centres, torch.ones(16, dtype=torch.long))
    whole = [t.tolist() for t in partition_clusters(dist, (6, 6, 4))]
    monkeypatch.setattr(i2mask, "_CHUNK", 7)  # C(16, 6) = 8008 subsets in 1144 chunks
    assert [t.tolist() for t in partition_clusters(dist, (6, 6, 4))] == whole
    assert whole == brute_force_partition(centres.tolist(), (6, 6, 4))


@pytest.mark.parametrize("name", ["I2Mask", "RandomMask", "RangeAwareMask", "FPSMask"])
def test_non_finite_targets_name_the_frame(name):
    feats = _spread_frame(0, 300)
    feats = torch.cat([feats, feats])
    feats[300 + 17, 3] = float("nan")
    masker = build_masker({"NAME": name, "VOXEL_SIZE": [0.4, 0.4, 0.2], "POINT_CLOUD_RANGE": [-40, -40, -2, 40, 40, 4]})
    with pytest.raises(ValueError, match=r"Seal targets hold NaN/inf in frame 'seq_b' \(batch index 1\): 1 of 300 "
                                         r"valid voxels"):
        masker(feats, coords_for([300, 300]), None, torch.Generator().manual_seed(0), frame_ids=["seq_a", "seq_b"])
    with pytest.raises(ValueError, match=r"NaN/inf in batch index 1: 1 of 300"):
        masker(feats, coords_for([300, 300]), None, torch.Generator().manual_seed(0))
    valid = torch.ones(600, dtype=torch.bool)
    valid[300 + 17] = False  # a voxel without a target may hold anything
    masker(feats, coords_for([300, 300]), valid, torch.Generator().manual_seed(0))


def test_every_frame_keeps_a_visible_voxel():
    feats = torch.ones(40, 8)  # one cluster, no spread: r_c = 1 everywhere
    masker = I2Mask({"BASE_RATIOS": [1.0, 1.0, 1.0]})
    mask, st = masker(feats, coords_for([40]), None, torch.Generator().manual_seed(0))
    assert int(mask.sum()) == 39 and st["frames"][0]["n_masked"] == 39
    mask, st = I2Mask()(torch.randn(1, 8), coords_for([1]), None, torch.Generator().manual_seed(0))
    assert not mask.any() and st["frames"][0]["fallback"] is True  # a one-voxel frame stays visible

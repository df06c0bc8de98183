"""The study's linear probe (pure torch): it recovers planted classes, stays at chance on noise,
and labels voxels by the majority of their points."""
from __future__ import annotations

import torch

from pcdet_seal.tools.probe import ProbeRecipe, majority_labels, mean_iou, probe_miou

NUM_CLASSES = 8


def _labels(n: int, seed: int) -> torch.Tensor:
    # unbalanced, as real scenes are: ground and structures dominate
    weights = torch.tensor([0.35, 0.25, 0.1, 0.03, 0.15, 0.05, 0.05, 0.02])
    return torch.multinomial(weights, n, replacement=True, generator=torch.Generator().manual_seed(seed))


def test_probe_recovers_planted_classes():
    train_y, val_y = _labels(6000, 0), _labels(3000, 1)
    noise = torch.Generator().manual_seed(2)

    def planted(y):
        return torch.nn.functional.one_hot(y, NUM_CLASSES).float() * 3 + torch.randn(len(y), 16, generator=noise)[:, :NUM_CLASSES] * 0.3

    result = probe_miou(planted(train_y), train_y, planted(val_y), val_y, NUM_CLASSES, seed=0)
    assert result["probe_miou"] > 0.97
    assert result["majority_miou"] < 0.1
    assert result["classes"] == sorted(set(val_y.tolist()))


def test_probe_on_random_features_stays_near_the_majority_predictor():
    train_y, val_y = _labels(6000, 3), _labels(3000, 4)
    gen = torch.Generator().manual_seed(5)
    result = probe_miou(torch.randn(6000, 64, generator=gen), train_y, torch.randn(3000, 64, generator=gen), val_y,
                        NUM_CLASSES, ProbeRecipe(steps=300), seed=0)
    assert result["probe_miou"] <= result["majority_miou"] + 0.05


def test_probe_is_deterministic_per_seed_and_seeds_differ():
    train_y, val_y = _labels(3000, 6), _labels(1000, 7)
    gen = torch.Generator().manual_seed(8)
    x_train = torch.nn.functional.one_hot(train_y, NUM_CLASSES).float() + torch.randn(3000, NUM_CLASSES, generator=gen)
    x_val = torch.nn.functional.one_hot(val_y, NUM_CLASSES).float() + torch.randn(1000, NUM_CLASSES, generator=gen)
    recipe = ProbeRecipe(steps=20, batch_size=256)
    a = probe_miou(x_train, train_y, x_val, val_y, NUM_CLASSES, recipe, seed=0)["probe_miou"]
    b = probe_miou(x_train, train_y, x_val, val_y, NUM_CLASSES, recipe, seed=0)["probe_miou"]
    c = probe_miou(x_train, train_y, x_val, val_y, NUM_CLASSES, recipe, seed=1)["probe_miou"]
    assert a == b
    assert a != c


def test_majority_labels_per_voxel():
    labels = torch.tensor([2, 2, 5, 5, 5, 1, 7, 3, 3])
    p2v = torch.tensor([0, 0, 0, 1, 1, -1, 2, 2, 2])
    assert majority_labels(labels, p2v, 4, NUM_CLASSES).tolist() == [2, 5, 3, -1]
    # a tie goes to the lower label
    assert majority_labels(torch.tensor([6, 4]), torch.tensor([0, 0]), 1, NUM_CLASSES).tolist() == [4]


def test_mean_iou_by_hand():
    pred = torch.tensor([0, 0, 1, 1, 2])
    gt = torch.tensor([0, 1, 1, 1, 0])
    # class 0: inter 1, union 3; class 1: inter 2, union 3; class 2 not asked
    assert abs(mean_iou(pred, gt, [0, 1]) - (1 / 3 + 2 / 3) / 2) < 1e-12

"""Losses against brute-force and torch references."""
import pytest
import torch
import torch.nn.functional as F

from pcdet_seal.losses import chamfer_distance, masked_smooth_l1


def brute_chamfer(pred, gt, count):
    """Double loop over python floats: squared distances, means both ways."""
    pts_p = pred.tolist()
    pts_g = gt[:count].tolist()

    def sq(a, b):
        return sum((x - y) ** 2 for x, y in zip(a, b))

    a = sum(min(sq(p, g) for g in pts_g) for p in pts_p) / len(pts_p)
    b = sum(min(sq(g, p) for p in pts_p) for g in pts_g) / len(pts_g)
    return a + b


def test_chamfer_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    n, p, m = 12, 16, 64
    pred = torch.randn(n, p, 3, generator=g, dtype=torch.float64)
    gt = torch.randn(n, m, 3, generator=g, dtype=torch.float64)
    counts = torch.randint(1, m + 1, (n,), generator=g)
    # Padding slots hold garbage that must not matter.
    for i in range(n):
        gt[i, counts[i]:] = 1e3
    ours = chamfer_distance(pred, gt, counts, chunk_size=5)
    ref = [brute_chamfer(pred[i], gt[i], int(counts[i])) for i in range(n)]
    assert ours.tolist() == pytest.approx(ref, rel=1e-10)


def test_chamfer_padding_never_double_weights():
    pred = torch.tensor([[[0.0, 0.0, 0.0]]])
    gt_one = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 3.0]]])
    # Cyclic padding would repeat the far point and change the mean; counts keep it out.
    padded = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    a = chamfer_distance(pred, gt_one, torch.tensor([2]))
    b = chamfer_distance(pred, padded, torch.tensor([2]))
    assert a.item() == pytest.approx(1.0 + (1.0 + 9.0) / 2)
    assert torch.equal(a, b)


def test_chamfer_zero_for_identical_sets_and_empty_gt():
    pts = torch.randn(3, 5, 3)
    assert torch.allclose(chamfer_distance(pts, pts, torch.tensor([5, 5, 5])), torch.zeros(3))
    out = chamfer_distance(pts, pts, torch.tensor([5, 0, 5]))
    assert out[1] == 0 and torch.isfinite(out).all()


def test_chamfer_gradients_finite():
    pred = torch.randn(4, 16, 3, requires_grad=True)
    gt = torch.randn(4, 64, 3)
    loss = chamfer_distance(pred, gt, torch.tensor([64, 3, 1, 0])).sum()
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_chamfer_shape_errors():
    with pytest.raises(ValueError, match="gt_counts"):
        chamfer_distance(torch.zeros(2, 3, 3), torch.zeros(2, 4, 3), torch.zeros(3, dtype=torch.long))


def test_masked_smooth_l1_matches_torch_on_rows():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(50, 64, generator=g) * 2
    target = torch.randn(50, 64, generator=g)
    mask = torch.rand(50, generator=g) > 0.4
    ours = masked_smooth_l1(pred, target, mask, beta=1.0)
    ref = F.smooth_l1_loss(pred[mask], target[mask], beta=1.0)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    # Unmasked rows do not matter.
    pred2 = pred.clone()
    pred2[~mask] = 100.0
    assert masked_smooth_l1(pred2, target, mask).item() == pytest.approx(ours.item(), rel=1e-6)


def test_masked_smooth_l1_empty_mask():
    pred = torch.randn(4, 8, requires_grad=True)
    out = masked_smooth_l1(pred, torch.zeros(4, 8), torch.zeros(4, dtype=torch.bool))
    out.backward()
    assert out.item() == 0.0 and torch.equal(pred.grad, torch.zeros(4, 8))


def test_masked_smooth_l1_errors():
    with pytest.raises(ValueError, match="mask"):
        masked_smooth_l1(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3))

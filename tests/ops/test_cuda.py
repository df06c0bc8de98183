"""pcdet_seal.ops on CUDA tensors give the CPU results, on the tensors' device."""
import numpy as np
import pytest
import torch

from pcdet_seal import ops

pytestmark = pytest.mark.gpu


def random_boxes(seed: int, n: int, spread: float) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    boxes = np.concatenate([rng.uniform(-spread, spread, (n, 2)), rng.uniform(-1, 1, (n, 1)),
                            rng.uniform(0.5, 5.0, (n, 3)), rng.uniform(-np.pi, np.pi, (n, 1))], axis=1)
    return torch.tensor(boxes, dtype=torch.float32)


def test_ops_on_cuda_match_cpu():
    a, b = random_boxes(0, 300, 20.0), random_boxes(1, 200, 20.0)
    cuda = torch.device("cuda")
    for fn in (ops.boxes_bev_iou, ops.boxes_iou3d, ops.boxes_bev_overlap):
        out = fn(a.to(cuda), b.to(cuda))
        assert out.device.type == "cuda"
        torch.testing.assert_close(out.cpu(), fn(a, b), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ops.paired_boxes_iou3d(a[:200].to(cuda), b.to(cuda)).cpu(),
                               ops.paired_boxes_iou3d(a[:200], b), atol=1e-4, rtol=1e-4)

    scores = torch.rand(300, generator=torch.Generator().manual_seed(0))
    keep = ops.nms(a.to(cuda), scores.to(cuda), 0.1)
    assert keep.device.type == "cuda" and keep.cpu().tolist() == ops.nms(a, scores, 0.1).tolist()

    points = torch.rand(2, 5000, 3) * 40 - 20
    boxes = torch.stack([a[:50], b[:50]])
    out = ops.points_in_boxes(points.to(cuda), boxes.to(cuda))
    assert out.device.type == "cuda" and torch.equal(out.cpu(), ops.points_in_boxes(points, boxes))
    assert torch.equal(ops.points_in_boxes_mask(points[0].to(cuda), boxes[0].to(cuda)).cpu(),
                       ops.points_in_boxes_mask(points[0], boxes[0]))

    ids = torch.randint(0, 100, (10000,))
    assert torch.equal(ops.ingroup_inds(ids.to(cuda)).cpu(), ops.ingroup_inds(ids))

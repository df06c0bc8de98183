"""k-means: quality against scikit-learn, degenerate inputs, reproducibility."""
import numpy as np
import pytest
import torch

from pcdet_seal.masking.kmeans import kmeans

from helpers_masking import blob_features

sklearn_cluster = pytest.importorskip("sklearn.cluster")


def _sklearn_inertia(x: np.ndarray) -> float:
    return sklearn_cluster.KMeans(n_clusters=8, n_init=10, random_state=0).fit(x).inertia_


def _datasets():
    rng = np.random.default_rng(0)
    blobs, _ = blob_features(4000, seed=1)
    yield "blobs", blobs.numpy()
    yield "uniform", rng.random((4000, 64)).astype(np.float32)
    gauss = rng.normal(size=(4000, 64)).astype(np.float32)
    yield "unit-gaussian", gauss / np.linalg.norm(gauss, axis=1, keepdims=True)


@pytest.mark.parametrize("name,data", list(_datasets()), ids=[d[0] for d in _datasets()])
def test_inertia_close_to_sklearn(name, data):
    res = kmeans(torch.from_numpy(data), 8, generator=torch.Generator().manual_seed(0))
    x = torch.from_numpy(data)
    # Inertia recomputed here from the returned labels and centres, not taken from the result.
    inertia = float(((x - res.centres[res.labels]) ** 2).sum())
    assert inertia == pytest.approx(float(res.inertia), rel=1e-4)
    assert inertia <= 1.02 * _sklearn_inertia(data), name


def test_centres_are_member_means_and_labels_nearest():
    x, _ = blob_features(2000, seed=3)
    res = kmeans(x, 8, generator=torch.Generator().manual_seed(0))
    for j in range(8):
        members = x[res.labels == j]
        assert res.counts[j] == members.shape[0]
        assert torch.allclose(res.centres[j], members.mean(0), atol=1e-5)
    d = torch.cdist(x, res.centres)
    # Labels come from the last assignment step, so each point's centre is (near) its nearest.
    assert (d.gather(1, res.labels[:, None]).squeeze(1) <= d.min(1).values + 1e-4).float().mean() > 0.99


def test_blobs_recovered():
    x, truth = blob_features(1600, spreads=[0.05] * 8, seed=2)
    res = kmeans(x, 8, generator=torch.Generator().manual_seed(0))
    # Each true blob maps to exactly one cluster and vice versa.
    pairs = set(zip(truth.tolist(), res.labels.tolist()))
    assert len(pairs) == 8


def test_duplicates_give_empty_clusters_without_nan():
    base = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    x = base.repeat(100, 1)
    res = kmeans(x, 8, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(res.centres).all()
    assert int(res.counts.sum()) == 300
    assert int((res.counts > 0).sum()) == 3
    assert float(res.inertia) == pytest.approx(0.0, abs=1e-6)


def test_all_identical_points():
    x = torch.ones(50, 4)
    res = kmeans(x, 8, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(res.centres).all()
    assert int(res.counts.max()) == 50 and int(res.counts.sum()) == 50


@pytest.mark.parametrize("n", [0, 1, 5, 8])
def test_fewer_points_than_clusters(n):
    x = torch.randn(n, 3)
    res = kmeans(x, 8, generator=torch.Generator().manual_seed(0))
    assert res.labels.tolist() == list(range(n))
    assert res.counts.tolist() == [1] * n + [0] * (8 - n)
    assert torch.isfinite(res.centres).all()
    assert torch.equal(res.centres[:n], x)


def test_seeded_runs_identical_and_seeds_differ():
    x = torch.rand(3000, 16)
    a = kmeans(x, 8, generator=torch.Generator().manual_seed(7))
    b = kmeans(x, 8, generator=torch.Generator().manual_seed(7))
    c = kmeans(x, 8, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.labels, b.labels) and torch.equal(a.centres, b.centres)
    assert not torch.equal(a.centres, c.centres)


def test_bad_shape_is_named():
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        kmeans(torch.zeros(3, 4, 5), 8)


@pytest.mark.gpu
def test_cuda_matches_cpu_quality():
    x, _ = blob_features(20000, seed=4)
    cpu = kmeans(x, 8, generator=torch.Generator().manual_seed(0))
    gpu = kmeans(x.cuda(), 8, generator=torch.Generator(device="cuda").manual_seed(0))
    assert gpu.labels.device.type == "cuda"
    assert float(gpu.inertia) <= 1.02 * float(cpu.inertia)

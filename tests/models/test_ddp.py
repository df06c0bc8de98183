"""DDP-ready pre-training: every trainable parameter gets a gradient on degenerate batches (nothing
masked, no valid target; every decoder and masker), a non-finite loss stops training naming the
iteration, frames and loss terms (or skips the batch when configured), and two gloo processes
with SealMAE in ``DistributedDataParallel`` stay identical and stop together."""
from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.pcdet, pytest.mark.spconv]
pytest.importorskip("pcdet", reason="needs an importable OpenPCDet (pcdet) checkout")
pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")

from helpers_models import batch, dataset, network  # noqa: E402

WORKER = Path(__file__).resolve().parent / "ddp_pretrain_worker.py"


def _without_gradient(model) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


NOTHING_MASKED = {
    "I2Mask": {"NAME": "I2Mask", "BASE_RATIOS": [0.0, 0.0, 0.0]},
    "RandomMask": {"NAME": "RandomMask", "MASK_RATIO": 0.0},
    "RangeAwareMask": {"NAME": "RangeAwareMask", "MASK_RATIO": 0.0},
    "FPSMask": {"NAME": "FPSMask", "MASK_RATIO": 0.0, "NUM_SEEDS": 8},
}
DECODERS = {
    "z_resolved": {"NAME": "DSVTMaskDecoder", "DECODER_MODE": "z_resolved"},
    "reference_tokens": {"NAME": "DSVTMaskDecoder", "DECODER_MODE": "reference_tokens"},
    "sparse_conv": {"NAME": "SparseConvDecoder"},
}


@pytest.mark.parametrize("masker,decoder", [(m, "z_resolved") for m in NOTHING_MASKED]
                         + [("RandomMask", "reference_tokens"), ("RandomMask", "sparse_conv")])
def test_a_batch_with_nothing_masked_gives_every_parameter_a_gradient(cfg, ds, masker, decoder):
    cfg = copy.deepcopy(cfg)
    cfg.MODEL.MASKING = NOTHING_MASKED[masker]
    cfg.MODEL.DECODER.update(DECODERS[decoder])
    torch.manual_seed(0)
    model = network(cfg, ds)
    model.train()
    data = batch(ds)
    ret, tb, _ = model(data)
    assert tb["num_masked"] == 0 and torch.isfinite(ret["loss"])
    ret["loss"].backward()
    assert _without_gradient(model) == []


def _write_cache(path, ds, cell, frames_without_target=(), indices=None):
    """Random unit Seal features of ``ds``'s frames; ``frames_without_target`` get cells that match
    none of their points (every voxel of such a frame has no valid target)."""
    from pcdet_seal.seal.cache import CacheMeta, FeatureCacheWriter
    from pcdet_seal.seal.targets import teacher_cells

    writer = FeatureCacheWriter(path, CacheMeta("random-unit", "00" * 32, "cartesian", tuple(cell), 64))
    gen = torch.Generator().manual_seed(0)
    for index in range(len(ds)) if indices is None else indices:
        item = ds[index]
        pts = torch.from_numpy(item["points"][:, :3]).float()
        cells = teacher_cells(pts, torch.zeros(len(pts), dtype=torch.long), cell)
        coords = cells.coords[:, 1:].int()
        if item["frame_id"] in frames_without_target:
            coords = coords + 100000
        feats = torch.nn.functional.normalize(torch.randn(coords.shape[0], 64, generator=gen), dim=1)
        writer.write(str(item["frame_id"]), coords, feats)


def test_frames_without_valid_targets_give_every_parameter_a_gradient(cfg, ds, tmp_path):
    cell = list(cfg.DATA_CONFIG.DATA_PROCESSOR[-1].VOXEL_SIZE)
    data = batch(ds)
    _write_cache(tmp_path, ds, cell, frames_without_target=set(data["frame_id"].tolist()), indices=(0, 1))
    cfg = copy.deepcopy(cfg)
    cfg.MODEL.SEAL_TARGET.update({"MODE": "cache", "CACHE_DIR": str(tmp_path), "CELL_SIZE": cell})
    model = network(cfg, ds)
    model.train()
    ret, tb, _ = model(data)
    assert tb["seal_valid_ratio"] == 0.0 and tb["num_masked"] == 0
    ret["loss"].backward()
    assert _without_gradient(model) == []


def _nan_batch(ds):
    data = batch(ds)
    data["points"][5, 5] = float("nan")  # one elongation of the first frame (not a teacher input)
    return data


def test_a_non_finite_loss_stops_training_naming_iteration_frames_and_terms(cfg, ds):
    from pcdet.models import model_fn_decorator

    from pcdet_seal.models.nonfinite import NonFiniteLossError

    torch.manual_seed(0)
    model = network(cfg, ds)
    model.train()
    fn = model_fn_decorator()
    fn(model, batch(ds))  # iteration 0 is fine
    data = _nan_batch(ds)
    with pytest.raises(NonFiniteLossError) as info:
        fn(model, data)
    message = str(info.value)
    assert "iteration 1" in message
    assert all(str(f) in message for f in data["frame_id"])
    assert "loss_coord=" in message and "loss_seal=" in message and "nan" in message
    assert "MODEL.ON_NONFINITE_LOSS skip" in message


def test_skip_policy_gives_zero_gradients_and_keeps_running_statistics(cfg, ds):
    cfg = copy.deepcopy(cfg)
    cfg.MODEL.ON_NONFINITE_LOSS = "skip"
    torch.manual_seed(0)
    model = network(cfg, ds)
    model.train()
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    ret, tb, _ = model(_nan_batch(ds))
    assert float(ret["loss"]) == 0.0 and tb["skipped_nonfinite"] == 1.0
    ret["loss"].backward()
    assert _without_gradient(model) == []
    assert all(float(p.grad.abs().sum()) == 0.0 for p in model.parameters() if p.requires_grad)
    for name, value in model.named_buffers():
        assert torch.equal(value, buffers[name]), name


def test_unknown_non_finite_policy_names_the_key(cfg, ds):
    cfg = copy.deepcopy(cfg)
    cfg.MODEL.ON_NONFINITE_LOSS = "ignore"
    with pytest.raises(ValueError, match="MODEL.ON_NONFINITE_LOSS"):
        network(cfg, ds)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_stay_identical_and_stop_together(cfg, tmp_path):
    """Rank 1's second batch has no valid target (nothing masked there), rank 0's is normal; at
    the fourth step rank 1's batch holds a NaN: both ranks stop with the same iteration and frames."""
    from pcdet.datasets import DistributedSampler

    frames, world, nan_step = 16, 2, 3
    cfg = copy.deepcopy(cfg)
    cfg.DATA_CONFIG.NUM_FRAMES.train = frames
    ds = dataset(cfg)
    rank1 = list(DistributedSampler(ds, num_replicas=world, rank=1, shuffle=True))
    degenerate = {str(ds[i]["frame_id"]) for i in rank1[2:4]}
    cell = list(cfg.DATA_CONFIG.DATA_PROCESSOR[-1].VOXEL_SIZE)
    cache = tmp_path / "cache"
    _write_cache(cache, ds, cell, frames_without_target=degenerate)
    written = {p.name: p.stat().st_mtime_ns for p in cache.rglob("*")}
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, str(WORKER), "--cache-dir", str(cache), "--out", str(out), "--frames", str(frames),
           "--cell", *map(str, cell), "--nan-step", str(nan_step), "--nan-rank", "1"]
    procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for r in range(world)]
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=600)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log[-4000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world))
    # each rank read its own frames
    assert not set(sum(r0["frames"], [])) & set(sum(r1["frames"], []))
    assert set(r1["frames"][1]) == degenerate
    assert r1["num_masked"][1] == 0 and r0["num_masked"][1] > 0 and len(r0["num_masked"]) == nan_step
    # both stopped at the same step, naming rank 1's frames
    for record in (r0, r1):
        assert record["error"] is not None and f"iteration {nan_step}" in record["error"]
        assert "rank 1: frames" in record["error"] and "rank 0: frames" not in record["error"]
        assert all(f in record["error"] for f in r1["frames"][nan_step])
    for name, value in r0["params"].items():
        assert torch.equal(value, r1["params"][name]), name
    assert {p.name: p.stat().st_mtime_ns for p in cache.rglob("*")} == written  # no rank wrote the cache

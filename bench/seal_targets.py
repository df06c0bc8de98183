#!/usr/bin/env python
"""Seal targets benchmark: teacher (Res16UNet34C on spconv) frames/s on CPU (and GPU when there
is one), per-voxel target cost, and Seal-cache bytes per Waymo-sized frame in fp16 / int8, with
and without compression, side by side with the reference layout (float32 per point).

    python bench/seal_targets.py                 # about 2-4 minutes on a 2-core CPU
    python bench/seal_targets.py --no-waymo-teacher
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pcdet_seal.seal.cache import CacheMeta, FeatureCache, FeatureCacheWriter
from pcdet_seal.seal.targets import teacher_input, voxel_targets

WAYMO_VOXEL = (0.32, 0.32, 0.1875)
WAYMO_PC_MIN = (-74.88, -74.88, -2.0)
WAYMO_GRID = (468, 468, 32)
MB = 1e6


def synthetic_scan(n_points: int, seed: int = 0) -> torch.Tensor:
    """A LiDAR-like frame (N, 4): ground (denser near the sensor), building walls, vegetation
    blobs and cars inside the Waymo range; the 4th column is a tanh-intensity in [0, 1)."""
    g = np.random.default_rng(seed)
    n_ground, n_wall, n_blob = int(n_points * 0.45), int(n_points * 0.3), n_points - int(n_points * 0.75)
    r = 3 + 72 * g.random(n_ground) ** 1.1
    a = g.uniform(-np.pi, np.pi, n_ground)
    ground = np.stack([r * np.cos(a), r * np.sin(a), -2 + 0.05 * g.standard_normal(n_ground) + 0.01 * r], 1)
    walls = []
    for _ in range(40):
        start, direction = g.uniform(-70, 70, 2), g.normal(size=2)
        direction /= np.linalg.norm(direction)
        k = n_wall // 40
        t = g.uniform(0, g.uniform(10, 40), k)
        xy = start + t[:, None] * direction
        walls.append(np.concatenate([xy, g.uniform(-2, g.uniform(1, 4), (k, 1))], 1))
    blobs = []
    for _ in range(200):
        k = n_blob // 200
        blobs.append(g.uniform(-70, 70, (1, 3)) * [1, 1, 0] + [0, 0, -1] + g.normal(0, [3.0, 3.0, 1.0], (k, 3)))
    xyz = np.concatenate([ground, *walls, *blobs])
    xyz[:, :2] = np.clip(xyz[:, :2], -74.8, 74.8)
    xyz[:, 2] = np.clip(xyz[:, 2], -1.99, 3.99)
    intensity = np.tanh(g.gamma(1.5, 0.1, (xyz.shape[0], 1)))
    return torch.from_numpy(np.concatenate([xyz, intensity], 1).astype(np.float32))


def voxelize(points: torch.Tensor) -> tuple[torch.Tensor, int]:
    """DSVT-grid voxel of each point (-1 outside) and the number of non-empty voxels."""
    idx = torch.floor((points[:, :3] - torch.tensor(WAYMO_PC_MIN)) / torch.tensor(WAYMO_VOXEL)).long()
    inside = ((idx >= 0) & (idx < torch.tensor(WAYMO_GRID))).all(1)
    _, inv = torch.unique(idx[inside], dim=0, return_inverse=True)
    p2v = torch.full((points.shape[0],), -1, dtype=torch.long)
    p2v[inside] = inv
    return p2v, int(inv.max()) + 1


def time_teacher(teacher, coords: torch.Tensor, feats: torch.Tensor, device: torch.device,
                 repeats: int) -> tuple[float, float, torch.Tensor]:
    """Best-of-``repeats`` wall seconds per forward (the CPU may be shared) and the process CPU
    seconds of that run; returns (wall, cpu, output on CPU)."""
    coords, feats = coords.to(device), feats.to(device)
    runs = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        out = teacher(coords, feats)
        if device.type == "cuda":
            torch.cuda.synchronize()
        runs.append((time.perf_counter() - start, time.process_time() - cpu))
    wall, cpu = min(runs)
    return wall, cpu, out.cpu()


def cache_rows(coords: torch.Tensor, feats: torch.Tensor, n_points: int, label: str) -> list[tuple]:
    """Bytes per frame, write/read time and round-trip error per cache layout."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "reference.npy"
        per_point = np.zeros((n_points, feats.shape[1]), np.float32)
        start = time.perf_counter()
        np.save(ref, per_point)
        rows.append((f"reference: float32 per point ({n_points} x {feats.shape[1]})",
                     ref.stat().st_size, time.perf_counter() - start, float("nan"), 0.0))
        for dtype in ("float16", "int8"):
            for compressed in (False, True):
                folder = Path(tmp) / f"{dtype}{int(compressed)}"
                meta = CacheMeta("bench", "0" * 64, "cartesian", WAYMO_VOXEL, feats.shape[1], dtype, compressed)
                writer = FeatureCacheWriter(folder, meta)
                start = time.perf_counter()
                path = writer.write("frame", coords, feats)
                write_s = time.perf_counter() - start
                cache = FeatureCache(folder)
                start = time.perf_counter()
                got, found = cache.lookup("frame", coords)
                read_s = time.perf_counter() - start
                assert bool(found.all())
                err = float((got - feats).abs().max())
                name = f"{dtype}{' + zip' if compressed else ''} ({label})"
                rows.append((name, path.stat().st_size, write_s, read_s, err))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small-points", type=int, default=20_000)
    parser.add_argument("--waymo-points", type=int, default=190_000, help="gives ~150k cells")
    parser.add_argument("--reference-points", type=int, default=180_000,
                        help="points of the reference layout's Waymo frame")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-waymo-teacher", action="store_true", help="skip the large CPU forward")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)  # spconv's one-off noise
    from pcdet_seal.seal.minkunet import Res16UNet, SealTeacher

    torch.manual_seed(0)
    teacher = SealTeacher(Res16UNet())  # random weights: speed and sizes do not depend on them
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (load avg "
          f"{load:.1f}), torch {torch.__version__}, {torch.get_num_threads()} threads, CUDA: "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")

    frames = {"small": synthetic_scan(args.small_points, 1), "waymo-sized": synthetic_scan(args.waymo_points, 2)}
    inputs = {}
    for name, pts in frames.items():
        inputs[name] = teacher_input(pts, torch.zeros(len(pts), dtype=torch.long), WAYMO_VOXEL)

    print("\n== teacher: Res16UNet34C (spconv), Waymo cells 0.32 x 0.32 x 0.1875 m ==")
    print(f"{'device':<8}{'frame':<13}{'points':>9}{'cells':>9}{'s/frame':>10}{'frames/s':>10}"
          f"{'CPU s':>8}  (best of)")
    waymo_out = None
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        teacher.to(device)
        warm_cells, warm_feats = inputs["small"]
        teacher(warm_cells.coords[:2000].to(device), warm_feats[:2000].to(device))  # first-call setup
        for name, (cells, feats) in inputs.items():
            if device.type == "cpu" and name == "waymo-sized" and args.no_waymo_teacher:
                continue
            repeats = args.repeats if (device.type == "cuda" or name == "small") else 1
            sec, cpu, out = time_teacher(teacher, cells.coords, feats, device, repeats)
            if name == "waymo-sized":
                waymo_out = out
            print(f"{device.type:<8}{name:<13}{len(frames[name]):>9}{cells.coords.shape[0]:>9}"
                  f"{sec:>10.3f}{1 / sec:>10.2f}{cpu:>8.1f}  ({repeats})", flush=True)

    cells, _ = inputs["waymo-sized"]
    points = frames["waymo-sized"]
    n_cells = cells.coords.shape[0]
    feats = waymo_out if waymo_out is not None else torch.nn.functional.normalize(
        torch.randn(n_cells, 64), dim=1)
    p2v, n_vox = voxelize(points)
    start = time.perf_counter()
    voxel_targets(feats, cells.point2cell, p2v, n_vox)
    point_mean_s = time.perf_counter() - start
    print(f"\n== per-voxel targets (CPU, point_mean): {len(points)} points → {n_vox} voxels in "
          f"{point_mean_s * 1e3:.1f} ms ==")

    print(f"\n== cache bytes per Waymo-sized frame: {n_cells} cells x 64-d (+ int32 coords) ==")
    label = "teacher output" if waymo_out is not None else "random unit vectors"
    rows = cache_rows(cells.coords[:, 1:].int(), feats, args.reference_points, label)
    random = torch.nn.functional.normalize(torch.randn(n_cells, 64, generator=torch.Generator().manual_seed(0)), dim=1)
    rows += [r for r in cache_rows(cells.coords[:, 1:].int(), random, args.reference_points, "random unit vectors")
             if "zip" in r[0]]
    reference = rows[0][1]
    print(f"{'layout':<52}{'bytes':>12}{'MB':>8}{'vs ref':>8}{'write ms':>10}{'read+join ms':>14}{'max err':>10}")
    for name, size, write_s, read_s, err in rows:
        read = "-" if np.isnan(read_s) else f"{read_s * 1e3:.0f}"
        print(f"{name:<52}{size:>12}{size / MB:>8.2f}{reference / size:>7.1f}x{write_s * 1e3:>10.0f}"
              f"{read:>14}{err:>10.2e}")
    per_150k = {name: size / n_cells * 150_000 / MB for name, size, *_ in rows[1:]}
    int8_plain = per_150k[f"int8 ({label})"]
    int8_zip = per_150k[f"int8 + zip ({label})"]
    print(f"\nscaled to 150,000 cells: int8 {int8_plain:.2f} MB, int8 + zip {int8_zip:.2f} MB "
          f"(goal <= 10 MB: {'met' if int8_plain <= 10 else 'missed'} uncompressed, "
          f"{'met' if int8_zip <= 10 else 'missed'} compressed); fp16 "
          f"{per_150k[f'float16 ({label})']:.2f} MB")


if __name__ == "__main__":
    main()

"""Waymo and nuScenes trees in OpenPCDet's on-disk layouts, built from synthetic clouds, and what the
tests in tests/datasets/ check against: the cloud OpenPCDet's loader must build from each frame,
and the Seal teacher's features of it. Fixtures that write them (and their feature caches) once per
session are in tests/datasets/conftest.py."""
from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import torch

from helpers_models import CFGS, load

FP16_TOL = 2.0 ** -11 + 1e-6  # cache float16 rounding of unit features, plus summation order
WAYMO_SEQUENCES = ("segment-1000_2000_with_camera_labels", "segment-3000_4000_with_camera_labels")
WAYMO_FRAMES = 2  # per sequence
NUS_SAMPLES = 3
NUS_SWEEPS = 9  # MAX_SWEEPS 10 = the sample + 9 sweeps, as create_nuscenes_infos writes them
NUS_EGO_POINTS = 8  # per sweep, inside the 1 m ego box: the loader must drop them
LOGGER = logging.getLogger("tests")


def _cloud(rng, n: int, xy: float, z: tuple[float, float]) -> np.ndarray:
    return np.concatenate([rng.uniform(-xy, xy, (n, 2)), rng.uniform(*z, (n, 1))], 1)


def make_waymo(root: Path) -> dict[str, dict]:
    """``ImageSets/train.txt`` + ``waymo_processed_data_v0_5_0/<seq>/{<seq>.pkl, %04d.npy}`` as
    create_waymo_infos writes them; frame k has raw intensity 1 + 0.5 k (tanh matters) and
    points beyond x/y ±74.88 (the range crop matters). Frame ``segment-3000…_001`` has no box.
    Returns {frame_id: {"xyz": the expected cloud (N, 3), "feature": tanh intensity}}."""
    rng = np.random.default_rng(0)
    (root / "ImageSets").mkdir(parents=True)
    (root / "ImageSets" / "train.txt").write_text("".join(f"{s}.tfrecord\n" for s in WAYMO_SEQUENCES))
    expected, k = {}, 0
    for seq in WAYMO_SEQUENCES:
        folder = root / "waymo_processed_data_v0_5_0" / seq
        folder.mkdir(parents=True)
        infos = []
        for idx in range(WAYMO_FRAMES):
            n = 500
            xyz = _cloud(rng, n, 80.0, (-1.5, 3.5))
            raw = np.concatenate([xyz, np.full((n, 1), 1.0 + 0.5 * k), rng.uniform(0, 2, (n, 1)),
                                  -np.ones((n, 1))], 1).astype(np.float32)  # x y z intensity elongation NLZ
            np.save(folder / f"{idx:04d}.npy", raw)
            boxes = 0 if (seq, idx) == (WAYMO_SEQUENCES[1], 1) else 2
            annos = {"name": np.array(["Vehicle", "Pedestrian"][:boxes]),
                     "difficulty": np.zeros(boxes, dtype=np.int32),
                     "num_points_in_gt": np.full(boxes, 10),
                     "gt_boxes_lidar": np.tile([[5.0, 5.0, 1.0, 4.0, 2.0, 1.5, 0.1, 0.0, 0.0]], (boxes, 1))}
            frame_id = f"{seq}_{idx:03d}"
            infos.append({"point_cloud": {"num_features": 5, "lidar_sequence": seq, "sample_idx": idx},
                          "frame_id": frame_id,
                          "metadata": {"context_name": seq, "timestamp_micros": 1_000_000 * k},
                          "pose": np.eye(4, dtype=np.float32), "annos": annos})
            keep = (np.abs(raw[:, 0]) <= 74.88) & (np.abs(raw[:, 1]) <= 74.88)
            expected[frame_id] = {"xyz": raw[keep, :3], "feature": float(np.tanh(np.float32(1.0 + 0.5 * k)))}
            k += 1
        with open(folder / f"{seq}.pkl", "wb") as f:
            pickle.dump(infos, f)
    return expected


def make_nuscenes(root: Path) -> dict[str, dict]:
    """``v1.0-mini/{samples,sweeps}/LIDAR_TOP/*.pcd.bin`` (N, 5) float32 + the 10-sweep infos pkl
    as create_nuscenes_infos writes them; each sweep is shifted by its ``transform_matrix`` and
    holds points within 1 m of the ego, which OpenPCDet drops. Sample 0 has no box.
    Returns {frame_id: {"xyz": expected 10-sweep cloud, "feature": raw intensity, "lags": Δt set}}."""
    rng = np.random.default_rng(1)
    version = root / "v1.0-mini"
    for sub in ("samples", "sweeps"):
        (version / sub / "LIDAR_TOP").mkdir(parents=True)
    infos, expected = [], {}
    for s in range(NUS_SAMPLES):
        stamp = 1532402927647951 + 500_000 * s
        intensity = 10.0 + 20.0 * s
        lidar_path = f"samples/LIDAR_TOP/n015-2018-07-24-11-22-45+0800__LIDAR_TOP__{stamp}.pcd.bin"
        main = _cloud(rng, 300, 60.0, (-4.5, 2.5)).astype(np.float32)
        main[:4, :2] = rng.uniform(-0.9, 0.9, (4, 2))  # ego points of the sample itself stay
        np.concatenate([main, np.full((300, 1), intensity), rng.integers(0, 32, (300, 1))], 1) \
            .astype(np.float32).tofile(version / lidar_path)
        clouds, sweeps = [main], []
        for j in range(1, NUS_SWEEPS + 1):
            sweep_path = f"sweeps/LIDAR_TOP/n015-2018-07-24-11-22-45+0800__LIDAR_TOP__{stamp - 50_000 * j}.pcd.bin"
            pts = _cloud(rng, 60, 55.0, (-4.5, 2.5)).astype(np.float32)
            pts[:NUS_EGO_POINTS, :2] = rng.uniform(-0.95, 0.95, (NUS_EGO_POINTS, 2))
            np.concatenate([pts, np.full((60, 1), intensity), rng.integers(0, 32, (60, 1))], 1) \
                .astype(np.float32).tofile(version / sweep_path)
            tm = np.eye(4)
            tm[:3, 3] = [0.4 * j, -0.3 * j, 0.0]
            sweeps.append({"lidar_path": sweep_path, "sample_data_token": f"sd{s}_{j}", "transform_matrix": tm,
                           "global_from_car": np.eye(4), "car_from_current": np.eye(4), "time_lag": 0.05 * j})
            away = ~((np.abs(pts[:, 0]) < 1.0) & (np.abs(pts[:, 1]) < 1.0))
            clouds.append(pts[away].astype(np.float64) + tm[:3, 3])
        boxes = 0 if s == 0 else 2
        infos.append({"lidar_path": lidar_path, "cam_front_path": "", "cam_intrinsic": np.eye(3), "token": f"tok{s}",
                      "sweeps": sweeps, "ref_from_car": np.eye(4), "car_from_global": np.eye(4), "timestamp": stamp,
                      "gt_boxes": np.tile([[3.0, 3.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0]], (boxes, 1)),
                      "gt_boxes_velocity": np.zeros((boxes, 3)), "gt_names": np.array(["car", "pedestrian"][:boxes]),
                      "gt_boxes_token": np.array(["a", "b"][:boxes]), "num_lidar_pts": np.full(boxes, 5),
                      "num_radar_pts": np.zeros(boxes, dtype=np.int64)})
        xyz = np.concatenate(clouds).astype(np.float32)
        keep = (np.abs(xyz[:, 0]) <= 51.2) & (np.abs(xyz[:, 1]) <= 51.2)
        expected[Path(lidar_path).stem] = {"xyz": xyz[keep], "feature": intensity,
                                           "lags": {0.0} | {round(0.05 * j, 6) for j in range(1, NUS_SWEEPS + 1)}}
    with open(version / "nuscenes_infos_10sweeps_train.pkl", "wb") as f:
        pickle.dump(infos, f)
    return expected


def teacher_cells_and_features(teacher, xyz: np.ndarray, feature: float, cell):
    """(M, 3) teacher cells of a cloud and the teacher's (M, C) features, computed here."""
    from pcdet_seal.seal.targets import teacher_cells

    cells = teacher_cells(torch.from_numpy(xyz), torch.zeros(len(xyz), dtype=torch.long), cell)
    feats = teacher(cells.coords, torch.full((cells.coords.shape[0], 1), feature))
    return cells.coords[:, 1:], feats


def config(name: str, data_path: Path, **data_keys):
    """The real config ``cfgs/<name>`` on the tree at ``data_path`` (plus ``data_keys`` in
    DATA_CONFIG), with the plugin registered."""
    from pcdet_seal import registry

    registry.register()
    cfg = load(CFGS / name)
    cfg.DATA_CONFIG.DATA_PATH = str(data_path)
    cfg.DATA_CONFIG.update(data_keys)
    return cfg


#: name → (config in cfgs/, tree builder, DATA_CONFIG keys of the tree, seal_features.py --set
#: arguments up to the data path)
DATASETS = {
    "waymo": ("seal_pretrain.yaml", make_waymo, {}, ["--set", "DATA_CONFIG.DATA_PATH"]),
    "nuscenes": ("seal_pretrain_nuscenes.yaml", make_nuscenes, {"VERSION": "v1.0-mini"},
                 ["--set", "DATA_CONFIG.VERSION", "v1.0-mini", "DATA_CONFIG.DATA_PATH"]),
}

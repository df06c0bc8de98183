"""Waymo and nuScenes pre-training data paths on synthetic files in OpenPCDet's on-disk layouts:
scripts/seal_features.py --cfg over a split (cloud as the loader builds it, OpenPCDet's frame
ids), the box-free pre-training datasets, and the training-side cache join by frame id, including
the cache-miss policy (MODEL.SEAL_TARGET.ON_MISSING)."""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.pcdet, pytest.mark.spconv]
pytest.importorskip("pcdet", reason="needs an importable OpenPCDet (pcdet) checkout")
pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")

from helpers_models import CFGS, load, random_teacher_file  # noqa: E402
from pcdet_seal.tools.cli import seal_features  # noqa: E402

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


def _teacher_cells_and_features(teacher, xyz: np.ndarray, feature: float, cell):
    """(M, 3) teacher cells of a cloud and the teacher's (M, C) features, computed here."""
    from pcdet_seal.seal.targets import teacher_cells

    cells = teacher_cells(torch.from_numpy(xyz), torch.zeros(len(xyz), dtype=torch.long), cell)
    feats = teacher(cells.coords, torch.full((cells.coords.shape[0], 1), feature))
    return cells.coords[:, 1:], feats


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """A randomly initialised, reduced-width Res16UNet with 64 outputs, converted like a Seal file."""
    from pcdet_seal.seal.minkunet import Res16UNetArch

    arch = Res16UNetArch(out_channels=64, init_dim=8, planes=(8, 16, 16, 16, 16, 16, 8, 8),
                         layers=(1, 1, 1, 1, 1, 1, 1, 1))
    return random_teacher_file(tmp_path_factory.mktemp("teacher") / "teacher.pth", arch, seed=3)


@pytest.fixture(scope="module")
def teacher(teacher_file):
    from pcdet_seal.seal.checkpoint import load_teacher

    return load_teacher(teacher_file)[0]


def _config(name: str, data_path: Path, **data_keys):
    from pcdet_seal import registry

    registry.register()
    cfg = load(CFGS / name)
    cfg.DATA_CONFIG.DATA_PATH = str(data_path)
    cfg.DATA_CONFIG.update(data_keys)
    return cfg


DATASETS = {
    "waymo": ("seal_pretrain.yaml", make_waymo, {}, ["--set", "DATA_CONFIG.DATA_PATH"]),
    "nuscenes": ("seal_pretrain_nuscenes.yaml", make_nuscenes, {"VERSION": "v1.0-mini"},
                 ["--set", "DATA_CONFIG.VERSION", "v1.0-mini", "DATA_CONFIG.DATA_PATH"]),
}


_WRITTEN: dict = {}


def _write(name: str, tmp_path_factory, teacher_file):
    """Data on disk, and the cache written by scripts/seal_features.py --cfg in two shards plus a
    resume run: (name, cfg, expected clouds, cache dir, [(exit code, stdout)] per run)."""
    if name not in _WRITTEN:
        cfg_name, make, data_keys, set_prefix = DATASETS[name]
        root = tmp_path_factory.mktemp(name)
        expected = make(root / "data")
        out = root / "cache"
        script = seal_features
        argv = ["--cfg", str(CFGS / cfg_name), *set_prefix, str(root / "data"), "--ckpt", str(teacher_file),
                "--out", str(out), "--no-progress"]
        runs = []
        for shard in ("1/2", "0/2", "0/1"):
            text = io.StringIO()
            with contextlib.redirect_stdout(text):
                code = script.main(argv + ["--shard", shard])
            runs.append((code, text.getvalue()))
        _WRITTEN[name] = (name, _config(cfg_name, root / "data", **data_keys), expected, out, runs)
    return _WRITTEN[name]


@pytest.fixture(scope="module", params=sorted(DATASETS))
def written(request, tmp_path_factory, teacher_file):
    return _write(request.param, tmp_path_factory, teacher_file)


@pytest.fixture(scope="module")
def nuscenes(tmp_path_factory, teacher_file):
    return _write("nuscenes", tmp_path_factory, teacher_file)


def test_feature_generation_covers_the_split_under_openpcdet_frame_ids(written, teacher, capsys):
    """Every frame of the split is cached once, named by OpenPCDet's frame id, with the teacher's
    features of the cloud as OpenPCDet builds it (Waymo: tanh intensity, x/y range crop; nuScenes:
    10 sweeps shifted by their transforms, ego points dropped from the sweeps only)."""
    from pcdet_seal.seal.cache import FeatureCache

    name, cfg, expected, out, runs = written
    assert [code for code, _ in runs] == [0, 0, 0]
    assert sorted(p.name[:-4] for p in out.glob("*.npz")) == sorted(expected)
    cache = FeatureCache(out, feature_dim=64, quant_mode="cartesian",
                         cell_size=cfg.DATA_CONFIG.DATA_PROCESSOR[-1].VOXEL_SIZE)
    cell = cache.meta.cell_size
    for frame_id, want in expected.items():
        coords, feats = cache.load(frame_id)
        cells, teacher_feats = _teacher_cells_and_features(teacher, want["xyz"], want["feature"], cell)
        assert {tuple(c) for c in coords.tolist()} == {tuple(c) for c in cells.tolist()}, frame_id
        got, found = cache.lookup(frame_id, cells)
        assert found.all()
        assert (got - teacher_feats).abs().max() <= FP16_TOL, frame_id


def test_script_shards_and_resumes(written):
    name, _, expected, out, runs = written
    n = len(expected)
    half = len(range(1, n, 2))
    assert f"shard 1/2: {half} frames written, 0 already cached, of {half}" in runs[0][1]
    assert f"shard 0/2: {n - half} frames written, 0 already cached, of {n - half}" in runs[1][1]
    assert f"shard 0/1: 0 frames written, {n} already cached, of {n}" in runs[2][1]
    assert not list(out.glob(".*.tmp"))


def test_training_loader_finds_every_frame_in_the_cache(written, teacher):
    """The pre-training dataset built by OpenPCDet's build_dataloader (as tools/train.py does),
    batched, joined with the cache by SealTargetGenerator (cache mode): every frame id is found and
    every teacher cell of every batch cloud has its teacher feature."""
    from pcdet.datasets import build_dataloader

    from pcdet_seal.geometry import join_by_coords
    from pcdet_seal.models.seal_target import SealTargetGenerator
    from pcdet_seal.seal.targets import teacher_input

    name, cfg, expected, out, _ = written
    ds, loader, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=2, dist=False, workers=0,
                                     logger=LOGGER, training=True)
    assert type(ds).__name__ == cfg.DATA_CONFIG.DATASET and len(ds) == len(expected)
    target_cfg = copy.deepcopy(cfg.MODEL.SEAL_TARGET)
    target_cfg.update({"MODE": "cache", "CACHE_DIR": str(out)})
    gen = SealTargetGenerator(target_cfg, voxel_size=ds.voxel_size, point_cloud_range=ds.point_cloud_range)
    seen = []
    for batch in loader:
        assert "gt_boxes" not in batch
        points = torch.from_numpy(batch["points"])
        cells, feats_in = teacher_input(points[:, 1:], points[:, 0].long(), gen.cell_size)
        feats, valid = gen.cell_features(cells, feats_in, batch["frame_id"].tolist())
        assert valid.all()
        for b, frame_id in enumerate(batch["frame_id"].tolist()):
            seen.append(frame_id)
            rows = cells.coords[:, 0] == b
            want = expected[frame_id]
            ref_cells, ref_feats = _teacher_cells_and_features(teacher, want["xyz"], want["feature"], gen.cell_size)
            index, found = join_by_coords(cells.coords[rows, 1:], ref_cells)
            assert found.all(), frame_id  # the batch cloud is the cloud the cache was written from
            assert (feats[rows] - ref_feats[index]).abs().max() <= FP16_TOL, frame_id
            if name == "nuscenes":
                lags = {round(float(v), 6) for v in points[points[:, 0] == b, 5].unique()}
                assert lags == want["lags"]  # Δt channel of the 10-sweep cloud
    assert sorted(seen) == sorted(expected)


def _missing_frame_setup(written, tmp_path, **target_keys):
    from pcdet.datasets import build_dataloader

    from pcdet_seal.models.seal_target import SealTargetGenerator
    from pcdet_seal.seal.targets import teacher_input

    name, cfg, expected, out, _ = written
    cache = tmp_path / "cache"
    shutil.copytree(out, cache)
    ds, _, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=2, dist=False, workers=0,
                                logger=LOGGER, training=True)
    batch = ds.collate_batch([ds[0], ds[1]])
    gone = str(batch["frame_id"][1])
    (cache / f"{gone}.npz").unlink()
    target_cfg = copy.deepcopy(cfg.MODEL.SEAL_TARGET)
    target_cfg.update({"MODE": "cache", "CACHE_DIR": str(cache), **target_keys})
    gen = SealTargetGenerator(target_cfg, voxel_size=ds.voxel_size, point_cloud_range=ds.point_cloud_range)
    points = torch.from_numpy(batch["points"])
    cells, feats_in = teacher_input(points[:, 1:], points[:, 0].long(), gen.cell_size)
    return gen, cells, feats_in, batch["frame_id"], gone, cache


def test_a_frame_missing_from_the_cache_is_an_error_naming_it_and_the_cache_dir(written, tmp_path):
    from pcdet_seal.seal.cache import MissingFrameError

    gen, cells, feats_in, frame_ids, gone, cache = _missing_frame_setup(written, tmp_path)
    assert gen.on_missing == "error" and gen.teacher is None
    with pytest.raises(MissingFrameError) as err:
        gen.cell_features(cells, feats_in, frame_ids)
    message = str(err.value)
    assert repr(gone) in message and str(cache) in message and "ON_MISSING" in message


def test_a_missing_frame_gets_the_online_teacher_when_configured(written, tmp_path, teacher_file, teacher, caplog):
    gen, cells, feats_in, frame_ids, gone, cache = _missing_frame_setup(
        written, tmp_path, ON_MISSING="online", TEACHER_CKPT=str(teacher_file))
    with caplog.at_level(logging.WARNING, logger="pcdet_seal.models.seal_target"):
        feats, valid = gen.cell_features(cells, feats_in, frame_ids)
    assert valid.all()
    assert any(gone in r.getMessage() and str(cache) in r.getMessage() for r in caplog.records)
    rows = cells.coords[:, 0] == 1
    online = teacher(torch.cat([torch.zeros_like(cells.coords[rows, :1]), cells.coords[rows, 1:]], 1), feats_in[rows])
    torch.testing.assert_close(feats[rows], online)
    assert feats[~rows].abs().sum() > 0 and valid[~rows].all()  # the cached frame still comes from the cache


def test_fallback_teacher_must_be_the_one_that_wrote_the_cache(written, tmp_path, teacher_file):
    """ON_MISSING online with another teacher's weights would mix two teachers' targets silently."""
    from pcdet_seal.seal.cache import SealCacheError
    from pcdet_seal.seal.checkpoint import load_teacher

    arch = load_teacher(teacher_file)[0].arch
    random_teacher_file(tmp_path / "other.pth", arch, seed=4)
    with pytest.raises(SealCacheError, match="teacher_sha256"):
        _missing_frame_setup(written, tmp_path, ON_MISSING="online", TEACHER_CKPT=str(tmp_path / "other.pth"))


def test_cylindrical_cells_default_to_slidr_sizes_not_the_voxel_size(written):
    from pcdet_seal.models.seal_target import SealTargetGenerator
    from pcdet_seal.seal.targets import SLIDR_CYLINDRICAL_CELL

    _, cfg, _, _, _ = written
    target_cfg = copy.deepcopy(cfg.MODEL.SEAL_TARGET)
    target_cfg.update({"MODE": "online", "RANDOM_TEACHER": True, "TEACHER_CKPT": "", "QUANT": "cylindrical",
                       "CELL_SIZE": None, "TEACHER_ARCH": {"planes": [8] * 8, "layers": [1] * 8, "init_dim": 8}})
    gen = SealTargetGenerator(target_cfg, voxel_size=[0.32, 0.32, 0.1875],
                              point_cloud_range=cfg.DATA_CONFIG.POINT_CLOUD_RANGE)
    assert gen.cell_size == list(SLIDR_CYLINDRICAL_CELL)


def test_on_missing_and_a_teacherless_fallback_are_rejected(written, tmp_path):
    from pcdet_seal.models.seal_target import SealTargetGenerator

    _, cfg, _, out, _ = written
    target_cfg = copy.deepcopy(cfg.MODEL.SEAL_TARGET)
    target_cfg.update({"MODE": "cache", "CACHE_DIR": str(out), "ON_MISSING": "zeros"})
    with pytest.raises(ValueError, match="ON_MISSING"):
        SealTargetGenerator(target_cfg, voxel_size=cfg.DATA_CONFIG.DATA_PROCESSOR[-1].VOXEL_SIZE,
                            point_cloud_range=cfg.DATA_CONFIG.POINT_CLOUD_RANGE)
    target_cfg.ON_MISSING = "online"
    with pytest.raises(ValueError, match="TEACHER_CKPT"):
        SealTargetGenerator(target_cfg, voxel_size=cfg.DATA_CONFIG.DATA_PROCESSOR[-1].VOXEL_SIZE,
                            point_cloud_range=cfg.DATA_CONFIG.POINT_CLOUD_RANGE)


def test_pretrain_datasets_need_no_boxes_and_keep_frame_ids(written):
    """Every frame (one without any box included) comes back as itself in training mode: no
    'resample when no box is left', no class-balanced resampling, no gt keys; evaluation is a note."""
    from pcdet.datasets import build_dataloader

    name, cfg, expected, _, _ = written
    ds, _, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=1, dist=False, workers=0,
                                logger=LOGGER, training=True)
    ids = [ds.frame_id_of(i) for i in range(len(ds))]
    assert sorted(ids) == sorted(expected)
    for i in range(len(ds)):
        item = ds[i]
        assert item["frame_id"] == ids[i]
        assert not {"gt_boxes", "gt_names", "num_points_in_gt"} & set(item)
    assert ds.evaluation([], [])[1] == {}
    data_cfg = copy.deepcopy(cfg.DATA_CONFIG)
    data_cfg.DATA_AUGMENTOR.AUG_CONFIG_LIST = [{"NAME": "random_world_flip", "ALONG_AXIS_LIST": ["x"]}]
    with pytest.raises(ValueError, match="AUG_CONFIG_LIST.*random_world_flip"):
        type(ds)(dataset_cfg=data_cfg, class_names=[], training=True, logger=LOGGER)


def test_nuscenes_balanced_resampling_without_classes(nuscenes):
    """Stock NuScenesDataset divides by zero with BALANCED_RESAMPLING and no classes; the
    pre-training class keeps every sample once."""
    from pcdet.datasets import NuScenesDataset

    name, cfg, expected, _, _ = nuscenes
    data_cfg = copy.deepcopy(cfg.DATA_CONFIG)
    data_cfg.BALANCED_RESAMPLING = True
    from pcdet_seal.datasets.pretrain import NuScenesPretrainDataset

    ds = NuScenesPretrainDataset(dataset_cfg=data_cfg, class_names=[], training=True, logger=LOGGER)
    assert sorted(ds.frame_id_of(i) for i in range(len(ds))) == sorted(expected)
    data_cfg.DATASET = "NuScenesDataset"
    with pytest.raises(ZeroDivisionError):
        NuScenesDataset(dataset_cfg=data_cfg, class_names=[], training=True, logger=LOGGER)


def test_script_errors_name_the_problem(written, teacher_file, tmp_path, capsys):
    name, cfg, _, _, _ = written
    cfg_name, _, _, set_prefix = DATASETS[name]
    script = seal_features
    base = ["--cfg", str(CFGS / cfg_name), "--ckpt", str(teacher_file), "--out", str(tmp_path / "c"), "--no-progress"]
    assert script.main(base + [*set_prefix, str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and str(tmp_path / "nothing") in err
    assert script.main(base + ["--tanh-feature"]) == 1
    assert "--tanh-feature" in capsys.readouterr().err
    assert script.main(base + ["--set", "DATA_CONFIG.NO_SUCH_KEY", "1"]) == 1
    assert "NO_SUCH_KEY" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["seal_pretrain.yaml", "seal_pretrain_nuscenes.yaml"])
def test_paths_are_set_with_stock_set_overrides(name):
    """tools/train.py --set (pcdet.config.cfg_from_list) can fill the path keys and switch modes."""
    from pcdet.config import cfg_from_list

    cfg = load(CFGS / name)
    assert cfg.DATA_CONFIG.DATASET.endswith("PretrainDataset") and cfg.CLASS_NAMES == []
    cfg_from_list(["MODEL.SEAL_TARGET.MODE", "cache", "MODEL.SEAL_TARGET.CACHE_DIR", "/data/seal_cache",
                   "MODEL.SEAL_TARGET.TEACHER_CKPT", "/ckpt/seal_spconv.pth",
                   "MODEL.SEAL_TARGET.ON_MISSING", "online"], cfg)
    target = cfg.MODEL.SEAL_TARGET
    assert (target.MODE, target.CACHE_DIR, target.TEACHER_CKPT, target.ON_MISSING) == (
        "cache", "/data/seal_cache", "/ckpt/seal_spconv.pth", "online")


def test_a_teacher_of_another_width_than_the_config_is_refused_before_any_frame(written, teacher_file, tmp_path,
                                                                              capsys):
    name, cfg, _, _, _ = written
    cfg_name, _, _, set_prefix = DATASETS[name]
    out = tmp_path / "c"
    argv = ["--cfg", str(CFGS / cfg_name), *set_prefix, str(cfg.DATA_CONFIG.DATA_PATH),
            "MODEL.SEAL_TARGET.NUM_FEATURES", "32", "--ckpt", str(teacher_file), "--out", str(out), "--no-progress"]
    assert seal_features.main(argv) == 1
    err = capsys.readouterr().err
    assert "the teacher outputs 64 channels per cell but MODEL.SEAL_TARGET.NUM_FEATURES of" in err and "is 32" in err
    assert not out.exists() or not any(out.iterdir())

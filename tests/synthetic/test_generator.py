"""The procedural LiDAR scene generator: determinism, sanity of points, labels and gt boxes."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from pcdet_seal.ops import boxes_bev_overlap, points_in_boxes_mask
from pcdet_seal.synthetic import (
    CLASS_NAMES,
    CLASS_SUPERCLASSES,
    SUPERCLASSES,
    SensorConfig,
    SyntheticConfig,
    generate_frame,
)

FRAMES = [(0, 0), (0, 1), (7, 3), (11, 42)]


@pytest.fixture(scope="module")
def frames():
    return [generate_frame(seed, index) for seed, index in FRAMES]


def test_same_seed_and_index_give_the_same_frame(frames):
    again = generate_frame(*FRAMES[1])
    for key, value in frames[1].items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(again[key], value, err_msg=key)
        else:
            assert again[key] == value
    assert frames[0]["points"].shape != frames[1]["points"].shape or \
        not np.array_equal(frames[0]["points"], frames[1]["points"])


def test_keys_dtypes_and_ranges(frames):
    sensor = SensorConfig()
    for (seed, index), frame in zip(FRAMES, frames):
        assert frame["frame_id"] == f"synthetic_{seed}_{index:06d}"
        points, labels = frame["points"], frame["point_labels"]
        num_points = len(points)
        assert points.dtype == np.float32 and points.shape == (num_points, 5)
        assert labels.dtype == np.int32 and labels.shape == (num_points,)
        assert frame["point_instance"].dtype == np.int32 and frame["point_instance"].shape == (num_points,)
        assert np.isfinite(points).all()
        # Most rays return something; the sky and dropout take the rest.
        assert 0.5 * sensor.num_beams * sensor.azimuth_steps < num_points <= sensor.num_beams * sensor.azimuth_steps
        ranges = np.linalg.norm(points[:, 0:3] - [0, 0, sensor.height], axis=1)
        assert ranges.min() >= sensor.min_range - 0.2 and ranges.max() <= sensor.max_range + 0.2
        assert ((points[:, 3:5] >= 0) & (points[:, 3:5] < 1)).all()
        assert labels.min() >= 0 and labels.max() < len(SUPERCLASSES)

        boxes, names = frame["gt_boxes"], frame["gt_names"]
        assert boxes.dtype == np.float32 and boxes.shape == (len(names), 7) and np.isfinite(boxes).all()
        assert set(names) <= set(CLASS_NAMES) and len(names) > 0
        assert (boxes[:, 3:6] > 0).all() and (np.abs(boxes[:, 6]) <= np.pi).all()
        assert frame["num_points_in_gt"].dtype == np.int32


def test_labels_cover_all_superclasses(frames):
    labels = np.concatenate([frame["point_labels"] for frame in frames])
    assert set(np.unique(labels)) == set(range(len(SUPERCLASSES)))
    classes = set(np.concatenate([frame["gt_names"] for frame in frames]))
    assert classes == set(CLASS_NAMES)


def test_every_gt_box_holds_points_of_its_class(frames):
    min_points = SyntheticConfig().min_points_in_box
    for frame in frames:
        xyz = torch.from_numpy(frame["points"][:, 0:3])
        membership = points_in_boxes_mask(xyz, torch.from_numpy(frame["gt_boxes"]), margin=0.0).numpy().astype(bool)
        for k, name in enumerate(frame["gt_names"]):
            of_class = np.isin(frame["point_labels"], CLASS_SUPERCLASSES[name])
            assert (membership[k] & of_class).sum() >= min_points, (frame["frame_id"], k, name)
            assert membership[k].sum() == frame["num_points_in_gt"][k]


def test_gt_boxes_do_not_overlap(frames):
    # OpenPCDet's points_in_boxes_cpu and gt sampling assume non-overlapping gt boxes.
    for frame in frames:
        boxes = torch.from_numpy(frame["gt_boxes"]).double()
        overlap = boxes_bev_overlap(boxes, boxes)
        assert torch.equal(overlap - torch.diag(overlap.diagonal()), torch.zeros_like(overlap)), frame["frame_id"]


def test_point_instances_point_at_boxes_of_their_class(frames):
    for frame in frames:
        instance = frame["point_instance"]
        assert instance.min() >= -1 and instance.max() < len(frame["gt_boxes"])
        assert set(np.unique(instance[instance >= 0])) == set(range(len(frame["gt_boxes"])))
        for k, name in enumerate(frame["gt_names"]):
            assert np.isin(frame["point_labels"][instance == k], CLASS_SUPERCLASSES[name]).all()


def test_config_from_dict_and_a_smaller_sensor():
    config = SyntheticConfig.from_dict({"SENSOR": {"NUM_BEAMS": 16, "AZIMUTH_STEPS": 512, "DROPOUT": 0.0},
                                        "scene": {"num_vehicles": [1, 2]}, "MIN_POINTS_IN_BOX": 3})
    assert config.sensor.num_beams == 16 and config.scene.num_vehicles == (1, 2) and config.min_points_in_box == 3
    frame = generate_frame(3, 5, config)
    assert 0.5 * 16 * 512 < len(frame["points"]) <= 16 * 512
    assert (frame["gt_names"] == "Vehicle").sum() <= 2
    with pytest.raises(KeyError, match="NUM_LASERS"):
        SyntheticConfig.from_dict({"sensor": {"NUM_LASERS": 3}})
    with pytest.raises(ValueError, match="non-negative"):
        generate_frame(-1, 0)


def test_generator_imports_neither_torch_nor_pcdet():
    code = ("import sys, pcdet_seal.synthetic as s; s.generate_frame(0, 0); "
            "assert not {'torch', 'pcdet'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_scene_without_objects():
    counts = ["num_vehicles", "num_pedestrians", "num_cyclists", "num_poles", "num_trees", "num_bushes", "num_cones"]
    frame = generate_frame(0, 0, SyntheticConfig.from_dict({"scene": {key: [0, 0] for key in counts}}))
    assert frame["gt_boxes"].shape == (0, 7) and frame["gt_names"].shape == (0,)
    assert (frame["point_instance"] == -1).all() and len(frame["points"]) > 0
    assert not np.isin(frame["point_labels"], [2, 3, 5]).any()  # no vehicle, two_wheeler, human points


def test_vehicles_are_taller_at_the_rear_so_their_heading_is_observable():
    """Front and back of a vehicle differ (cabin / box / cargo towards the rear): without it the
    heading target is θ or θ + π with equal odds and a regressor of (cos θ, sin θ) learns neither."""
    from pcdet_seal.synthetic import SyntheticConfig, generate_frame

    config = SyntheticConfig.from_dict({"SENSOR": {"NUM_BEAMS": 64}})
    rear_taller = seen = 0
    for index in range(6):
        frame = generate_frame(3, index, config)
        for k in np.flatnonzero(frame["gt_names"] == "Vehicle"):
            x, y, z, length, _, _, yaw = frame["gt_boxes"][k]
            xyz = frame["points"][frame["point_instance"] == k, :3]
            local = (xyz[:, 0] - x) * np.cos(yaw) + (xyz[:, 1] - y) * np.sin(yaw)
            front, rear = xyz[local > 0.3 * length, 2], xyz[local < -0.3 * length, 2]
            if len(front) >= 5 and len(rear) >= 5:
                seen += 1
                rear_taller += rear.max() > front.max() + 0.1
    assert seen >= 10
    assert rear_taller / seen > 0.8  # symmetric vehicles: 11 of 29 (the rest is occlusion of the tall part)

"""Synthetic LiDAR frames: a spinning multi-beam sensor ray-cast against a procedural scene.

``generate_frame(seed, index, config)`` is deterministic per (seed, index) and returns points
shaped like OpenPCDet's Waymo points (x, y, z, intensity, elongation), per-point superclass
labels (``labels.SUPERCLASSES``) and gt boxes in OpenPCDet's 7-DoF convention.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import numpy as np

from .labels import OUTLIER
from .raycast import angular_pairs, ray_boxes, ray_cylinders, ray_ellipsoids, ray_plane
from .scene import Scene, SceneConfig, build_scene

_INTERSECT = {
    "box": lambda o, d, g: ray_boxes(o, d, g[:, 0:3], g[:, 3:6], g[:, 6]),
    "cylinder": lambda o, d, g: ray_cylinders(o, d, g[:, 0:2], g[:, 2:4], g[:, 4]),
    "ellipsoid": lambda o, d, g: ray_ellipsoids(o, d, g[:, 0:3], g[:, 3:6]),
}


@dataclass(frozen=True)
class SensorConfig:
    """A spinning LiDAR at (0, 0, height) above the ground under it (the frame's origin)."""

    num_beams: int = 32
    azimuth_steps: int = 1024
    fov_up_deg: float = 2.4              # Waymo top LiDAR: +2.4° … -17.6°
    fov_down_deg: float = -17.6
    height: float = 2.0                  # m
    min_range: float = 1.0               # m
    max_range: float = 50.0              # m
    dropout: float = 0.03                # chance a return is lost
    range_noise: float = 0.02            # std of the range error (m)
    outlier_fraction: float = 0.002      # chance a ray yields a spurious return


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that shapes a synthetic frame."""

    sensor: SensorConfig = field(default_factory=SensorConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    min_points_in_box: int = 5           # objects with fewer points of their own get no gt box

    @classmethod
    def from_dict(cls, values: Optional[Mapping[str, Any]]) -> "SyntheticConfig":
        """Build from a (nested) mapping, keys case-insensitive, e.g. ``{"SENSOR": {"NUM_BEAMS": 16}}``.

        Unknown keys raise ``KeyError`` naming the key; lists become tuples.
        """
        return _from_dict(cls, values or {})


def _from_dict(kind: type, values: Mapping[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(kind)}
    kwargs = {}
    for key, value in values.items():
        name = str(key).lower()
        if name not in fields:
            raise KeyError(f"{kind.__name__}: unknown key {key!r}; known: {sorted(fields)}")
        default = fields[name].default_factory() if fields[name].default_factory is not dataclasses.MISSING \
            else fields[name].default
        if dataclasses.is_dataclass(default):
            value = _from_dict(type(default), value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return kind(**kwargs)


def sensor_rays(sensor: SensorConfig, azimuth0: float) -> tuple[np.ndarray, np.ndarray]:
    """Beam elevations (B,) ascending, radians, and unit ray directions (B * A, 3), beam-major."""
    elevation = np.radians(np.linspace(sensor.fov_down_deg, sensor.fov_up_deg, sensor.num_beams))
    azimuth = azimuth0 + np.arange(sensor.azimuth_steps) * (2 * np.pi / sensor.azimuth_steps)
    cos_el = np.cos(elevation)[:, None]
    dirs = np.stack([cos_el * np.cos(azimuth)[None, :], cos_el * np.sin(azimuth)[None, :],
                     np.broadcast_to(np.sin(elevation)[:, None], cos_el.shape[:1] + azimuth.shape)], axis=-1)
    return elevation, dirs.reshape(-1, 3)


def _cast(scene: Scene, sensor: SensorConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Nearest surface along every ray: per ray t (inf = none), normal, label, reflectivity,
    instance and porosity of what was hit, and the ray directions."""
    origin = np.array([0.0, 0.0, sensor.height])
    azimuth0 = rng.uniform(0, 2 * np.pi / sensor.azimuth_steps)
    elevation, dirs = sensor_rays(sensor, azimuth0)
    num_rays = dirs.shape[0]

    t, ground_normal = ray_plane(origin, dirs, scene.slope)
    hit_xy = origin[None, 0:2] + np.where(np.isfinite(t), t, 0)[:, None] * dirs[:, 0:2]
    label, reflectivity = scene.ground_material(hit_xy)
    normal = np.broadcast_to(ground_normal, dirs.shape).copy()
    instance = np.full(num_rays, -1, dtype=np.int64)
    porosity = np.zeros(num_rays)

    for kind, prims in scene.primitives.items():
        if len(prims.label) == 0:
            continue
        centre, radius = prims.bounding_spheres(kind)
        ray, prim = angular_pairs(origin, elevation, azimuth0, sensor.azimuth_steps, centre, radius)
        t_pair, normal_pair = _INTERSECT[kind](origin, dirs[ray], prims.geometry[prim])
        passes = rng.random(len(prim)) < prims.porosity[prim]
        t_pair = np.where(passes, np.inf, t_pair)
        # Nearest hit per ray among this kind's pairs: sort by (ray, t), take each ray's first.
        order = np.lexsort((t_pair, ray))
        ray, prim, t_pair, normal_pair = ray[order], prim[order], t_pair[order], normal_pair[order]
        first = np.ones(len(ray), dtype=bool)
        first[1:] = ray[1:] != ray[:-1]
        ray, prim, t_pair, normal_pair = ray[first], prim[first], t_pair[first], normal_pair[first]
        closer = t_pair < t[ray]
        ray, prim = ray[closer], prim[closer]
        t[ray] = t_pair[closer]
        normal[ray] = normal_pair[closer]
        label[ray] = prims.label[prim]
        reflectivity[ray] = prims.reflectivity[prim]
        instance[ray] = prims.instance[prim]
        porosity[ray] = prims.porosity[prim]
    return {"t": t, "normal": normal, "label": label, "reflectivity": reflectivity,
            "instance": instance, "porosity": porosity, "dirs": dirs, "origin": origin}


def _returns(hits: dict[str, np.ndarray], sensor: SensorConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Turn nearest hits into noisy returns: dropout, range noise, outliers, intensity, elongation."""
    t, dirs = hits["t"].copy(), hits["dirs"]
    num_rays = len(t)
    label = hits["label"].astype(np.int32)
    instance = hits["instance"].copy()
    reflectivity, porosity = hits["reflectivity"].copy(), hits["porosity"]
    cos_incidence = np.clip(np.abs((dirs * hits["normal"]).sum(1)), 0, 1)

    valid = (t >= sensor.min_range) & (t <= sensor.max_range) & (rng.random(num_rays) >= sensor.dropout)
    t = t + rng.normal(0, sensor.range_noise, num_rays)

    outlier = rng.random(num_rays) < sensor.outlier_fraction
    spurious_range = np.where(np.isfinite(t) & valid, t * rng.uniform(0.1, 0.9, num_rays),
                              rng.uniform(sensor.min_range, sensor.max_range, num_rays))
    t = np.where(outlier, np.maximum(spurious_range, sensor.min_range), t)
    valid |= outlier
    label[outlier] = OUTLIER
    instance[outlier] = -1
    reflectivity[outlier] = 0.02
    cos_incidence[outlier] = rng.uniform(0, 1, int(outlier.sum()))

    t, dirs = t[valid], dirs[valid]
    cos_incidence, reflectivity, porosity = cos_incidence[valid], reflectivity[valid], porosity[valid]
    falloff = 1.0 / (1.0 + (t / 80.0) ** 2)
    intensity = reflectivity * (0.25 + 0.75 * cos_incidence) * falloff + rng.normal(0, 0.01, len(t))
    elongation = 0.04 + 0.5 * (1 - cos_incidence) ** 2 + 0.15 * (porosity > 0) + rng.normal(0, 0.01, len(t))
    xyz = hits["origin"][None, :] + t[:, None] * dirs
    points = np.concatenate([xyz, np.clip(intensity, 0, 0.999)[:, None], np.clip(elongation, 0, 0.999)[:, None]],
                            axis=1)
    return {"points": points.astype(np.float32), "label": label[valid], "instance": instance[valid]}


def _in_boxes(xyz: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, 3) points, (N, 7) boxes (one per point) -> (N,) inside, closed boundaries."""
    shift = xyz - boxes[:, 0:3]
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    local_x, local_y = shift[:, 0] * c + shift[:, 1] * s, -shift[:, 0] * s + shift[:, 1] * c
    return (np.abs(local_x) <= boxes[:, 3] / 2) & (np.abs(local_y) <= boxes[:, 4] / 2) \
        & (np.abs(shift[:, 2]) <= boxes[:, 5] / 2)


def generate_frame(seed: int, index: int, config: Optional[SyntheticConfig] = None) -> dict[str, Any]:
    """One synthetic LiDAR frame, the same for the same (seed, index, config).

    Returns a dict with
        ``frame_id``: str, ``synthetic_<seed>_<index:06d>``;
        ``points``: (N, 5) float32 x, y, z, intensity, elongation (intensity, elongation in [0, 1));
            x, y, z in the sensor's ground frame: origin on the ground below the sensor, z up;
        ``point_labels``: (N,) int32 superclass index into ``labels.SUPERCLASSES``;
        ``point_instance``: (N,) int32 index into ``gt_boxes`` of the object a point lies on, -1 if none;
        ``gt_boxes``: (M, 7) float32 [x, y, z, dx, dy, dz, heading], z = box centre;
        ``gt_names``: (M,) str array of ``labels.CLASS_NAMES``;
        ``num_points_in_gt``: (M,) int32 points (of any label) inside each box.
    Objects with fewer than ``config.min_points_in_box`` of their own points inside their box
    get no gt box (their points keep their superclass label, with instance -1).
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    config = config or SyntheticConfig()
    rng = np.random.default_rng([seed, index])
    scene = build_scene(rng, config.scene)
    returns = _returns(_cast(scene, config.sensor, rng), config.sensor, rng)
    points, scene_object = returns["points"], returns["instance"]
    xyz = points[:, 0:3].astype(np.float64)

    on_object = scene_object >= 0
    own_inside = np.zeros(len(points), dtype=bool)
    own_inside[on_object] = _in_boxes(xyz[on_object], scene.boxes[scene_object[on_object]])
    keep = np.bincount(scene_object[own_inside], minlength=len(scene.boxes)) >= config.min_points_in_box
    new_index = np.where(keep, np.cumsum(keep) - 1, -1)
    instance = np.full(len(points), -1, dtype=np.int32)
    instance[on_object] = new_index[scene_object[on_object]]
    boxes = scene.boxes[keep]

    num_points_in_gt = np.array([_in_boxes(xyz, np.broadcast_to(box, (len(xyz), 7))).sum() for box in boxes],
                                dtype=np.int32)
    return {
        "frame_id": f"synthetic_{seed}_{index:06d}",
        "points": points,
        "point_labels": returns["label"].astype(np.int32),
        "point_instance": instance,
        "gt_boxes": boxes.astype(np.float32),
        "gt_names": np.array([n for n, k in zip(scene.names, keep) if k], dtype="<U10"),
        "num_points_in_gt": num_points_in_gt,
    }

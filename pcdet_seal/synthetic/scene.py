"""Procedural street scenes: a sloped ground with road, sidewalks and terrain, buildings, walls
and fences, vehicles, pedestrians, cyclists, poles and signs, trees and bushes, built from
oriented boxes, vertical cylinders and ellipsoids, with OpenPCDet 7-DoF boxes for the objects.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .labels import GROUND, HUMAN, NATURE, OBJECT, STRUCTURE, TWO_WHEELER, VEHICLE

Range = tuple[float, float]


@dataclass(frozen=True)
class SceneConfig:
    """What a scene holds. Counts are drawn uniformly from the inclusive (low, high) ranges."""

    extent: float = 50.0                 # objects are placed within this distance of the sensor (m)
    ego_clearance: float = 4.0           # no object centre closer to the sensor (m)
    max_slope: float = 0.03              # ground gradient per axis, drawn in ±max_slope
    road_width: Range = (7.0, 14.0)
    sidewalk_width: Range = (2.0, 4.0)
    cross_road_probability: float = 0.5
    building_probability: float = 0.8    # per building slot along each side of the road
    num_vehicles: tuple[int, int] = (4, 14)
    num_pedestrians: tuple[int, int] = (3, 12)
    num_cyclists: tuple[int, int] = (1, 5)
    num_poles: tuple[int, int] = (4, 12)
    num_trees: tuple[int, int] = (4, 14)
    num_bushes: tuple[int, int] = (2, 8)
    num_cones: tuple[int, int] = (0, 4)


@dataclass
class Primitives:
    """Struct of arrays of one primitive kind; ``geometry`` columns depend on the kind.

    box: centre (3), half extents (3), yaw; cylinder: centre xy (2), z bottom, z top, radius;
    ellipsoid: centre (3), radii (3). Per primitive also its superclass ``label``,
    ``reflectivity`` in [0, 1], ``instance`` (object index or -1) and ``porosity`` (chance a
    ray passes through, for foliage).
    """

    geometry: np.ndarray
    label: np.ndarray
    reflectivity: np.ndarray
    instance: np.ndarray
    porosity: np.ndarray

    def bounding_spheres(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(K, 3) centres and (K,) radii enclosing each primitive."""
        g = self.geometry
        if kind == "box":
            return g[:, 0:3], np.linalg.norm(g[:, 3:6], axis=1)
        if kind == "cylinder":
            centre = np.stack([g[:, 0], g[:, 1], (g[:, 2] + g[:, 3]) / 2], axis=1)
            return centre, np.hypot(g[:, 4], (g[:, 3] - g[:, 2]) / 2)
        return g[:, 0:3], g[:, 3:6].max(axis=1)


@dataclass
class Scene:
    """A built scene: ground description, primitives by kind, and the labelled objects."""

    slope: np.ndarray                    # (2,) ground z = slope . (x, y)
    road_yaw: float
    road_offset: float                   # lateral road coordinate of the sensor
    road_width: float
    sidewalk_width: float
    cross_road_u: Optional[float]        # along-road coordinate of the crossing road, if any
    cross_road_width: float
    primitives: dict[str, Primitives]
    boxes: np.ndarray                    # (M, 7) float64 object boxes, OpenPCDet convention
    names: list[str]                     # (M,) class names

    def road_coords(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) world xy -> along-road u (N,), across-road v (N,), road centre at v = 0."""
        c, s = np.cos(self.road_yaw), np.sin(self.road_yaw)
        return xy[:, 0] * c + xy[:, 1] * s, -xy[:, 0] * s + xy[:, 1] * c + self.road_offset

    def ground_material(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Superclass (N,) and reflectivity (N,) of the ground at (N, 2) points."""
        u, v = self.road_coords(xy)
        road = np.abs(v) < self.road_width / 2
        walk = np.abs(v) < self.road_width / 2 + self.sidewalk_width
        if self.cross_road_u is not None:
            road |= np.abs(u - self.cross_road_u) < self.cross_road_width / 2
            walk |= np.abs(u - self.cross_road_u) < self.cross_road_width / 2 + self.sidewalk_width
        marking = road & (((np.abs(v) < 0.08) & (np.mod(u, 6.0) < 3.0))
                          | (np.abs(np.abs(v) - (self.road_width / 2 - 0.3)) < 0.08))
        label = np.where(walk, GROUND, NATURE)
        reflectivity = np.where(road, np.where(marking, 0.65, 0.08), np.where(walk, 0.25, 0.15))
        return label, reflectivity


class _Builder:
    """Collects primitives and objects and keeps placements from overlapping."""

    def __init__(self, rng: np.random.Generator, config: SceneConfig, slope: np.ndarray):
        self.rng, self.config, self.slope = rng, config, slope
        self.items: dict[str, list[tuple]] = {"box": [], "cylinder": [], "ellipsoid": []}
        self.discs: list[tuple[float, float, float]] = []      # (x, y, radius) occupied
        self.blocks: list[tuple[np.ndarray, np.ndarray, float]] = []  # (centre xy, half xy, yaw)
        self.boxes: list[np.ndarray] = []
        self.names: list[str] = []

    def ground_z(self, x: float, y: float) -> float:
        return float(self.slope[0] * x + self.slope[1] * y)

    def is_free(self, x: float, y: float, radius: float, margin: float = 0.3) -> bool:
        """Whether a disc fits: inside the extent, clear of the sensor, discs and blocks."""
        distance = np.hypot(x, y)
        if distance < self.config.ego_clearance + radius or distance + radius > self.config.extent:
            return False
        for ox, oy, other in self.discs:
            if np.hypot(x - ox, y - oy) < radius + other + margin:
                return False
        for centre, half, yaw in self.blocks:
            c, s = np.cos(yaw), np.sin(yaw)
            dx, dy = x - centre[0], y - centre[1]
            local = np.abs([dx * c + dy * s, -dx * s + dy * c]) - half
            if np.linalg.norm(np.maximum(local, 0)) + min(local.max(), 0) < radius + margin:
                return False
        return True

    def box(self, centre, half, yaw, label, reflectivity, instance=-1, porosity=0.0) -> None:
        self.items["box"].append((*centre, *half, yaw, label, reflectivity, instance, porosity))

    def cylinder(self, x, y, z0, z1, radius, label, reflectivity, instance=-1, porosity=0.0) -> None:
        self.items["cylinder"].append((x, y, z0, z1, radius, label, reflectivity, instance, porosity))

    def ellipsoid(self, centre, radii, label, reflectivity, instance=-1, porosity=0.0) -> None:
        self.items["ellipsoid"].append((*centre, *radii, label, reflectivity, instance, porosity))

    def add_object(self, name: str, box: np.ndarray) -> int:
        self.boxes.append(box)
        self.names.append(name)
        return len(self.boxes) - 1

    def primitives(self) -> dict[str, Primitives]:
        width = {"box": 7, "cylinder": 5, "ellipsoid": 6}
        out = {}
        for kind, rows in self.items.items():
            table = np.asarray(rows, dtype=np.float64).reshape(-1, width[kind] + 4)
            g = width[kind]
            out[kind] = Primitives(table[:, :g], table[:, g].astype(np.int64), table[:, g + 1],
                                   table[:, g + 2].astype(np.int64), table[:, g + 3])
        return out


def _local_to_world(x: float, y: float, yaw: float, offset_x: float, offset_y: float) -> tuple[float, float]:
    c, s = np.cos(yaw), np.sin(yaw)
    return x + offset_x * c - offset_y * s, y + offset_x * s + offset_y * c


def _vehicle_size(rng: np.random.Generator) -> tuple[str, float, float, float, float]:
    """Kind, length, width, height and ground clearance of a random car, van or truck."""
    kind = str(rng.choice(["car", "van", "truck"], p=[0.7, 0.2, 0.1]))
    if kind == "car":
        return kind, rng.uniform(3.9, 5.0), rng.uniform(1.7, 2.0), rng.uniform(1.4, 1.7), 0.25
    if kind == "van":
        return kind, rng.uniform(4.6, 5.6), rng.uniform(1.9, 2.1), rng.uniform(1.8, 2.3), 0.3
    return kind, rng.uniform(7.5, 11.0), rng.uniform(2.4, 2.6), rng.uniform(2.9, 3.6), 0.5


#: Where each vehicle kind is tall along its length (local x from rear -0.5 to front +0.5, as a
#: fraction of the length) and how tall the low part is (fraction of the height above the
#: clearance). The tall part sits towards the rear, so front and back differ at the voxel scale
#: (0.3–0.4 m): a car's cabin behind a long hood, a van's box behind a short hood, a truck's cargo
#: box behind its cab. Without this, vehicles were symmetric front to back, their heading
#: target was θ or θ + π with equal odds, and CenterHead's L1 regression of (cos θ, sin θ)
#: averaged it away: detectors never learned vehicle headings, not even modulo π.
_VEHICLE_PROFILE = {"car": ((-0.44, 0.06), 0.5), "van": ((-0.5, 0.3), 0.55), "truck": ((-0.5, 0.22), 0.8)}


def _add_vehicle(b: _Builder, x: float, y: float, yaw: float,
                 size: tuple[str, float, float, float, float]) -> None:
    """A low body over the whole length, a tall part towards the rear (car cabin, van box, truck
    cargo), four wheels; the gt box is 10 cm larger than the body on each side, heading = front."""
    rng = b.rng
    kind, length, width, height, clearance = size
    z = b.ground_z(x, y)
    instance = b.add_object("Vehicle", np.array([x, y, z + height / 2 + 0.05, length + 0.2, width + 0.2,
                                                 height + 0.1, yaw]))
    paint = rng.uniform(0.15, 0.6)
    (rear, front), low = _VEHICLE_PROFILE[kind]
    body_height = low * (height - clearance)
    b.box((x, y, z + clearance + body_height / 2), (length / 2, width / 2, body_height / 2), yaw,
          VEHICLE, paint, instance)
    top_height = height - clearance - body_height
    tx, ty = _local_to_world(x, y, yaw, (rear + front) / 2 * length, 0.0)
    b.box((tx, ty, z + clearance + body_height + top_height / 2),
          ((front - rear) / 2 * length, (0.45 if kind == "car" else 0.5) * width, top_height / 2), yaw,
          VEHICLE, 0.06 if kind == "car" else paint, instance)
    wheel = 0.33 if kind != "truck" else 0.5
    for sx in (-1, 1):
        for sy in (-1, 1):
            wx, wy = _local_to_world(x, y, yaw, sx * (length / 2 - 1.3 * wheel), sy * (width / 2 - 0.12))
            b.box((wx, wy, z + wheel), (wheel, 0.12, wheel), yaw, VEHICLE, 0.05, instance)


def _add_pedestrian(b: _Builder, x: float, y: float, yaw: float) -> None:
    """A body cylinder and a head; gt box loosely around them."""
    rng = b.rng
    height, radius = rng.uniform(1.5, 1.95), rng.uniform(0.17, 0.24)
    z = b.ground_z(x, y)
    instance = b.add_object("Pedestrian", np.array([x, y, z + height / 2 + 0.05, rng.uniform(0.6, 1.0),
                                                    rng.uniform(0.6, 0.9), height + 0.1, yaw]))
    body_top = height - 0.24
    b.cylinder(x, y, z, z + body_top, radius, HUMAN, rng.uniform(0.1, 0.45), instance)
    b.ellipsoid((x, y, z + body_top + 0.12), (0.1, 0.1, 0.12), HUMAN, 0.3, instance)


def _add_cyclist(b: _Builder, x: float, y: float, yaw: float) -> None:
    """A bicycle (frame with wheels, handlebar: two_wheeler) and its rider (human)."""
    rng = b.rng
    height = rng.uniform(1.65, 1.9)
    z = b.ground_z(x, y)
    instance = b.add_object("Cyclist", np.array([x, y, z + height / 2 + 0.05, rng.uniform(1.8, 2.0),
                                                 rng.uniform(0.6, 0.8), height + 0.1, yaw]))
    b.box((x, y, z + 0.36), (0.85, 0.05, 0.36), yaw, TWO_WHEELER, rng.uniform(0.2, 0.5), instance)
    hx, hy = _local_to_world(x, y, yaw, 0.55, 0.0)
    b.box((hx, hy, z + 0.95), (0.05, 0.25, 0.04), yaw, TWO_WHEELER, 0.4, instance)
    rx, ry = _local_to_world(x, y, yaw, -0.15, 0.0)
    b.cylinder(rx, ry, z + 0.45, z + height - 0.24, 0.18, HUMAN, rng.uniform(0.1, 0.45), instance)
    b.ellipsoid((rx, ry, z + height - 0.12), (0.1, 0.1, 0.12), HUMAN, 0.3, instance)


def _place(b: _Builder, sample, radius: float, tries: int = 30) -> Optional[tuple[float, float, float]]:
    """Draw (x, y, yaw) from ``sample`` until the disc of ``radius`` is free; claim it."""
    for _ in range(tries):
        x, y, yaw = sample()
        if b.is_free(x, y, radius):
            b.discs.append((x, y, radius))
            return x, y, yaw
    return None


def build_scene(rng: np.random.Generator, config: SceneConfig) -> Scene:
    """Lay out one random scene around a sensor at the origin (ground height 0 there)."""
    c = config
    slope = rng.uniform(-c.max_slope, c.max_slope, size=2)
    b = _Builder(rng, c, slope)
    road_yaw = rng.uniform(-np.pi, np.pi)
    road_width, sidewalk = rng.uniform(*c.road_width), rng.uniform(*c.sidewalk_width)
    road_offset = rng.uniform(-road_width / 4, road_width / 4)
    cross_u = rng.choice([-1, 1]) * rng.uniform(10, 0.6 * c.extent) if rng.random() < c.cross_road_probability else None
    cross_width = rng.uniform(*c.road_width)
    cos_r, sin_r = np.cos(road_yaw), np.sin(road_yaw)

    def world(u: float, v: float) -> tuple[float, float]:
        v = v - road_offset
        return u * cos_r - v * sin_r, u * sin_r + v * cos_r

    def near_cross(u: float, reach: float) -> bool:
        return cross_u is not None and abs(u - cross_u) < cross_width / 2 + sidewalk + reach

    edge = road_width / 2 + sidewalk  # outer edge of the sidewalks
    # Buildings, walls and fences along both sides.
    for side in (-1, 1):
        u = -c.extent - rng.uniform(0, 10)
        while u < c.extent:
            length, depth = rng.uniform(8, 25), rng.uniform(8, 20)
            setback = rng.uniform(0.5, 5.0)
            u_mid, v_mid = u + length / 2, side * (edge + setback + depth / 2)
            if not near_cross(u_mid, length / 2) and np.hypot(u_mid, v_mid) < c.extent + 20:
                x, y = world(u_mid, v_mid)
                z = b.ground_z(x, y)
                if rng.random() < c.building_probability:
                    height = rng.uniform(4, 20)
                    b.box((x, y, z + height / 2 - 0.5), (length / 2, depth / 2, height / 2 + 0.5), road_yaw,
                          STRUCTURE, rng.uniform(0.15, 0.5))
                    b.blocks.append((np.array([x, y]), np.array([length / 2, depth / 2]), road_yaw))
                elif rng.random() < 0.6:
                    wall = rng.random() < 0.5
                    height, thick = (rng.uniform(1.5, 3.0), 0.3) if wall else (rng.uniform(1.0, 2.0), 0.06)
                    fx, fy = world(u_mid, side * (edge + 0.3))
                    fz = b.ground_z(fx, fy)
                    b.box((fx, fy, fz + height / 2 - 0.2), (length / 2, thick / 2, height / 2 + 0.2), road_yaw,
                          STRUCTURE if wall else OBJECT, rng.uniform(0.2, 0.4))
                    b.blocks.append((np.array([fx, fy]), np.array([length / 2, thick / 2]), road_yaw))
            u += length + rng.uniform(1, 10)

    def along(v_low: float, v_high: float, headings: Optional[tuple[float, float]] = None):
        """Sampler of (x, y, yaw) on a band of the main road (or the cross road, if any)."""
        def sample():
            u, v = rng.uniform(-c.extent, c.extent), rng.uniform(v_low, v_high) * rng.choice([-1, 1])
            yaw = road_yaw + (0.0 if v < 0 else np.pi) if headings is None else rng.uniform(*headings)
            if cross_u is not None and rng.random() < 0.25:  # on the cross road, rotated 90°
                u, v = cross_u + v, u
                yaw += np.pi / 2
            x, y = world(u, v)
            return x, y, yaw + rng.normal(0, 0.05)
        return sample

    for _ in range(rng.integers(c.num_vehicles[0], c.num_vehicles[1] + 1)):
        lane = rng.random() < 0.6
        size = _vehicle_size(rng)
        band = (0.25 * road_width, 0.3 * road_width) if lane else (road_width / 2 - size[2] / 2 - 0.2,) * 2
        spot = _place(b, along(*band), 0.5 * np.hypot(size[1], size[2]) + 0.1)
        if spot is not None:
            _add_vehicle(b, *spot, size)
    for _ in range(rng.integers(c.num_pedestrians[0], c.num_pedestrians[1] + 1)):
        band = (road_width / 2 + 0.5, edge - 0.4) if rng.random() < 0.75 else (0.0, road_width / 2)
        spot = _place(b, along(*band, headings=(-np.pi, np.pi)), 0.5)
        if spot is not None:
            _add_pedestrian(b, *spot)
    for _ in range(rng.integers(c.num_cyclists[0], c.num_cyclists[1] + 1)):
        spot = _place(b, along(road_width / 2 - 1.0, road_width / 2 - 0.6), 1.1)
        if spot is not None:
            _add_cyclist(b, *spot)
    for _ in range(rng.integers(c.num_poles[0], c.num_poles[1] + 1)):
        spot = _place(b, along(edge - 0.4, edge - 0.2), 0.3)
        if spot is None:
            continue
        x, y, _ = spot
        z, height, radius = b.ground_z(x, y), rng.uniform(3, 9), rng.uniform(0.06, 0.15)
        b.cylinder(x, y, z - 0.2, z + height, radius, OBJECT, rng.uniform(0.25, 0.45))
        if rng.random() < 0.5:  # a sign facing the traffic
            size = rng.uniform(0.3, 0.45)
            b.box((x, y, z + height - size), (0.03, size, size), road_yaw, OBJECT, 0.9)
    for _ in range(rng.integers(c.num_cones[0], c.num_cones[1] + 1)):
        spot = _place(b, along(road_width / 2 - 0.6, road_width / 2 - 0.3), 0.2)
        if spot is not None:
            z = b.ground_z(spot[0], spot[1])
            b.cylinder(spot[0], spot[1], z - 0.1, z + 0.7, 0.15, OBJECT, 0.8)
    for _ in range(rng.integers(c.num_trees[0], c.num_trees[1] + 1)):
        crown = rng.uniform(1.2, 3.5)
        spot = _place(b, along(edge - 0.8, edge + 6.0), crown)  # the crown claims its footprint
        if spot is None:
            continue
        x, y, _ = spot
        z, trunk, crown_z = b.ground_z(x, y), rng.uniform(1.8, 3.5), rng.uniform(1.2, 1.5) * crown
        b.cylinder(x, y, z - 0.2, z + trunk + crown_z, rng.uniform(0.1, 0.3), NATURE, rng.uniform(0.15, 0.3))
        b.ellipsoid((x, y, z + trunk + crown_z), (crown, crown, crown_z), NATURE,
                    rng.uniform(0.35, 0.55), porosity=rng.uniform(0.3, 0.6))
    for _ in range(rng.integers(c.num_bushes[0], c.num_bushes[1] + 1)):
        size = rng.uniform(0.5, 1.5)
        spot = _place(b, along(edge + 0.5, edge + 8.0), size)
        if spot is not None:
            z = b.ground_z(spot[0], spot[1])
            b.ellipsoid((spot[0], spot[1], z + 0.3 * size), (size, size, rng.uniform(0.4, 0.8) * size), NATURE,
                        rng.uniform(0.35, 0.55), porosity=rng.uniform(0.2, 0.4))

    boxes = np.asarray(b.boxes, dtype=np.float64).reshape(-1, 7)
    boxes[:, 6] = np.mod(boxes[:, 6] + np.pi, 2 * np.pi) - np.pi
    return Scene(slope, road_yaw, road_offset, road_width, sidewalk, cross_u, cross_width,
                 b.primitives(), boxes, list(b.names))

"""Vectorised ray casting (numpy): ray–plane, ray–oriented-box, ray–vertical-cylinder and
ray–ellipsoid intersections over flat arrays of (ray, primitive) pairs, plus the broad phase
that pairs a spinning sensor's rays with the primitives their angular window can reach.
"""
from __future__ import annotations

import numpy as np

_T_MIN = 1e-6


def ray_plane(origin: np.ndarray, dirs: np.ndarray, slope: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rays against the ground ``z = slope[0] * x + slope[1] * y``.

    Args:
        origin: (3,) ray origin; dirs: (R, 3) unit directions; slope: (2,).

    Returns:
        t (R,) (inf where missed), normal (3,) upward unit normal.
    """
    denom = slope[0] * dirs[:, 0] + slope[1] * dirs[:, 1] - dirs[:, 2]
    numer = origin[2] - slope[0] * origin[0] - slope[1] * origin[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = numer / denom
    t = np.where((denom * np.sign(numer) > 0) & (t > _T_MIN), t, np.inf)
    normal = np.array([-slope[0], -slope[1], 1.0])
    return t, normal / np.linalg.norm(normal)


def _rotate_z(vectors: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate (P, 3) vectors by per-row angles about z."""
    return np.stack([cos * vectors[:, 0] - sin * vectors[:, 1],
                     sin * vectors[:, 0] + cos * vectors[:, 1], vectors[:, 2]], axis=1)


def ray_boxes(origin: np.ndarray, dirs: np.ndarray, centre: np.ndarray, half: np.ndarray,
              yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slab test of rays against oriented boxes (rotated about z), one box per ray.

    Args:
        origin: (3,); dirs: (P, 3); centre, half: (P, 3) centre and half extents; yaw: (P,).

    Returns:
        t (P,) entry distance (inf where missed or the origin is inside), normal (P, 3).
    """
    cos, sin = np.cos(yaw), np.sin(yaw)
    local_origin = _rotate_z(origin[None, :] - centre, cos, -sin)
    local_dirs = _rotate_z(dirs, cos, -sin)
    parallel = np.abs(local_dirs) < 1e-12
    safe = np.where(parallel, 1.0, local_dirs)
    t1 = (-half - local_origin) / safe
    t2 = (half - local_origin) / safe
    inside_slab = np.abs(local_origin) <= half
    near = np.where(parallel, np.where(inside_slab, -np.inf, np.inf), np.minimum(t1, t2))
    far = np.where(parallel, np.where(inside_slab, np.inf, -np.inf), np.maximum(t1, t2))
    axis = np.argmax(near, axis=1)
    t_enter, t_exit = near.max(axis=1), far.min(axis=1)
    hit = (t_enter <= t_exit) & (t_enter > _T_MIN)
    local_normal = np.zeros_like(local_dirs)
    rows = np.arange(len(axis))
    local_normal[rows, axis] = -np.sign(local_dirs[rows, axis])
    return np.where(hit, t_enter, np.inf), _rotate_z(local_normal, cos, sin)


def ray_cylinders(origin: np.ndarray, dirs: np.ndarray, centre_xy: np.ndarray, z_range: np.ndarray,
                  radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rays against closed vertical cylinders, one cylinder per ray.

    Args:
        origin: (3,); dirs: (P, 3); centre_xy: (P, 2); z_range: (P, 2) bottom, top; radius: (P,).

    Returns:
        t (P,) first hit (inf where missed), normal (P, 3).
    """
    rel = origin[None, 0:2] - centre_xy
    a = dirs[:, 0] ** 2 + dirs[:, 1] ** 2
    b = 2 * (rel[:, 0] * dirs[:, 0] + rel[:, 1] * dirs[:, 1])
    c = (rel ** 2).sum(1) - radius ** 2
    disc = b * b - 4 * a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    z_side = origin[2] + t_side * dirs[:, 2]
    side = (a > 0) & (disc >= 0) & (t_side > _T_MIN) & (z_side >= z_range[:, 0]) & (z_side <= z_range[:, 1])
    t_side = np.where(side, t_side, np.inf)

    safe_dz = np.where(np.abs(dirs[:, 2]) < 1e-12, 1e-12, dirs[:, 2])
    cap_z = np.where(dirs[:, 2] < 0, z_range[:, 1], z_range[:, 0])  # the cap that faces the ray
    t_cap = (cap_z - origin[2]) / safe_dz
    cap_xy = rel + t_cap[:, None] * dirs[:, 0:2]
    cap = (t_cap > _T_MIN) & ((cap_xy ** 2).sum(1) <= radius ** 2)
    t_cap = np.where(cap, t_cap, np.inf)

    t = np.minimum(t_side, t_cap)
    t_finite = np.where(np.isfinite(t_side), t_side, 0.0)
    side_normal = np.concatenate([rel + t_finite[:, None] * dirs[:, 0:2], np.zeros((len(t), 1))], axis=1)
    side_normal /= np.maximum(np.linalg.norm(side_normal, axis=1, keepdims=True), 1e-12)
    cap_normal = np.zeros_like(side_normal)
    cap_normal[:, 2] = -np.sign(safe_dz)
    normal = np.where((t_side <= t_cap)[:, None], side_normal, cap_normal)
    return t, normal


def ray_ellipsoids(origin: np.ndarray, dirs: np.ndarray, centre: np.ndarray,
                   radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rays against axis-aligned ellipsoids, one per ray.

    Args:
        origin: (3,); dirs: (P, 3); centre, radii: (P, 3).

    Returns:
        t (P,) first hit (inf where missed or the origin is inside), normal (P, 3).
    """
    o = (origin[None, :] - centre) / radii
    d = dirs / radii
    a = (d * d).sum(1)
    b = 2 * (o * d).sum(1)
    c = (o * o).sum(1) - 1
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    hit = (disc >= 0) & (c > 0) & (t > _T_MIN)
    normal = (o + t[:, None] * d) / radii
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    return np.where(hit, t, np.inf), normal


def angular_pairs(origin: np.ndarray, elevation: np.ndarray, azimuth0: float, azimuth_steps: int,
                  centre: np.ndarray, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Broad phase: (ray, primitive) pairs whose ray can meet the primitive's bounding sphere.

    Rays are ``beam * azimuth_steps + column``; beam ``b`` has elevation ``elevation[b]``
    (ascending) and column ``k`` azimuth ``azimuth0 + k * 2 pi / azimuth_steps``.

    Args:
        origin: (3,) sensor; elevation: (B,) radians, ascending; centre: (K, 3); radius: (K,).

    Returns:
        ray index (P,), primitive index (P,), int64.
    """
    step = 2 * np.pi / azimuth_steps
    rel = centre - origin[None, :]
    horizontal = np.hypot(rel[:, 0], rel[:, 1])
    distance = np.linalg.norm(rel, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        half_az = np.arcsin(np.clip(radius / horizontal, 0, 1))
        half_el = np.arcsin(np.clip(radius / distance, 0, 1))
    azimuth = np.arctan2(rel[:, 1], rel[:, 0])
    first_col = np.ceil((azimuth - half_az - azimuth0) / step).astype(np.int64)
    num_cols = np.floor((azimuth + half_az - azimuth0) / step).astype(np.int64) - first_col + 1
    all_cols = horizontal <= radius
    first_col = np.where(all_cols, 0, first_col)
    num_cols = np.clip(np.where(all_cols, azimuth_steps, num_cols), 0, azimuth_steps)

    centre_el = np.arctan2(rel[:, 2], horizontal)
    all_beams = distance <= radius
    first_beam = np.where(all_beams, 0, np.searchsorted(elevation, centre_el - half_el, side="left"))
    last_beam = np.where(all_beams, len(elevation), np.searchsorted(elevation, centre_el + half_el, side="right"))
    num_beams = np.maximum(last_beam - first_beam, 0)

    count = num_cols * num_beams
    prim = np.repeat(np.arange(len(radius)), count)
    local = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    beam = first_beam[prim] + local // num_cols[prim]
    col = (first_col[prim] + local % num_cols[prim]) % azimuth_steps
    return beam * azimuth_steps + col, prim

"""Procedural LiDAR scenes and the detection AP metric: test and demo data, not a benchmark.

``generate_frame(seed, index, config)`` needs numpy only; ``metric`` (imported on its own)
uses torch and ``pcdet_seal.ops`` for rotated IoU.
"""
from .generator import SensorConfig, SyntheticConfig, generate_frame
from .labels import CLASS_NAMES, CLASS_SUPERCLASSES, SUPERCLASSES
from .scene import SceneConfig

__all__ = [
    "CLASS_NAMES",
    "CLASS_SUPERCLASSES",
    "SUPERCLASSES",
    "SceneConfig",
    "SensorConfig",
    "SyntheticConfig",
    "generate_frame",
]

"""The label vocabulary of the synthetic scenes: seed Table C.1 superclasses and detection classes.

The eight superclasses follow the paper's Table C.1 in its row order, 0-based.
Cyclists are split as that table splits them: the bicycle is ``two_wheeler``, the rider ``human``.
"""
from __future__ import annotations

SUPERCLASSES: tuple[str, ...] = (
    "ground",       # 0: road, lane markings, sidewalk
    "structure",    # 1: buildings, walls
    "vehicle",      # 2: cars, vans, trucks
    "two_wheeler",  # 3: bicycles
    "nature",       # 4: trees (trunk and crown), bushes, terrain
    "human",        # 5: pedestrians, cyclists' riders
    "object",       # 6: poles, signs, fences, traffic cones
    "outlier",      # 7: spurious returns
)
GROUND, STRUCTURE, VEHICLE, TWO_WHEELER, NATURE, HUMAN, OBJECT, OUTLIER = range(len(SUPERCLASSES))

CLASS_NAMES: tuple[str, ...] = ("Vehicle", "Pedestrian", "Cyclist")

# Superclasses whose points make up an object of each detection class.
CLASS_SUPERCLASSES: dict[str, tuple[int, ...]] = {
    "Vehicle": (VEHICLE,),
    "Pedestrian": (HUMAN,),
    "Cyclist": (TWO_WHEELER, HUMAN),
}

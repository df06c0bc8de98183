"""Seal targets without MinkowskiEngine (torch + spconv, no pcdet).

``minkunet`` (Res16UNet34C teacher on spconv), ``checkpoint`` (ME checkpoints → spconv, strict),
``targets`` (teacher cells, per-voxel targets), ``cache`` (offline feature store). Nothing here
imports spconv until a teacher network is built.
"""

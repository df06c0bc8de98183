"""Voxel masking strategies (pure torch): I2Mask and the Table D.8 baselines.

Every masker follows one interface::

    mask, stats = masker(features (N, C), voxel_coords (N, 4) int [b, z, y, x],
                         valid (N,) bool, generator)

``mask`` is (N,) bool with True = masked; ``stats`` holds python floats/lists for logging.
"""

"""pcdet-seal: Seal-feature masked pre-training (PICTURE) as an OpenPCDet plugin.

Importing this package imports neither OpenPCDet nor spconv; those are only touched by
``pcdet_seal.registry`` and the modules that build networks.
"""
from .version import __version__

__all__ = ["__version__"]

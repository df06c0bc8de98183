"""pcdet-seal: Seal-feature masked pre-training (PICTURE) as an OpenPCDet plugin.

Importing this package imports neither OpenPCDet nor spconv; those are only touched by
``pcdet_seal.registry`` and the modules that build networks.
"""
from .version import __version__

__all__ = ["__version__", "register"]


def register(check_device: bool = True) -> list[str]:
    """Add the plugin's classes to OpenPCDet's tables (imports pcdet); see :func:`pcdet_seal.registry.register`.

    Returns the ``'table:Name'`` entries added by this call. The start-up hook does this by itself
    when ``pcdet.models`` is imported, unless ``PCDET_SEAL_AUTOLOAD=0``.
    """
    from .registry import register as register_with_pcdet

    return register_with_pcdet(check_device=check_device)

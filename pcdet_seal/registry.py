"""The only module that touches OpenPCDet's name -> class tables: it adds the plugin's classes.

OpenPCDet looks classes up in module-level ``__all__`` dicts when a network or dataset is
built, so inserting our classes after ``import pcdet.models`` is enough. :data:`ENTRIES` lists
everything the plugin adds; :func:`register` is idempotent and returns what it added.
:data:`ENTRIES` is also the one name -> class table of the plugin's own modules: ``SealMAE``
builds its decoder and head from :func:`plugin_classes`, so a name it accepts is exactly a name
registered with OpenPCDet.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# table key -> module whose ``__all__`` dict OpenPCDet reads (docs/architecture.md §4.3).
TABLES: dict[str, str] = {
    "detector": "pcdet.models.detectors",
    "vfe": "pcdet.models.backbones_3d.vfe",
    "backbone_3d": "pcdet.models.backbones_3d",
    "map_to_bev": "pcdet.models.backbones_2d.map_to_bev",
    "backbone_2d": "pcdet.models.backbones_2d",
    "dense_head": "pcdet.models.dense_heads",  # DENSE_HEAD and POINT_HEAD
    "roi_head": "pcdet.models.roi_heads",
    "dataset": "pcdet.datasets",
}


@dataclass(frozen=True)
class Entry:
    """One plugin class under one name in one OpenPCDet table; ``target`` is ``'module:attribute'``."""

    table: str
    name: str
    target: str


ENTRIES: tuple[Entry, ...] = (
    Entry("dataset", "SyntheticLidarDataset", "pcdet_seal.datasets.synthetic_dataset:SyntheticLidarDataset"),
    Entry("dataset", "WaymoPretrainDataset", "pcdet_seal.datasets.pretrain:WaymoPretrainDataset"),
    Entry("dataset", "NuScenesPretrainDataset", "pcdet_seal.datasets.pretrain:NuScenesPretrainDataset"),
    Entry("detector", "SealMAE", "pcdet_seal.models.seal_mae:SealMAE"),
    Entry("backbone_2d", "DSVTMaskDecoder", "pcdet_seal.models.decoders:DSVTMaskDecoder"),
    Entry("backbone_2d", "SparseConvDecoder", "pcdet_seal.models.decoders:SparseConvDecoder"),
    Entry("dense_head", "SealMAEHead", "pcdet_seal.models.seal_mae_head:SealMAEHead"),
)


class RegistryConflict(RuntimeError):
    """A plugin name is already taken in an OpenPCDet table by a class that is not the plugin's."""


def _table_module(key: str) -> str:
    if key not in TABLES:
        raise KeyError(f"unknown OpenPCDet table {key!r}; known: {sorted(TABLES)}")
    return TABLES[key]


def table(key: str) -> dict:
    """OpenPCDet's name -> class dict for ``key`` (one of :data:`TABLES`)."""
    module = importlib.import_module(_table_module(key))
    found = getattr(module, "__all__", None)
    if not isinstance(found, dict):
        raise TypeError(f"{TABLES[key]}.__all__ is {type(found).__name__}, not the name -> class dict "
                        "this plugin expects (OpenPCDet 0.6.0 layout)")
    return found


def _load(target: str) -> type:
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError as error:
        raise AttributeError(f"registry entry {target!r}: {module_name} has no {attribute!r}") from error


def plugin_classes(key: str) -> dict[str, type]:
    """``{name: class}`` of the :data:`ENTRIES` for OpenPCDet table ``key`` (what :func:`register` adds there)."""
    _table_module(key)
    return {entry.name: _load(entry.target) for entry in ENTRIES if entry.table == key}


def _is_plugin_class(obj: object) -> bool:
    return getattr(obj, "__module__", "").split(".")[0] == "pcdet_seal"


def register(check_device: bool = True) -> list[str]:
    """Add every :data:`ENTRIES` class to OpenPCDet's tables and apply the version fixes.

    Args:
        check_device: raise :class:`pcdet_seal.compat.CpuModeRequired` (one line saying how to
            enable CPU mode) when there is no CUDA device and CPU mode is off.

    Returns:
        ``'table:Name'`` for each entry added by this call (empty when all were there already).
    """
    from . import compat

    if check_device:
        compat.require_cuda_or_cpu_mode("pcdet_seal.register()")
    compat.apply_version_fixes()
    added = []
    for entry in ENTRIES:
        names = table(entry.table)
        cls = _load(entry.target)
        existing = names.get(entry.name)
        if existing is cls:
            continue
        if existing is not None and not _is_plugin_class(existing):
            raise RegistryConflict(f"{TABLES[entry.table]}.__all__[{entry.name!r}] is already "
                                   f"{existing.__module__}.{existing.__qualname__}; the plugin will not replace it")
        names[entry.name] = cls
        added.append(f"{entry.table}:{entry.name}")
    if added:
        logger.info("pcdet-seal: registered %s", ", ".join(added))
    return added


def registered() -> dict[str, type]:
    """``{'table:Name': class}`` for every plugin entry currently in OpenPCDet's tables."""
    found = {}
    for entry in ENTRIES:
        cls = table(entry.table).get(entry.name)
        if cls is not None and _is_plugin_class(cls):
            found[f"{entry.table}:{entry.name}"] = cls
    return found

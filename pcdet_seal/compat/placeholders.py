"""Stand-in modules for what an unbuilt OpenPCDet checkout (or a CPU-only machine) lacks.

Each stand-in imports cleanly and fails only when used, with an error that names the missing
piece and what to do about it. Nothing here writes into the OpenPCDet checkout.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, NoReturn, Optional

# The compiled extensions of OpenPCDet 0.6.0 (its setup.py ``make_cuda_ext`` calls).
COMPILED_EXTENSIONS: tuple[str, ...] = (
    "pcdet.ops.iou3d_nms.iou3d_nms_cuda",
    "pcdet.ops.roiaware_pool3d.roiaware_pool3d_cuda",
    "pcdet.ops.roipoint_pool3d.roipoint_pool3d_cuda",
    "pcdet.ops.pointnet2.pointnet2_stack.pointnet2_stack_cuda",
    "pcdet.ops.pointnet2.pointnet2_batch.pointnet2_batch_cuda",
    "pcdet.ops.bev_pool.bev_pool_ext",
    "pcdet.ops.ingroup_inds.ingroup_inds_cuda",
)

# Compiled functions whose OpenPCDet wrapper the plugin routes to its own torch ops.
CPU_FALLBACKS: dict[str, str] = {
    "iou3d_nms_cuda.boxes_iou_bev_cpu": "iou3d_nms_utils.boxes_bev_iou_cpu -> pcdet_seal.ops.boxes_bev_iou",
    "iou3d_nms_cuda.boxes_iou_bev_gpu": "iou3d_nms_utils.boxes_iou_bev -> pcdet_seal.ops.boxes_bev_iou",
    "iou3d_nms_cuda.boxes_overlap_bev_gpu": "iou3d_nms_utils.boxes_iou3d_gpu -> pcdet_seal.ops.boxes_iou3d",
    "iou3d_nms_cuda.boxes_aligned_overlap_bev_gpu":
        "iou3d_nms_utils.boxes_aligned_iou3d_gpu -> pcdet_seal.ops.paired_boxes_iou3d",
    "iou3d_nms_cuda.paired_boxes_overlap_bev_gpu":
        "iou3d_nms_utils.paired_boxes_iou3d_gpu -> pcdet_seal.ops.paired_boxes_iou3d",
    "iou3d_nms_cuda.nms_gpu": "iou3d_nms_utils.nms_gpu -> pcdet_seal.ops.nms",
    "iou3d_nms_cuda.nms_normal_gpu": "iou3d_nms_utils.nms_normal_gpu -> pcdet_seal.ops.nms_normal",
    "roiaware_pool3d_cuda.points_in_boxes_cpu":
        "roiaware_pool3d_utils.points_in_boxes_cpu -> pcdet_seal.ops.points_in_boxes_mask",
    "roiaware_pool3d_cuda.points_in_boxes_gpu":
        "roiaware_pool3d_utils.points_in_boxes_gpu -> pcdet_seal.ops.points_in_boxes",
    "ingroup_inds_cuda.forward": "ingroup_inds_op.ingroup_inds -> pcdet_seal.ops.ingroup_inds",
}

PLACEHOLDER_FLAG = "__pcdet_seal_placeholder__"


class CompiledOpUnavailable(RuntimeError):
    """A compiled OpenPCDet op was called, but this OpenPCDet checkout was never built."""


class ModuleUnavailable(ImportError):
    """A module that failed to import (or is absent) was used through its stand-in."""


def is_placeholder(module: Optional[ModuleType]) -> bool:
    """True for the stand-ins made here (and for ``None``: no module at all)."""
    return module is None or bool(getattr(module, PLACEHOLDER_FLAG, False))


def _compiled_op_stub(module_name: str, attr: str) -> Callable[..., NoReturn]:
    short = f"{module_name.rpartition('.')[2]}.{attr}"
    fallback = CPU_FALLBACKS.get(short)
    if fallback is not None:
        advice = (f"its CPU fallback is the wrapper route {fallback}: call the wrapper "
                  "(pcdet-seal's CPU mode routes it), not the compiled function")
    else:
        advice = "pcdet-seal has no CPU fallback for it: build OpenPCDet with CUDA to use it"

    def stub(*args: Any, **kwargs: Any) -> NoReturn:
        raise CompiledOpUnavailable(
            f"{module_name}.{attr} is a compiled OpenPCDet op, and this checkout has no build of "
            f"it (pcdet-seal CPU-mode placeholder); {advice}")

    stub.__name__ = attr
    stub.__qualname__ = f"{module_name}.{attr}"
    return stub


def compiled_extension_placeholder(name: str) -> ModuleType:
    """A module for a missing compiled extension: every function raises :class:`CompiledOpUnavailable`."""
    module = ModuleType(name, f"pcdet-seal placeholder for the unbuilt OpenPCDet extension {name}")
    setattr(module, PLACEHOLDER_FLAG, True)

    def __getattr__(attr: str) -> Callable[..., NoReturn]:
        if attr.startswith("__"):
            raise AttributeError(attr)
        stub = _compiled_op_stub(name, attr)
        setattr(module, attr, stub)
        return stub

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]
    return module


def openpcdet_version(checkout: Path) -> str:
    """The version OpenPCDet's setup.py would write, read from that setup.py (else ``0+unknown``)."""
    try:
        text = (checkout / "setup.py").read_text()
    except OSError:
        return "0+unknown"
    match = re.search(r"version\s*=\s*['\"]([0-9][0-9.]*)", text)
    return f"{match.group(1)}+source" if match else "0+unknown"


def pcdet_version_module(name: str) -> ModuleType:
    """``pcdet.version`` for a checkout whose setup.py never ran (it writes that file)."""
    module = ModuleType(name, "pcdet-seal stand-in for pcdet/version.py (written by OpenPCDet's setup.py)")
    pcdet = sys.modules.get("pcdet")
    paths = list(getattr(pcdet, "__path__", []) or [])
    checkout = Path(paths[0]).parent if paths else Path(".")
    module.__version__ = openpcdet_version(checkout)  # type: ignore[attr-defined]
    setattr(module, PLACEHOLDER_FLAG, True)
    return module


def unavailable_module(name: str, reason: str, error: Optional[BaseException] = None) -> ModuleType:
    """A module whose every attribute use raises :class:`ModuleUnavailable` naming ``reason``.

    Attribute access returns a class-like stand-in (so ``from m import X`` and tables of
    classes still import); calling or instantiating it raises.
    """
    module = ModuleType(name, f"pcdet-seal placeholder: {reason}")
    setattr(module, PLACEHOLDER_FLAG, True)
    message = f"{name} is unavailable here: {reason}"
    if error is not None:
        message += f" (import error: {type(error).__name__}: {error})"

    def fail(attr: str) -> NoReturn:
        raise ModuleUnavailable(f"{message}; needed for {name}.{attr}") from error

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _unavailable_attribute(attr, lambda: fail(attr))

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]
    return module


def _unavailable_attribute(attr: str, fail: Callable[[], NoReturn]) -> type:
    def raise_on_use(*args: Any, **kwargs: Any) -> NoReturn:
        fail()

    def raise_on_attr(cls: type, name: str) -> NoReturn:
        fail()

    meta = type(f"_{attr}Meta", (type,), {"__getattr__": raise_on_attr, "__call__": raise_on_use})
    return meta(attr, (), {"__doc__": f"pcdet-seal placeholder for {attr} (unavailable)"})

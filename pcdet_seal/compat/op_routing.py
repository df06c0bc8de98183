"""Route OpenPCDet's box-op wrappers to :mod:`pcdet_seal.ops` where the compiled op cannot serve.

A routed wrapper calls the plugin's torch op for CPU tensors (OpenPCDet's ops either refuse
them, allocate ``torch.cuda`` tensors, or ``exit(-1)``), and for CUDA tensors only when the
compiled extension is a placeholder; with a real build, CUDA inputs keep the compiled op.
The wrapper modules are patched right after they execute, before other modules bind their names.
"""
from __future__ import annotations

import functools
import logging
import sys
from types import ModuleType
from typing import Any, Callable

import numpy as np
import torch

from .placeholders import is_placeholder

logger = logging.getLogger(__name__)

ROUTED_FLAG = "__pcdet_seal_routed__"

# wrapper module -> (its compiled extension module, {wrapper function: plugin adapter name})
ROUTES: dict[str, tuple[str, dict[str, str]]] = {
    "pcdet.ops.iou3d_nms.iou3d_nms_utils": ("pcdet.ops.iou3d_nms.iou3d_nms_cuda", {
        "boxes_bev_iou_cpu": "boxes_bev_iou_numpy_or_torch",
        "boxes_iou_bev": "boxes_bev_iou",
        "boxes_iou3d_gpu": "boxes_iou3d",
        "boxes_aligned_iou3d_gpu": "boxes_aligned_iou3d",
        "paired_boxes_iou3d_gpu": "paired_boxes_iou3d",
        "nms_gpu": "nms_gpu",
        "nms_normal_gpu": "nms_normal_gpu",
    }),
    "pcdet.ops.roiaware_pool3d.roiaware_pool3d_utils": ("pcdet.ops.roiaware_pool3d.roiaware_pool3d_cuda", {
        "points_in_boxes_cpu": "points_in_boxes_cpu",
        "points_in_boxes_gpu": "points_in_boxes_gpu",
    }),
    "pcdet.ops.ingroup_inds.ingroup_inds_op": ("pcdet.ops.ingroup_inds.ingroup_inds_cuda", {
        "ingroup_inds": "ingroup_inds",
    }),
}


# --- adapters: OpenPCDet's wrapper signatures and return types over pcdet_seal.ops -------------

def _as_tensor(array: Any) -> tuple[torch.Tensor, bool]:
    if isinstance(array, np.ndarray):
        return torch.from_numpy(array), True
    return array, False


def boxes_bev_iou_numpy_or_torch(boxes_a: Any, boxes_b: Any) -> Any:
    """``boxes_bev_iou_cpu``: numpy in, numpy out (float32 like the C++ op); torch in, torch out."""
    from pcdet_seal import ops

    tensor_a, numpy_a = _as_tensor(boxes_a)
    tensor_b, numpy_b = _as_tensor(boxes_b)
    iou = ops.boxes_bev_iou(tensor_a.float(), tensor_b.float())
    return iou.numpy() if (numpy_a or numpy_b) else iou


def boxes_bev_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    from pcdet_seal import ops

    return ops.boxes_bev_iou(boxes_a, boxes_b)


def boxes_iou3d(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    from pcdet_seal import ops

    return ops.boxes_iou3d(boxes_a, boxes_b)


def boxes_aligned_iou3d(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """(N, 7), (N, 7) -> (N, 1), as ``boxes_aligned_iou3d_gpu``."""
    from pcdet_seal import ops

    return ops.paired_boxes_iou3d(boxes_a, boxes_b).view(-1, 1)


def paired_boxes_iou3d(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    from pcdet_seal import ops

    return ops.paired_boxes_iou3d(boxes_a, boxes_b)


def nms_gpu(boxes: torch.Tensor, scores: torch.Tensor, thresh: float, pre_maxsize: Any = None,
            **kwargs: Any) -> tuple[torch.Tensor, None]:
    from pcdet_seal import ops

    return ops.pcdet_nms_gpu(boxes, scores, thresh, pre_maxsize, **kwargs)


def nms_normal_gpu(boxes: torch.Tensor, scores: torch.Tensor, thresh: float,
                   **kwargs: Any) -> tuple[torch.Tensor, None]:
    from pcdet_seal import ops

    return ops.pcdet_nms_normal_gpu(boxes, scores, thresh, **kwargs)


def points_in_boxes_cpu(points: Any, boxes: Any) -> Any:
    """(N, 3), (M, 7) -> (M, N) int32 membership; numpy in, numpy out."""
    from pcdet_seal import ops

    tensor_points, numpy_points = _as_tensor(points)
    tensor_boxes, numpy_boxes = _as_tensor(boxes)
    mask = ops.points_in_boxes_mask(tensor_points.float(), tensor_boxes.float())
    return mask.numpy() if (numpy_points or numpy_boxes) else mask


def points_in_boxes_gpu(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(B, N, 3), (B, M, 7) -> (B, N) int32 box index, -1 for background."""
    from pcdet_seal import ops

    return ops.points_in_boxes(points, boxes)


def ingroup_inds(group_ids: torch.Tensor) -> torch.Tensor:
    """Within-group index, same dtype as the group ids (as the CUDA op writes into ``zeros_like``)."""
    from pcdet_seal import ops

    return ops.ingroup_inds(group_ids).to(group_ids.dtype)


# --- routing ------------------------------------------------------------------------------------

def _has_cuda_tensor(values: Any) -> bool:
    return any(isinstance(value, torch.Tensor) and value.is_cuda for value in values)


def _routed(original: Callable[..., Any], adapter: Callable[..., Any], extension: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def routed(*args: Any, **kwargs: Any) -> Any:
        on_cuda = _has_cuda_tensor(args) or _has_cuda_tensor(kwargs.values())
        if on_cuda and not is_placeholder(sys.modules.get(extension)):
            return original(*args, **kwargs)
        return adapter(*args, **kwargs)

    setattr(routed, ROUTED_FLAG, True)
    routed.__pcdet_seal_original__ = original  # type: ignore[attr-defined]
    return routed


def route_module(module: ModuleType) -> list[str]:
    """Replace the wrappers of one OpenPCDet op module in place; returns the names routed now."""
    extension, functions = ROUTES[module.__name__]
    adapters = sys.modules[__name__]
    done = []
    for function_name, adapter_name in functions.items():
        original = getattr(module, function_name, None)
        if original is None or getattr(original, ROUTED_FLAG, False):
            continue
        routed = _routed(original, getattr(adapters, adapter_name), extension)
        setattr(module, function_name, routed)
        _rebind_aliases(original, routed)
        done.append(f"{module.__name__}.{function_name}")
    if done:
        logger.debug("pcdet-seal: routed %s", ", ".join(done))
    return done


def _rebind_aliases(original: Callable[..., Any], routed: Callable[..., Any]) -> None:
    """Point names that other pcdet modules bound with ``from ... import f`` at the routed ``f``.

    Only needed when the wrapper module was imported before routing was installed; normally
    routing runs right after the wrapper module executes, before anyone binds its names.
    """
    for name, other in list(sys.modules.items()):
        if other is None or not (name == "pcdet" or name.startswith("pcdet.")):
            continue
        namespace = getattr(other, "__dict__", {})
        for attr, value in list(namespace.items()):
            if value is original:
                setattr(other, attr, routed)

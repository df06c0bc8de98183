"""Box ops of OpenPCDet in pure, device-agnostic torch (no pcdet, no compiled extensions).

Boxes are (N, 7) ``[x, y, z, dx, dy, dz, heading]`` with z the box centre, as in OpenPCDet.
Mapping to the OpenPCDet ops they replace (``pcdet.ops.*``):

==========================================================  ==========================================
OpenPCDet                                                   here
==========================================================  ==========================================
``ingroup_inds.ingroup_inds_op.ingroup_inds(g)``            ``ingroup_inds(g)``
``iou3d_nms_utils.boxes_bev_iou_cpu(a, b)``                 ``boxes_bev_iou(a, b)`` (numpy in/out: wrap)
``iou3d_nms_utils.boxes_iou_bev(a, b)``                     ``boxes_bev_iou(a, b)``
``iou3d_nms_utils.boxes_iou3d_gpu(a, b)``                   ``boxes_iou3d(a, b)``
``iou3d_nms_utils.paired_boxes_iou3d_gpu(a, b)``            ``paired_boxes_iou3d(a, b)`` (N,)
``iou3d_nms_utils.boxes_aligned_iou3d_gpu(a, b)``           ``paired_boxes_iou3d(a, b)[:, None]`` (N, 1)
``iou3d_nms_utils.nms_gpu(b, s, t, pre_maxsize, **kw)``     ``pcdet_nms_gpu`` (same signature/return)
``iou3d_nms_utils.nms_normal_gpu(b, s, t, **kw)``           ``pcdet_nms_normal_gpu`` (same)
``roiaware_pool3d_utils.points_in_boxes_gpu(p, b)``         ``points_in_boxes(p, b)`` (B, N) int32
``roiaware_pool3d_utils.points_in_boxes_cpu(p, b)``         ``points_in_boxes_mask(p, b)`` (M, N) int32
==========================================================  ==========================================
"""
from .ingroup import ingroup_inds
from .nms import nms, nms_normal, pcdet_nms_gpu, pcdet_nms_normal_gpu
from .points_in_boxes import points_in_boxes, points_in_boxes_mask
from .rotated_iou import (
    bev_corners,
    boxes_bev_iou,
    boxes_bev_overlap,
    boxes_iou3d,
    paired_boxes_bev_overlap,
    paired_boxes_iou3d,
)

__all__ = [
    "bev_corners",
    "boxes_bev_iou",
    "boxes_bev_overlap",
    "boxes_iou3d",
    "ingroup_inds",
    "nms",
    "nms_normal",
    "paired_boxes_bev_overlap",
    "paired_boxes_iou3d",
    "pcdet_nms_gpu",
    "pcdet_nms_normal_gpu",
    "points_in_boxes",
    "points_in_boxes_mask",
]

"""Per-voxel Seal targets for pre-training (docs/method.md §2–3): a frozen online teacher or the
offline feature cache joined by teacher-cell coordinate, reduced to the DSVT voxels.

The teacher is never part of the detector's state dict, parameters or optimiser: it is held by
:class:`pcdet_seal.seal.minkunet.SealTeacher`, which registers no tensors.
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from pcdet_seal.seal import targets as seal_targets
from pcdet_seal.seal.cache import MissingFrameError
from pcdet_seal.seal.teacher_settings import resolve_teacher_settings

logger = logging.getLogger(__name__)

MODES = ("online", "cache")
#: ``ON_MISSING`` (cache mode): a frame without a cache file is an error, or gets the online teacher.
ON_MISSING = ("error", "online")
#: Below this share of a cached frame's cells found by coordinate, a warning names the frame.
MIN_FOUND_WARN = 0.9


class SealTargetGenerator(nn.Module):
    """``MODEL.SEAL_TARGET`` (docs/architecture.md §5) → ``seal_target`` (N_v, C_t), ``seal_valid`` (N_v,).

    Config keys: ``MODE`` (online | cache), ``TEACHER_CKPT`` (converted or MinkowskiEngine
    checkpoint, online mode), ``RANDOM_TEACHER`` (online mode without a checkpoint: a randomly
    initialised teacher — for tests and demos only, logged as a warning), ``TEACHER_ARCH``
    (optional ``Res16UNetArch`` keys, e.g. reduced widths for a random teacher), ``CACHE_DIR``,
    ``CELL_SIZE`` (default: the DSVT voxel size; SLidR's cells for cylindrical), ``QUANT``
    (cartesian | cylindrical), ``TARGET_MODE`` (point_mean | representative), ``FEATURE_CHANNEL``
    (point channel after x, y, z fed to the teacher; 3 = the first non-xyz channel),
    ``INTENSITY_SCALE`` (multiplies it), ``NUM_FEATURES`` (C_t, 64), ``MASK_Z`` (default False;
    True: the teacher sees no point outside the grid's z range, in both modes and in the feature
    job), ``ON_MISSING`` (cache mode: ``error`` (default) stops at a frame absent from the cache,
    naming it and ``CACHE_DIR``; ``online`` runs the teacher of ``TEACHER_CKPT`` /
    ``RANDOM_TEACHER`` on such frames, logging each). Teacher keys are resolved by
    :func:`pcdet_seal.seal.teacher_settings.resolve_teacher_settings`.

    Needs in ``batch_dict``: ``points`` (N_p, 1+F), ``point2voxel`` (N_p,), ``voxel_coords``
    (N_v, 4) and, in cache mode, ``frame_id`` (B,).
    """

    def __init__(self, model_cfg: Any, voxel_size: Sequence[float],
                 point_cloud_range: Optional[Sequence[float]] = None, **kwargs: Any) -> None:
        super().__init__()
        self.model_cfg = model_cfg
        self.mode = model_cfg.get("MODE", "online")
        if self.mode not in MODES:
            raise ValueError(f"MODEL.SEAL_TARGET.MODE must be one of {MODES}, got {self.mode!r}")
        self.settings = resolve_teacher_settings(model_cfg, voxel_size, point_cloud_range)
        self.quant = self.settings.quant
        self.cell_size = list(self.settings.cell_size)
        self.target_mode = model_cfg.get("TARGET_MODE", "point_mean")
        if self.target_mode not in seal_targets.TARGET_MODES:
            raise ValueError(f"MODEL.SEAL_TARGET.TARGET_MODE must be one of {seal_targets.TARGET_MODES}, "
                             f"got {self.target_mode!r}")
        self.num_features = self.settings.num_features
        self.teacher: Optional[nn.Module] = None
        self.teacher_sha256: Optional[str] = None
        self.cache = None
        self.on_missing = model_cfg.get("ON_MISSING", "error")
        if self.on_missing not in ON_MISSING:
            raise ValueError(f"MODEL.SEAL_TARGET.ON_MISSING must be one of {ON_MISSING}, got {self.on_missing!r}")
        if self.mode == "online":
            self.teacher = self._build_teacher(model_cfg)
        else:
            if self.on_missing == "online":
                # Built first: frames missing from the cache must get targets from the very teacher
                # that wrote it, so its hash is checked against the cache's meta.json.
                self.teacher = self._build_teacher(model_cfg)
            self.cache = self._open_cache(model_cfg)

    def _build_teacher(self, cfg: Any) -> nn.Module:
        from pcdet_seal.seal.minkunet import Res16UNet, Res16UNetArch, SealTeacher

        arch = self.settings.arch
        ckpt = cfg.get("TEACHER_CKPT", None)
        if ckpt:
            from pcdet_seal.seal.checkpoint import load_teacher

            teacher, meta = load_teacher(ckpt, arch=arch)
            self.teacher_sha256 = meta.get("source_sha256")
            logger.info("Seal teacher from %s (sha256 %s)", ckpt, meta.get("source_sha256", "?"))
        elif cfg.get("RANDOM_TEACHER", False):
            logger.warning("MODEL.SEAL_TARGET: RANDOM_TEACHER is on, the Seal teacher is randomly initialised "
                           "(tests/demos only; set TEACHER_CKPT for real pre-training)")
            teacher = SealTeacher(Res16UNet(arch or Res16UNetArch()))
        else:
            raise ValueError("MODEL.SEAL_TARGET.MODE is 'online' but TEACHER_CKPT is not set; pass it with "
                             "`--set MODEL.SEAL_TARGET.TEACHER_CKPT <seal_spconv.pth>` (convert a "
                             "MinkowskiEngine checkpoint with scripts/convert_seal_checkpoint.py), or use "
                             "MODE cache with CACHE_DIR")
        out = teacher.arch.out_channels
        if out != self.num_features:
            raise ValueError(f"Seal teacher outputs {out} channels but MODEL.SEAL_TARGET.NUM_FEATURES is "
                             f"{self.num_features}")
        return teacher

    def _open_cache(self, cfg: Any):
        from pcdet_seal.seal.cache import FeatureCache

        cache_dir = cfg.get("CACHE_DIR", None)
        if not cache_dir:
            raise ValueError("MODEL.SEAL_TARGET.MODE is 'cache' but CACHE_DIR is not set; pass it with "
                             "`--set MODEL.SEAL_TARGET.CACHE_DIR <cache_dir>` (write it with "
                             "scripts/seal_features.py)")
        return FeatureCache(cache_dir, feature_dim=self.num_features, teacher_sha256=self.teacher_sha256,
                            quant_mode=self.quant, cell_size=self.cell_size)

    def cell_features(self, cells: seal_targets.TeacherCells, feats_in: torch.Tensor,
                      frame_ids: Optional[Sequence[str]]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(N_t, C_t) features of the teacher cells and (N_t,) validity (None = all valid)."""
        if self.cache is None:
            return self.teacher(cells.coords, feats_in).to(feats_in.device), None
        if frame_ids is None:
            raise KeyError("MODEL.SEAL_TARGET.MODE 'cache' needs batch_dict['frame_id']")
        feats = feats_in.new_zeros(cells.coords.shape[0], self.num_features)
        valid = torch.zeros(cells.coords.shape[0], dtype=torch.bool, device=feats_in.device)
        for b, frame_id in enumerate(frame_ids):
            rows = torch.nonzero(cells.coords[:, 0] == b, as_tuple=True)[0]
            if rows.numel() == 0:
                continue
            try:
                f, found = self.cache.lookup(str(frame_id), cells.coords[rows, 1:])
            except MissingFrameError as err:
                if self.on_missing == "error":
                    raise MissingFrameError(f"{err}; MODEL.SEAL_TARGET.CACHE_DIR is {self.cache.cache_dir} (set "
                                            "MODEL.SEAL_TARGET.ON_MISSING online to run the teacher instead)") from err
                logger.warning("frame %r is not in the Seal feature cache %s: running the online teacher",
                               str(frame_id), self.cache.cache_dir)
                frame_cells = torch.cat([torch.zeros_like(cells.coords[rows, :1]), cells.coords[rows, 1:]], dim=1)
                f, found = self.teacher(frame_cells, feats_in[rows]), torch.ones_like(rows, dtype=torch.bool)
            if float(found.float().mean()) < MIN_FOUND_WARN:
                logger.warning("frame %r: only %d of %d teacher cells are in the Seal feature cache %s (was it "
                               "written from another cloud or cell size?)", str(frame_id), int(found.sum()),
                               found.numel(), self.cache.cache_dir)
            feats[rows] = f.to(feats.device)
            valid[rows] = found.to(valid.device)
        return feats, valid

    def forward(self, batch_dict: dict) -> dict:
        points, point2voxel = batch_dict["points"], batch_dict["point2voxel"]
        keep = self.settings.keep(points[:, 1:4])
        if keep is not None:  # MASK_Z: the teacher sees only points inside the grid's z range
            points, point2voxel = points[keep], point2voxel[keep]
        num_voxels = batch_dict["voxel_coords"].shape[0]
        cells, feats_in = seal_targets.teacher_input(
            points[:, 1:], points[:, 0].long(), self.cell_size, self.quant,
            feature_channel=self.settings.feature_channel, feature_scale=self.settings.feature_scale)
        frame_ids = batch_dict.get("frame_id", None)
        if isinstance(frame_ids, np.ndarray):
            frame_ids = frame_ids.tolist()
        with torch.no_grad():
            cell_feats, cell_valid = self.cell_features(cells, feats_in, frame_ids)
            target, valid = seal_targets.voxel_targets(
                cell_feats, cells.point2cell, point2voxel, num_voxels, mode=self.target_mode,
                representative=cells.representative, cell_valid=cell_valid)
        batch_dict["seal_target"] = target
        batch_dict["seal_valid"] = valid
        return batch_dict

    def extra_repr(self) -> str:
        return (f"mode={self.mode}, quant={self.quant}, cell_size={self.cell_size}, target_mode={self.target_mode}, "
                f"mask_z={self.settings.mask_z}"
                + (f", on_missing={self.on_missing}" if self.cache is not None else ""))

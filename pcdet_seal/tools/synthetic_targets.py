"""Seal targets of the synthetic pre-training scenes into the offline feature cache, from the
stand-in teacher or a real Seal teacher (the demo's and the study's teacher step)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import torch
from tqdm import tqdm

logger = logging.getLogger(__name__)


def write_targets(pre_cfg: Any, cache_dir: Path, seal_ckpt: Optional[Path], device: torch.device,
                  progress: bool = True, config_name: str = "the pre-training config") -> dict[str, str]:
    """Seal features of every pre-training scene of ``pre_cfg`` into the offline cache at ``cache_dir``.

    With ``seal_ckpt`` None the stand-in teacher (:mod:`pcdet_seal.seal.standin`) writes them, else the
    real Seal teacher loaded from ``seal_ckpt`` (its width checked against the config, named
    ``config_name`` in the error, before any frame).
    Finished frames are kept. Returns ``{"teacher": "stand-in" | "seal", "teacher_id": ...}``.
    """
    from pcdet_seal.seal.cache import CacheMeta, FeatureCacheWriter, Frame, write_features
    from pcdet_seal.seal.standin import StandInTeacher, write_standin_cache
    from pcdet_seal.seal.targets import teacher_features
    from pcdet_seal.seal.teacher_settings import resolve_teacher_settings
    from pcdet_seal.synthetic import SyntheticConfig, generate_frame

    data = pre_cfg.DATA_CONFIG
    synthetic = SyntheticConfig.from_dict(data.SYNTHETIC)
    seed, count = int(data.SEED.train), int(data.NUM_FRAMES.train)
    voxel_size = next(p.VOXEL_SIZE for p in data.DATA_PROCESSOR if "VOXEL_SIZE" in p)
    settings = resolve_teacher_settings(pre_cfg.MODEL.SEAL_TARGET, voxel_size, data.POINT_CLOUD_RANGE)
    cell, quant = list(settings.cell_size), settings.quant

    def frames():
        for index in range(count):
            frame = generate_frame(seed, index, synthetic)
            yield frame["frame_id"], frame["points"], frame["point_labels"]

    if seal_ckpt is None:
        teacher = StandInTeacher()
        logger.info("teacher: STAND-IN (superclass label embedding + class-dependent noise, "
                    "pcdet_seal.seal.standin; no Seal checkpoint given)")
        with tqdm(total=count, desc="Seal targets", unit="scene", disable=not progress) as bar:
            write_standin_cache(teacher, frames(), cache_dir, cell, quant, progress=bar)
        info = {"teacher": "stand-in", "teacher_id": teacher.teacher_id}
    else:
        from pcdet_seal.seal.checkpoint import check_teacher_width, load_teacher

        teacher, meta = load_teacher(seal_ckpt, device)
        logger.info("teacher: REAL Seal teacher (spconv Res16UNet34C) from %s", seal_ckpt)
        cfg = pre_cfg.MODEL.SEAL_TARGET
        check_teacher_width(teacher.arch.out_channels, int(cfg.get("NUM_FEATURES", 64)), seal_ckpt,
                            f"MODEL.SEAL_TARGET.NUM_FEATURES of {config_name}")
        writer = FeatureCacheWriter(cache_dir, CacheMeta(
            teacher_id=meta["source_file"], teacher_sha256=meta["source_sha256"], quant_mode=quant,
            cell_size=tuple(cell), feature_dim=teacher.arch.out_channels))
        # the same teacher -> cache path as the feature job (scripts/seal_features.py)
        fn = teacher_features(teacher, cell, quant, settings.feature_channel, settings.feature_scale,
                              z_range=settings.z_range if settings.mask_z else None, device=device)
        scenes = [Frame(frame_id, lambda points=points: points) for frame_id, points, _ in frames()]
        write_features(scenes, fn, writer, progress=progress)
        info = {"teacher": "seal", "teacher_id": meta["source_file"]}
    return info

"""Write Seal teacher features into the offline cache (one ``<frame_id>.npz`` per frame).

Frames come from an OpenPCDet dataset split (``--cfg``: a pre-training or dataset config; the
cloud exactly as the pre-training loader builds it, keyed by OpenPCDet's frame id), a folder of
``.npy`` / ``.bin`` point clouds (frame id = file stem) or a callable ``module:function``
returning ``[(frame_id, loader_or_points), ...]``. Resumes (skips frames already written),
shards with ``--shard i/N``, runs the teacher on GPU when there is one.

    cd $OPENPCDET_ROOT/tools   # where the config's _BASE_CONFIG_ and DATA_PATH resolve
    python <plugin>/scripts/seal_features.py --cfg <plugin>/cfgs/seal_pretrain.yaml --split train \\
        --ckpt seal_teacher_spconv.pth --out ../data/waymo/seal_cache --dtype int8 --shard 0/4

With ``--cfg``, ``MODEL.SEAL_TARGET`` of a pre-training config supplies what is not on the command
line: ``TEACHER_CKPT`` (--ckpt), ``CACHE_DIR`` (--out), ``CELL_SIZE`` (--cell-size; null = the
DSVT voxel size for cartesian cells, SLidR's for cylindrical ones — what training resolves),
``QUANT``, ``FEATURE_CHANNEL``, ``INTENSITY_SCALE``, ``TEACHER_ARCH`` and ``MASK_Z`` (crop z to the
config's point cloud range before the teacher).

    python scripts/seal_features.py --ckpt seal_teacher_spconv.pth --input lidar/ \\
        --out seal_cache/ --cell-size 0.32 0.32 0.1875 --dtype int8 --shard 0/4
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from pcdet_seal.seal.cache import (DTYPES, CacheMeta, FeatureCacheWriter, Frame,
                                   SealCacheError, parse_shard, write_features)
from pcdet_seal.seal.checkpoint import SealCheckpointError, check_teacher_width, load_teacher
from pcdet_seal.seal.targets import QUANT_MODES, teacher_features
from pcdet_seal.seal.teacher_settings import MissingCellSizeError, TeacherSettings, resolve_teacher_settings

logger = logging.getLogger("seal_features")


def _load_point_file(path: Path, bin_dims: int) -> np.ndarray:
    if path.suffix == ".npy":
        points = np.load(path, allow_pickle=False)
    else:
        raw = np.fromfile(path, dtype=np.float32)
        if raw.size % bin_dims:
            raise ValueError(f"{path}: {raw.size} float32 values are not a multiple of --bin-dims {bin_dims}")
        points = raw.reshape(-1, bin_dims)
    if points.ndim != 2 or points.shape[1] < 4:
        raise ValueError(f"{path}: expected (N, >=4) points, got shape {points.shape}")
    return points


def folder_frames(folder: Path, bin_dims: int) -> list[Frame]:
    """One frame per ``.npy`` / ``.bin`` file in ``folder``; frame id = file stem."""
    files = sorted(p for p in folder.iterdir() if p.suffix in (".npy", ".bin"))
    if not files:
        raise ValueError(f"{folder}: no .npy or .bin point clouds")
    return [Frame(p.stem, lambda p=p: _load_point_file(p, bin_dims)) for p in files]


def callable_frames(spec: str) -> list[Frame]:
    """Frames from ``module:function`` returning ``(frame_id, loader or (N, >=4) array)`` pairs."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"--source-fn must be module:function, got {spec!r}")
    items = getattr(importlib.import_module(module_name), attr)()
    frames = []
    for frame_id, item in items:
        load = item if callable(item) else (lambda item=item: np.asarray(item))
        frames.append(Frame(str(frame_id), load))
    return frames


def config_frames(args: argparse.Namespace) -> tuple[list[Frame], dict[str, Any]]:
    """Frames of ``--cfg``'s ``--split`` and the config's Seal settings (``MODEL.SEAL_TARGET``
    keys plus ``VOXEL_SIZE``, the dataset's voxel size)."""
    if not torch.cuda.is_available():
        from pcdet_seal.compat import enable_cpu_mode

        enable_cpu_mode()
    from pcdet.config import cfg_from_list

    from pcdet_seal.datasets.cache_frames import build_pretrain_dataset, dataset_config, dataset_frames
    from pcdet_seal.tools.config_network import load_config

    cfg = load_config(args.cfg)
    if args.set_cfgs:
        if len(args.set_cfgs) % 2:
            raise ValueError(f"--set takes KEY VALUE pairs, got {args.set_cfgs}")
        try:
            cfg_from_list(args.set_cfgs, cfg)
        except AssertionError as err:
            raise ValueError(f"--set {' '.join(args.set_cfgs)}: {err}") from err
    dataset = build_pretrain_dataset(dataset_config(cfg), args.split, class_names=cfg.get("CLASS_NAMES"),
                                     log=logger)
    frames = dataset_frames(dataset)
    if not frames:
        raise ValueError(f"{args.cfg}: the {args.split!r} split of {type(dataset).__name__} has no frames under "
                         f"{dataset.root_path.resolve()} (check DATA_PATH, DATA_SPLIT / INFO_PATH, and that "
                         "OpenPCDet's info files exist; run from OpenPCDet's tools/ or --set DATA_CONFIG.DATA_PATH)")
    logger.info("%s split %r: %d frames from %s", type(dataset).__name__, args.split, len(frames),
                dataset.root_path.resolve())
    settings = dict(cfg.get("MODEL", {}).get("SEAL_TARGET", None) or {})
    if dataset.voxel_size is not None:
        settings["VOXEL_SIZE"] = [float(v) for v in dataset.voxel_size]
    settings["POINT_CLOUD_RANGE"] = [float(v) for v in dataset.point_cloud_range]
    return frames, settings


def resolve_settings(args: argparse.Namespace, settings: dict[str, Any]) -> TeacherSettings:
    """Fill options left unset on the command line from a config's ``MODEL.SEAL_TARGET`` through
    the resolver training uses (:func:`resolve_teacher_settings`: a null ``CELL_SIZE`` is the voxel
    size for cartesian cells and SLidR's for cylindrical ones; ``MASK_Z`` crops z); raise naming
    what is still missing."""
    for attr, key in (("ckpt", "TEACHER_CKPT"), ("out", "CACHE_DIR")):
        if getattr(args, attr) is None and settings.get(key) not in (None, ""):
            setattr(args, attr, settings[key])
    merged = dict(settings)
    for attr, key in (("cell_size", "CELL_SIZE"), ("quant", "QUANT"), ("feature_channel", "FEATURE_CHANNEL"),
                      ("feature_scale", "INTENSITY_SCALE")):
        if getattr(args, attr) is not None:
            merged[key] = getattr(args, attr)
    missing = [(flag, key) for attr, flag, key in (("ckpt", "--ckpt", "TEACHER_CKPT"), ("out", "--out", "CACHE_DIR"))
               if getattr(args, attr) is None]
    try:
        resolved = resolve_teacher_settings(merged, settings.get("VOXEL_SIZE"), settings.get("POINT_CLOUD_RANGE"))
    except MissingCellSizeError:  # cartesian cells, no CELL_SIZE and no voxel size to default to
        missing.append(("--cell-size", "CELL_SIZE"))
    if missing:
        flag, key = missing[0]
        raise ValueError(f"{flag} is required" + (f" (or MODEL.SEAL_TARGET.{key} in --cfg)" if args.cfg else ""))
    args.ckpt, args.out = Path(args.ckpt), Path(args.out)
    args.cell_size, args.quant = list(resolved.cell_size), resolved.quant
    args.feature_channel, args.feature_scale = resolved.feature_channel, resolved.feature_scale
    return resolved


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cfg", type=Path,
                        help="OpenPCDet pre-training or dataset config (WaymoDataset, NuScenesDataset)")
    source.add_argument("--input", type=Path, help="folder of .npy / .bin point clouds")
    source.add_argument("--source-fn", help="module:function returning (frame_id, points) pairs")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"),
                        help="with --cfg: train (DATA_SPLIT/INFO_PATH .train) or val/test (their .test entry)")
    parser.add_argument("--set", dest="set_cfgs", nargs="+", default=None, metavar="KEY VAL",
                        help="with --cfg: override config keys, as tools/train.py --set")
    parser.add_argument("--ckpt", type=Path, default=None,
                        help="teacher: converted file (scripts/convert_seal_checkpoint.py) or ME checkpoint")
    parser.add_argument("--out", type=Path, default=None, help="cache folder")
    parser.add_argument("--cell-size", type=float, nargs=3, default=None, metavar=("S0", "S1", "S2"),
                        help="teacher cell size: the DSVT voxel size (reference), or 0.1 1 0.1 cylindrical")
    parser.add_argument("--quant", choices=QUANT_MODES, default=None, help="default cartesian")
    parser.add_argument("--dtype", choices=DTYPES, default="float16")
    parser.add_argument("--compress", action="store_true", help="zip-deflate each frame file")
    parser.add_argument("--shard", default="0/1", help="i/N: process every N-th frame from i")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1 ...")
    parser.add_argument("--bin-dims", type=int, default=4, help="float32 columns of .bin files")
    parser.add_argument("--feature-channel", type=int, default=None,
                        help="input feature column after x, y, z (default 3: intensity)")
    parser.add_argument("--feature-scale", type=float, default=None, help="multiply the feature (default 1)")
    parser.add_argument("--tanh-feature", action="store_true", help="apply tanh to the feature (Waymo)")
    parser.add_argument("--point-cloud-range", type=float, nargs=6, default=None,
                        metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"),
                        help="crop x, y (and z with --mask-z) before the teacher")
    parser.add_argument("--mask-z", action="store_true", help="also crop z to --point-cloud-range")
    parser.add_argument("--teacher-id", default=None, help="name in meta.json (default: source file name)")
    parser.add_argument("--trust-pickle", action="store_true", help="see convert_seal_checkpoint.py")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--verify", action="store_true",
                        help="load every frame already cached and write the unreadable ones again (listed)")
    parser.add_argument("--skip-bad-frames", action="store_true",
                        help="go on past frames whose points hold NaN/inf or absurd coordinates and list them "
                             "(default: stop at the first)")
    return parser


def main(argv: Optional[Sequence[str]] = None,
         frame_source: Optional[Callable[[argparse.Namespace], list[Frame]]] = None) -> int:
    """Entry point; ``frame_source`` (for callers) overrides ``--cfg`` / ``--input`` / ``--source-fn``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # spconv triggers a one-off torch.fx deprecation warning that is noise for users here
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
    try:
        shard = parse_shard(args.shard)
        settings: dict[str, Any] = {}
        if args.cfg is None and args.set_cfgs:
            raise ValueError("--set needs --cfg")
        if args.cfg is not None and (args.tanh_feature or args.point_cloud_range or args.mask_z):
            raise ValueError("--tanh-feature / --point-cloud-range / --mask-z do not apply with --cfg: the "
                             "dataset applies tanh and the range crop exactly as in training")
        if frame_source is not None:
            frames = frame_source(args)
        elif args.cfg is not None:
            frames, settings = config_frames(args)
        elif args.input is not None:
            frames = folder_frames(args.input, args.bin_dims)
        else:
            frames = callable_frames(args.source_fn)
        resolved = resolve_settings(args, settings)
        arch = resolved.arch
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                              else "cpu" if args.device == "auto" else args.device)
        teacher, tmeta = load_teacher(args.ckpt, device, arch=arch, trust_pickle=args.trust_pickle)
        if settings.get("NUM_FEATURES") is not None:
            check_teacher_width(teacher.arch.out_channels, int(settings["NUM_FEATURES"]), args.ckpt,
                                f"MODEL.SEAL_TARGET.NUM_FEATURES of {args.cfg}")
        meta = CacheMeta(teacher_id=args.teacher_id or tmeta["source_file"],
                         teacher_sha256=tmeta["source_sha256"], quant_mode=args.quant,
                         cell_size=tuple(args.cell_size), feature_dim=teacher.arch.out_channels,
                         dtype=args.dtype, compressed=args.compress)
        writer = FeatureCacheWriter(args.out, meta)
        crop = args.point_cloud_range
        if resolved.mask_z:  # the config's MASK_Z: crop z as training does (the dataset crops x, y)
            crop = settings["POINT_CLOUD_RANGE"]
        fn = teacher_features(teacher, args.cell_size, args.quant, args.feature_channel, args.feature_scale,
                              args.tanh_feature, xy_range=None if crop is None else [*crop[:2], *crop[3:5]],
                              z_range=[crop[2], crop[5]] if crop is not None and (args.mask_z or resolved.mask_z)
                              else None, device=device)
        logger.info("teacher %s on %s; %d frames in the source", meta.teacher_id, device, len(frames))
        stats = write_features(frames, fn, writer, shard, progress=not args.no_progress, verify=args.verify,
                               skip_bad_frames=args.skip_bad_frames)
    except (SealCacheError, SealCheckpointError, ValueError, KeyError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"shard {shard[0]}/{shard[1]}: {stats['written']} frames written, {stats['skipped']} "
          f"already cached, of {stats['shard_frames']}; cache {args.out}")
    for label, found in (("rewritten (--verify found them unreadable)", stats["broken_frames"]),
                         ("skipped (bad input, --skip-bad-frames)", stats["bad_frames"])):
        if found:
            print(f"{len(found)} frames {label}:")
            print("\n".join(f"  {reason}" for reason in found.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""BEV pictures (PNG) of one synthetic frame: Seal targets as PCA→RGB, k-means clusters, I2Mask
partition and mask, and — with a pre-training checkpoint — the model's reconstruction error of
the masked voxels (the analogue of the paper's Fig. D.1 heatmaps).

    python scripts/render.py --out pictures/                     # stand-in teacher, no pcdet needed
    python scripts/render.py --out pictures/ --ckpt pretrain.pth \\
        --cfg cfgs/demo/seal_pretrain_tiny.yaml --cache-dir seal_cache/   # + reconstruction error

Without ``--ckpt`` the targets come from the stand-in teacher (``pcdet_seal.seal.standin``),
voxelised on the config's grid; with it, from the detector's own forward pass in evaluation.
The scene seed defaults to the demo's val split (1), or — with ``--cache-dir``, which holds the
pre-training scenes — to the config's training seed (``DATA_CONFIG.SEED.train``), so the frame is
in the cache.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import yaml

from pcdet_seal import geometry, viz
from pcdet_seal.masking import I2Mask
from pcdet_seal.seal import targets as seal_targets
from pcdet_seal.seal.standin import StandInTeacher
from pcdet_seal.synthetic import SyntheticConfig, generate_frame

ROOT = Path(__file__).resolve().parents[3]  # the source checkout (cfgs/)
DEFAULT_CFG = ROOT / "cfgs" / "demo" / "seal_pretrain_tiny.yaml"
VAL_SEED = 1  # the demo's val split
logger = logging.getLogger("render")


def standin_pictures(frame: dict, teacher: StandInTeacher, voxel_size: Sequence[float],
                     pc_range: Sequence[float], masking_cfg: dict, seed: int = 0) -> viz.FramePictures:
    """Pictures of a frame from stand-in targets, voxelised on the DSVT grid (no model)."""
    pts = torch.from_numpy(np.ascontiguousarray(frame["points"][:, :3], dtype=np.float32))
    lo, size = torch.tensor(pc_range[:3]), torch.tensor(voxel_size)
    grid = torch.round((torch.tensor(pc_range[3:]) - lo) / size).long()
    vox, inside = geometry.grid_cells(torch.cat([pts.new_zeros(len(pts), 1), pts], 1), pc_range, voxel_size,
                                      grid.tolist())
    key = geometry.linearize(vox[inside].flip(1), torch.zeros(3, dtype=torch.long), grid.flip(0))  # (z, y, x)
    uniq, inverse = torch.unique(key, return_inverse=True)
    point2voxel = torch.full((len(pts),), -1, dtype=torch.long)
    point2voxel[inside] = inverse
    coords = torch.stack([torch.zeros_like(uniq), uniq // (grid[0] * grid[1]), (uniq // grid[0]) % grid[1],
                          uniq % grid[0]], 1)
    cells = seal_targets.teacher_cells(pts, torch.zeros(len(pts), dtype=torch.long), voxel_size)
    point_feats = teacher.point_features(torch.from_numpy(frame["point_labels"]), frame["frame_id"])
    count = torch.bincount(cells.point2cell, minlength=cells.coords.shape[0]).clamp(min=1)
    cell_feats = torch.zeros(cells.coords.shape[0], point_feats.shape[1]).index_add_(
        0, cells.point2cell, point_feats) / count[:, None]
    target, valid = seal_targets.voxel_targets(cell_feats, cells.point2cell, point2voxel, len(uniq))
    xy = geometry.voxel_centres(coords[valid], voxel_size, pc_range)[:, :2].cpu().numpy()
    return viz.i2mask_pictures(xy, target[valid],
                               I2Mask(masking_cfg), seed, title=f"frame {frame['frame_id']}, stand-in teacher")


@torch.no_grad()
def model_pictures(model: Any, batch: dict, title: str = "") -> viz.FramePictures:
    """Pictures of the first frame of ``batch`` (batch size 1) from a ``SealMAE`` in evaluation:
    its targets, I2Mask's decisions (re-run with the detector's evaluation seed, checked against
    the detector's own mask) and the per-voxel error of its reconstructed Seal features."""
    if int(batch["batch_size"]) != 1:
        raise ValueError(f"model_pictures needs a batch of one frame, got {batch['batch_size']}")
    model.eval()
    model(batch)
    target, valid, mask = batch["seal_target"], batch["seal_valid"], batch["mae_mask"]
    error = torch.full((target.shape[0],), float("nan"), device=target.device)
    masked = batch["mae_masked_index"]
    error[masked] = (batch["pred_seal"] - target[masked]).norm(dim=1)
    dataset = model.dataset
    xy = geometry.voxel_centres(batch["voxel_coords"][valid], dataset.voxel_size, dataset.point_cloud_range)[:, :2]
    xy = xy.cpu().numpy()
    pictures = viz.i2mask_pictures(xy, target[valid], model.masking.masker, model.masking.eval_seed, title=title)
    if not np.array_equal(pictures.mask, mask[valid].cpu().numpy()):
        logger.warning("re-run I2Mask differs from the detector's evaluation mask; pictures show the re-run")
    pictures.recon_error = error[valid].cpu().numpy()
    pictures.recon_error[~pictures.mask] = np.nan
    return pictures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("--cfg", type=Path, default=DEFAULT_CFG, help="pre-training config (grid, masking)")
    parser.add_argument("--seed", type=int, default=None,
                        help=f"scene seed (default {VAL_SEED}, the demo's val split; with --cache-dir the config's "
                             "training seed, whose scenes the cache holds)")
    parser.add_argument("--frame-index", type=int, default=0)
    parser.add_argument("--ckpt", type=Path, default=None, help="SealMAE checkpoint: adds the error picture")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="with --ckpt: Seal feature cache holding the frame (MODE cache)")
    parser.add_argument("--prefix", default="", help="file name prefix")
    return parser


def scene_seed(args: argparse.Namespace, train_seed: int) -> int:
    """``--seed``, else the training seed when reading a cache (its scenes), else the val seed."""
    if args.seed is not None:
        return args.seed
    return train_seed if args.cache_dir is not None else VAL_SEED


def render_checkpoint(args: argparse.Namespace) -> dict:
    """--ckpt path: build the detector in evaluation and draw from its forward pass."""
    if not torch.cuda.is_available():
        from pcdet_seal.compat import enable_cpu_mode

        enable_cpu_mode()
    from pcdet.datasets import build_dataloader
    from pcdet.models import build_network, load_data_to_gpu

    from pcdet_seal import registry
    from pcdet_seal.tools.config_network import load_config

    registry.register()
    cfg = load_config(args.cfg)
    cfg.DATA_CONFIG.SEED.test = scene_seed(args, int(cfg.DATA_CONFIG.SEED.train))
    cfg.DATA_CONFIG.NUM_FRAMES.test = args.frame_index + 1
    if args.cache_dir is not None:
        cfg.MODEL.SEAL_TARGET.MODE = "cache"
        cfg.MODEL.SEAL_TARGET.CACHE_DIR = str(args.cache_dir)
    ds, _, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=1, dist=False, workers=0,
                                logger=logger, training=False)
    model = build_network(cfg.MODEL, len(cfg.CLASS_NAMES), ds)
    model.load_params_from_file(str(args.ckpt), logger, to_cpu=not torch.cuda.is_available())
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    batch = ds.collate_batch([ds[args.frame_index]])
    load_data_to_gpu(batch)
    pictures = model_pictures(model, batch, title=f"frame {batch['frame_id'][0]}, {args.ckpt.name}")
    return viz.render(pictures, args.out, args.prefix)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.ckpt is not None:
        written = render_checkpoint(args)
    else:
        with open(args.cfg) as f:
            cfg = yaml.safe_load(f)
        data = cfg["DATA_CONFIG"]
        voxel = next(p["VOXEL_SIZE"] for p in data["DATA_PROCESSOR"] if "VOXEL_SIZE" in p)
        seed = scene_seed(args, int(data.get("SEED", {}).get("train", 0)))
        frame = generate_frame(seed, args.frame_index, SyntheticConfig.from_dict(data.get("SYNTHETIC")))
        pictures = standin_pictures(frame, StandInTeacher(), voxel, data["POINT_CLOUD_RANGE"],
                                    cfg["MODEL"]["MASKING"])
        written = viz.render(pictures, args.out, args.prefix)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""The whole method on synthetic scenes, in one command: Seal targets → PICTURE pre-training
(SealMAE, I2Mask) → CenterPoint-DSVT fine-tuning from the pre-trained weights AND from scratch
(identical recipe, seeds and data) → evaluation of both → pictures → a side-by-side table.

    python scripts/demo.py                       # CPU (pcdet-seal's CPU mode), about 10 minutes on 2 cores
    python scripts/demo.py --gpu                 # CUDA: more scenes and epochs
    python scripts/demo.py --seal-ckpt seal.pth  # real Seal teacher (spconv) instead of the stand-in
    python scripts/demo.py --quick               # smoke test: few scenes, 2 iterations per stage

Everything is written under ``--out``: the Seal feature cache, checkpoints, PNGs, ``demo_results.json``.
The scenes are procedural test data (``pcdet_seal.synthetic``), not a benchmark.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import logging
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN_CFG = ROOT / "cfgs" / "demo" / "seal_pretrain_tiny.yaml"
FINETUNE_CFG = ROOT / "cfgs" / "demo" / "finetune_tiny.yaml"
logger = logging.getLogger("demo")
LOOSE_IOU = 0.3

#: Scenes and epochs per mode: pre-training sees all train scenes without labels; fine-tuning
#: uses the labels of the first ``finetune_frames`` of them (the paper's label-scarce setting).
PRESETS = {
    "cpu": dict(pretrain_frames=48, finetune_frames=24, val_frames=12, pretrain_epochs=2, finetune_epochs=10),
    "gpu": dict(pretrain_frames=512, finetune_frames=128, val_frames=64, pretrain_epochs=10, finetune_epochs=20),
    "quick": dict(pretrain_frames=4, finetune_frames=4, val_frames=2, pretrain_epochs=1, finetune_epochs=1),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("pcdet_seal_demo"),
                        help="output folder (default ./pcdet_seal_demo); must be empty or new unless --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out: replaces its results, checkpoint and pictures (the "
                             "feature cache of the same teacher is reused)")
    parser.add_argument("--gpu", action="store_true", help="run on CUDA without CPU mode; larger preset")
    parser.add_argument("--quick", action="store_true", help="smoke test: 4 scenes, 2 iterations per stage")
    parser.add_argument("--seal-ckpt", type=Path, default=None,
                        help="real Seal teacher (converted or MinkowskiEngine checkpoint); default: stand-in teacher")
    for key in PRESETS["cpu"]:
        parser.add_argument("--" + key.replace("_", "-"), type=int, default=None, help="override the preset")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="data-loader workers")
    parser.add_argument("--seed", type=int, default=0, help="seed of model init, shuffling and masking")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default torch's; 1 is much faster on a CPU shared with other jobs)")
    parser.add_argument("--no-pictures", action="store_true")
    return parser


def render_module():
    """``scripts/render.py`` as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("pcdet_seal_render", ROOT / "scripts" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def configure(sizes: dict, cache_dir: Path):
    """The demo's pre-training and fine-tuning configs: the shipped tiny ones, resized, and the
    pre-training reading its Seal targets from the offline cache at ``cache_dir``."""
    from pcdet_seal.models.config_network import load_config

    pre, fine = load_config(PRETRAIN_CFG), load_config(FINETUNE_CFG)
    for cfg, frames, epochs in ((pre, "pretrain_frames", "pretrain_epochs"), (fine, "finetune_frames", "finetune_epochs")):
        cfg.DATA_CONFIG.NUM_FRAMES.train = int(sizes[frames])
        cfg.DATA_CONFIG.NUM_FRAMES.test = int(sizes["val_frames"])
        cfg.OPTIMIZATION.NUM_EPOCHS = int(sizes[epochs])
    pre.MODEL.SEAL_TARGET.MODE = "cache"
    pre.MODEL.SEAL_TARGET.CACHE_DIR = str(cache_dir)
    return pre, fine


def write_targets(pre_cfg, cache_dir: Path, seal_ckpt: Optional[Path], device: torch.device) -> dict:
    """Seal features of every pre-training scene into the offline cache; returns teacher info."""
    from pcdet_seal.seal.cache import CacheMeta, FeatureCacheWriter
    from pcdet_seal.seal.standin import StandInTeacher, write_standin_cache
    from pcdet_seal.seal.targets import teacher_input
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

    bar = tqdm(total=count, desc="Seal targets", unit="scene")
    if seal_ckpt is None:
        teacher = StandInTeacher()
        logger.info("teacher: STAND-IN (superclass label embedding + class-dependent noise, "
                    "pcdet_seal.seal.standin; no Seal checkpoint given)")
        write_standin_cache(teacher, frames(), cache_dir, cell, quant, progress=bar)
        info = {"teacher": "stand-in", "teacher_id": teacher.teacher_id}
    else:
        from pcdet_seal.seal.checkpoint import check_teacher_width, load_teacher

        teacher, meta = load_teacher(seal_ckpt, device)
        logger.info("teacher: REAL Seal teacher (spconv Res16UNet34C) from %s", seal_ckpt)
        cfg = pre_cfg.MODEL.SEAL_TARGET
        check_teacher_width(teacher.arch.out_channels, int(cfg.get("NUM_FEATURES", 64)), seal_ckpt,
                            f"MODEL.SEAL_TARGET.NUM_FEATURES of {PRETRAIN_CFG.name}")
        writer = FeatureCacheWriter(cache_dir, CacheMeta(
            teacher_id=meta["source_file"], teacher_sha256=meta["source_sha256"], quant_mode=quant,
            cell_size=tuple(cell), feature_dim=teacher.arch.out_channels))
        for frame_id, points, _ in frames():
            if not writer.has(frame_id):
                pts = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)).to(device)
                keep = settings.keep(pts[:, :3])
                pts = pts if keep is None else pts[keep]
                cells, feats = teacher_input(pts, torch.zeros(len(pts), dtype=torch.long, device=device), cell,
                                             quant, settings.feature_channel, settings.feature_scale)
                with torch.no_grad():
                    writer.write(frame_id, cells.coords[:, 1:].int(), teacher(cells.coords, feats))
            bar.update(1)
        info = {"teacher": "seal", "teacher_id": meta["source_file"]}
    bar.close()
    return info


def train(cfg, device: torch.device, seed: int, desc: str, batch_size: int, workers: int,
          pretrained: Optional[Path] = None, stats_keys: Sequence[str] = ()) -> tuple[Any, dict]:
    """OpenPCDet's training recipe in process: build_dataloader / build_network / optimizer and
    scheduler from pcdet_seal.optim (as tools/train.py gets them through the plugin), one-cycle
    steps, gradient clipping — as tools/train.py, without its side files."""
    from pcdet.datasets import build_dataloader
    from pcdet.models import build_network, model_fn_decorator

    from pcdet_seal.models.transfer import read_model_state, transfer_report
    from pcdet_seal.optim import build_optimizer_and_scheduler

    seed_everything(seed)
    train_set, loader, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=batch_size, dist=False,
                                            workers=workers, logger=logger, training=True, seed=seed)
    model = build_network(model_cfg=cfg.MODEL, num_class=len(cfg.CLASS_NAMES), dataset=train_set)
    info: dict = {}
    if pretrained is not None:
        quiet = logging.getLogger("demo.load_params")  # OpenPCDet logs every key it does not load
        quiet.setLevel(logging.WARNING)
        model.load_params_from_file(str(pretrained), quiet, to_cpu=device.type == "cpu")
        report = transfer_report(model, read_model_state(str(pretrained)))
        info["transfer"] = {p: f"{report.loaded[p]}/{report.total[p]}" for p in ("vfe", "backbone_3d")}
        logger.info("%s: loaded %s from %s (%s, as --pretrained_model does; the rest starts from scratch)",
                    desc, ", ".join(f"{p}.* {v}" for p, v in info["transfer"].items()), pretrained.name,
                    "complete" if report.complete() else "INCOMPLETE")
        if not report.complete():
            raise RuntimeError(f"{desc}: pre-trained weights did not load completely: {report.problems()}")
    model.to(device).train()
    optim_cfg = cfg.OPTIMIZATION
    epochs = int(optim_cfg.NUM_EPOCHS)
    optimizer, scheduler, _ = build_optimizer_and_scheduler(model, optim_cfg, total_iters_each_epoch=len(loader),
                                                            total_epochs=epochs)
    model_func = model_fn_decorator()
    history: dict[str, list] = {"loss": []}
    step = 0
    with tqdm(total=epochs * len(loader), desc=desc, unit="it") as bar:
        for epoch in range(epochs):
            for batch in loader:
                scheduler.step(step, epoch)
                optimizer.zero_grad()
                loss, tb_dict, _ = model_func(model, batch)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), optim_cfg.GRAD_NORM_CLIP)
                optimizer.step()
                step += 1
                history["loss"].append(float(loss.detach()))
                for key in stats_keys:
                    if key in tb_dict:
                        history.setdefault(key, []).append(float(tb_dict[key]))
                bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
                bar.update(1)
    info.update(iterations=step, epochs=epochs, frames=len(train_set), history=history)
    return model, info


@torch.no_grad()
def evaluate(model, cfg, device: torch.device, batch_size: int, workers: int, desc: str) -> dict:
    """Predict every val scene, score with the dataset's AP (BEV and 3-D per class)."""
    from pcdet.datasets import build_dataloader
    from pcdet.models import load_data_to_gpu

    test_set, loader, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=batch_size, dist=False,
                                           workers=workers, logger=logger, training=False)
    model.eval()
    annos = []
    for batch in tqdm(loader, desc=desc, unit="batch"):
        load_data_to_gpu(batch)
        pred_dicts, _ = model(batch)
        annos += test_set.generate_prediction_dicts(batch, pred_dicts, cfg.CLASS_NAMES)
    text, results = test_set.evaluation(annos, cfg.CLASS_NAMES)
    logger.info("%s, AP at the config's IoU thresholds:\n%s", desc, text)
    # A short fine-tune localises roughly before it localises well: also score at a loose IoU.
    strict = test_set.dataset_cfg.get("EVAL_IOU_THRESHOLDS")
    test_set.dataset_cfg.EVAL_IOU_THRESHOLDS = {name: LOOSE_IOU for name in cfg.CLASS_NAMES}
    try:
        text, loose = test_set.evaluation(annos, cfg.CLASS_NAMES)
    finally:
        test_set.dataset_cfg.EVAL_IOU_THRESHOLDS = strict
    logger.info("%s, AP at IoU %.1f:\n%s", desc, LOOSE_IOU, text)
    out = {k: float(v) for k, v in results.items()}
    out.update({f"{k}@{LOOSE_IOU}": float(v) for k, v in loose.items()})
    out["detections_per_frame"] = float(np.mean([len(a["name"]) for a in annos])) if annos else 0.0
    return out


def _mean(values: Sequence[float], tail: Optional[int] = None) -> float:
    values = list(values)[-tail:] if tail else list(values)
    return float(np.mean(values)) if values else float("nan")


def table(results: dict) -> str:
    """The side-by-side text table."""
    scratch, pre = results["finetune"]["scratch"], results["finetune"]["pretrained"]
    lines = [f"{'':<28}{'scratch':>10}{'pre-trained':>13}{'delta':>9}"]
    keys = [k for k in scratch["ap"] if "/" in k and "@" not in k] + ["mAP_BEV", "mAP_3D"]
    for key in keys + [f"{k}@{LOOSE_IOU}" for k in keys]:
        a, b = 100 * scratch["ap"][key], 100 * pre["ap"][key]
        delta = "" if math.isnan(a) or math.isnan(b) else f"{b - a:+9.2f}"
        label = "AP " + key.replace("/AP_", " ") if "/" in key else key.replace("_", " ")
        lines.append(f"{label.replace('@', ' @IoU '):<28}{a:>10.2f}{b:>13.2f}{delta:>9}")
    lines.append(f"{'detections per val frame':<28}{scratch['ap']['detections_per_frame']:>10.1f}"
                 f"{pre['ap']['detections_per_frame']:>13.1f}")
    lines.append(f"{'fine-tune loss (last 10 it)':<28}{scratch['final_loss']:>10.3f}{pre['final_loss']:>13.3f}")
    lines.append(f"{'fine-tune time [s]':<28}{scratch['seconds']:>10.1f}{pre['seconds']:>13.1f}")
    p = results["pretrain"]
    lines.append("")
    lines.append(f"pre-training ({results['teacher']['teacher']} teacher): {p['iterations']} it on "
                 f"{p['frames']} scenes, loss {p['first_loss']:.3f} -> {p['final_loss']:.3f} (coord "
                 f"{p['final_loss_coord']:.3f}, seal {p['final_loss_seal']:.4f}), realised mask ratio "
                 f"{p['mask_ratio']:.3f}, {p['seconds']:.1f} s")
    f = results["finetune"]["pretrained"]
    lines.append(f"fine-tuning: {f['iterations']} it on {f['frames']} labelled scenes each; "
                 f"eval on {results['sizes']['val_frames']} val scenes; transferred {f.get('transfer', {})}")
    lines.append("time per stage [s]: " + ", ".join(f"{k} {v:.1f}" for k, v in results["seconds"].items()))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.out.is_dir() and any(args.out.iterdir()) and not args.overwrite:
        print(f"error: --out {args.out} is not empty (a previous run's results?); choose another folder or pass "
              f"--overwrite to replace them", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.cuda.amp deprecations in spconv/pcdet
    warnings.filterwarnings("ignore", message=".*pin_memory.*")  # OpenPCDet's loaders pin memory, also on CPU
    if args.gpu and not torch.cuda.is_available():
        print("error: --gpu given but torch sees no CUDA device", file=sys.stderr)
        return 2
    if not args.gpu:
        from pcdet_seal.compat import enable_cpu_mode

        enable_cpu_mode()
    device = torch.device("cuda" if args.gpu else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    from pcdet_seal import registry

    registry.register()
    preset = "quick" if args.quick else "gpu" if args.gpu else "cpu"
    sizes = dict(PRESETS[preset])
    for key in sizes:
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    if sizes["finetune_frames"] > sizes["pretrain_frames"]:
        sizes["pretrain_frames"] = sizes["finetune_frames"]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = out / ("seal_cache_standin" if args.seal_ckpt is None else "seal_cache_" + args.seal_ckpt.stem)
    logger.info("demo (%s preset, %s): %s; output %s", preset, device, sizes, out)
    seconds: dict[str, float] = {}
    wall = time.perf_counter()

    start = time.perf_counter()
    pre_cfg, fine_cfg = configure(sizes, cache_dir)
    from pcdet_seal.seal.checkpoint import SealCheckpointError

    try:
        teacher = write_targets(pre_cfg, cache_dir, args.seal_ckpt, device)
    except SealCheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    seconds["scenes + targets"] = time.perf_counter() - start

    start = time.perf_counter()
    pre_model, pre_info = train(pre_cfg, device, args.seed, "pre-train (SealMAE)", args.batch_size, args.workers,
                                stats_keys=("loss_coord", "loss_seal", "mask_ratio"))
    ckpt = out / "pretrain_checkpoint.pth"
    torch.save({"model_state": {k: v.cpu() for k, v in pre_model.state_dict().items()},
                "epoch": pre_info["epochs"]}, ckpt)
    seconds["pre-train"] = time.perf_counter() - start
    hist = pre_info["history"]
    tail = max(1, min(10, len(hist["loss"]) // 2))
    pretrain = {"iterations": pre_info["iterations"], "frames": pre_info["frames"], "epochs": pre_info["epochs"],
                "first_loss": _mean(hist["loss"][:tail]), "final_loss": _mean(hist["loss"], tail),
                "final_loss_coord": _mean(hist.get("loss_coord", []), tail),
                "final_loss_seal": _mean(hist.get("loss_seal", []), tail),
                "mask_ratio": _mean(hist.get("mask_ratio", [])), "seconds": seconds["pre-train"],
                "checkpoint": str(ckpt), "history": hist}
    logger.info("pre-training: realised I2Mask mask ratio %.3f (mean over %d batches)", pretrain["mask_ratio"],
                len(hist.get("mask_ratio", [])))

    finetune = {}
    for name, weights in (("scratch", None), ("pretrained", ckpt)):
        start = time.perf_counter()
        model, info = train(fine_cfg, device, args.seed, f"fine-tune ({name})", args.batch_size, args.workers,
                            pretrained=weights)
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        ap = evaluate(model, fine_cfg, device, args.batch_size, args.workers, f"evaluate ({name})")
        seconds[f"fine-tune {name}"] = train_seconds
        seconds[f"evaluate {name}"] = time.perf_counter() - start
        loss = info["history"]["loss"]
        finetune[name] = {"ap": ap, "iterations": info["iterations"], "frames": info["frames"],
                          "final_loss": _mean(loss, min(10, len(loss))), "seconds": train_seconds,
                          "history": info["history"], **({"transfer": info["transfer"]} if "transfer" in info else {})}
        del model

    pictures = {}
    if not args.no_pictures:
        start = time.perf_counter()
        render = render_module()
        from pcdet.datasets import build_dataloader
        from pcdet.models import load_data_to_gpu

        pic_cfg = copy.deepcopy(pre_cfg)
        pic_cfg.DATA_CONFIG.NUM_FRAMES.test = 1
        pic_cfg.DATA_CONFIG.SEED.test = pic_cfg.DATA_CONFIG.SEED.train  # a pre-training scene: it is in the cache
        ds, _, _ = build_dataloader(pic_cfg.DATA_CONFIG, pic_cfg.CLASS_NAMES, batch_size=1, dist=False, workers=0,
                                    logger=logger, training=False)
        pre_model.dataset = ds
        batch = ds.collate_batch([ds[0]])
        load_data_to_gpu(batch)
        data = render.model_pictures(pre_model, batch, title=f"frame {batch['frame_id'][0]}, "
                                                             f"{teacher['teacher']} teacher, after pre-training")
        pictures = {k: str(v) for k, v in render.viz.render(data, out / "pictures").items()}
        seconds["pictures"] = time.perf_counter() - start

    seconds["total"] = time.perf_counter() - wall
    results = {"preset": preset, "device": str(device), "sizes": sizes, "teacher": teacher, "seed": args.seed,
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                           "torch": torch.__version__,
                           "cuda": torch.cuda.get_device_name(0) if args.gpu else None},
               "pretrain": pretrain, "finetune": finetune, "pictures": pictures, "seconds": seconds}
    text = table(results)
    results["table"] = text
    (out / "demo_results.json").write_text(json.dumps(results, indent=2))
    print("\n" + text)
    print(f"\nwrote {out / 'demo_results.json'}" + (f" and {len(pictures)} pictures in {out / 'pictures'}"
                                                    if pictures else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

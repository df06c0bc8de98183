"""The whole method on synthetic scenes, in one command: Seal targets → PICTURE pre-training
(SealMAE, I2Mask) → CenterPoint-DSVT fine-tuning from the pre-trained weights AND from scratch
(identical recipe, seeds and data) → evaluation of both → pictures → a side-by-side table headed
by the measured gain. It runs the label-scarce cell of ``bench/study.py``'s grid (one seed) through
the study's own code; next to its gain it prints the spread of the study committed in
``bench/results/deterministic/study.json`` when that study has the same config hash, and that
study's own gain for the demo's seed (training is deterministic, so the same seed on the same
kind of CPU should give the same gain), else that the spread was not measured for this setting.

    python scripts/demo.py                       # CPU (pcdet-seal's CPU mode); time: see README
    python scripts/demo.py --gpu                 # CUDA: more scenes and epochs
    python scripts/demo.py --seal-ckpt seal.pth  # real Seal teacher (spconv) instead of the stand-in
    python scripts/demo.py --quick               # smoke test: few scenes, 2 iterations per stage
    python scripts/demo.py --arm picture_norm    # another pre-training arm of the study (default: picture)

Everything is written under ``--out``: the Seal feature cache, checkpoints, PNGs, ``demo_results.json``.
The scenes are procedural test data (``pcdet_seal.synthetic``), not a benchmark.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch

from pcdet_seal.tools.training import LOOSE_IOU

ROOT = Path(__file__).resolve().parents[3]  # the source checkout (bench/results/)
logger = logging.getLogger("demo")
#: The committed study whose spread the demo prints next to its own gain (same cell, same config hash).
COMMITTED_STUDY = ROOT / "bench" / "results" / "deterministic" / "study.json"


def presets() -> dict:
    """Study grids per mode: ``cpu`` is the study's default grid (the demo runs its label-scarce
    cell), ``gpu`` a larger one, ``quick`` the study's smoke grid."""
    from pcdet_seal.tools.study import FULL, QUICK_GRID, SMALL, Grid

    return {"cpu": Grid(), "quick": QUICK_GRID,
            "gpu": Grid(pretrain_frames=512, pretrain_epochs=10, pool_frames=512, budgets={SMALL: 0.125, FULL: 1.0},
                        finetune_iters={SMALL: 1024, FULL: 2048}, val_frames=64)}


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
    parser.add_argument("--seed", type=int, default=0,
                        help="study seed: model init, data order and masking of pre-training and both fine-tunings")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default torch's; 1 is much faster on a CPU shared with other jobs)")
    parser.add_argument("--arm", default="picture", choices=pretraining_arms(),
                        help="the study arm to pre-train (default: picture, the method as published)")
    parser.add_argument("--no-pictures", action="store_true")
    return parser


def pretraining_arms() -> list[str]:
    """The study's arms that pre-train (every arm but ``scratch``)."""
    from pcdet_seal.tools.study import ARMS

    return sorted(name for name, arm in ARMS.items() if arm.overrides is not None)


def committed_delta(config_hash: str, budget: float, arm: str = "picture",
                    path: Path = COMMITTED_STUDY, seed: Optional[int] = None) -> Optional[dict]:
    """The committed study's ``arm − scratch`` mAP BEV (mean, std, n) for the demo's cell, plus
    ``seed_delta``, that study's own difference for ``seed`` (None when it did not run that seed),
    or None when no committed study has the same config hash (other grid, configs or teacher) and
    the same definition of ``arm`` and ``scratch`` (the hash leaves arms out: each study records its own)."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("config_hash") != config_hash:
        return None
    from pcdet_seal.tools.study import ARMS, arm_definition, summarize

    recorded = data.get("arms", {})
    if any(name not in recorded or arm_definition(recorded[name]) != arm_definition(ARMS[name])
           for name in ("scratch", arm)):
        return None
    summary = data.get("summary") or summarize(data)
    row = next((r for r in summary["detection"] if r["arm"] == arm and r["budget"] == budget), None)
    if not row or not row["delta_map_bev_vs_scratch"]:
        return None
    cell = {r["arm"]: r["map_bev"] for r in data["runs"]
            if r["seed"] == seed and r["budget"] == budget and r["arm"] in ("scratch", arm)}
    seed_delta = cell[arm] - cell["scratch"] if len(cell) == 2 and None not in cell.values() else None
    return {**row["delta_map_bev_vs_scratch"], "seed": seed, "seed_delta": seed_delta}


def table(results: dict) -> str:
    """The side-by-side text table, headed by the measured gain."""
    scratch, pre = results["finetune"]["scratch"], results["finetune"]["pretrained"]
    spread = results["committed_delta"]
    if spread and spread["n"] >= 2:
        reference = (f"the committed study measured {spread['mean']:+.2f} ± {spread['std']:.2f} (std over "
                     f"{spread['n']} seeds) for this cell")
        if spread.get("seed_delta") is not None:
            reference += f", {spread['seed_delta']:+.2f} for seed {spread['seed']}"
    else:
        reference = "spread not measured for this setting"
    if scratch["map_bev"] is None or pre["map_bev"] is None:
        gain = "n/a (a class without val boxes)"
    else:
        gain = f"{pre['map_bev'] - scratch['map_bev']:+.2f}"
    lines = [f"pre-trained ({results['arm']}) − scratch: {gain} mAP BEV (% points, one seed; {reference})", "",
             f"{'':<28}{'scratch':>10}{'pre-trained':>13}{'delta':>9}"]
    rows = [(f"AP {c} {k.upper() if k == '3d' else 'BEV'}", scratch[ap][c][k], pre[ap][c][k], ap)
            for ap in ("ap", "ap_loose") for c in scratch["ap"] for k in ("bev", "3d")]
    rows[len(scratch["ap"]) * 2:len(scratch["ap"]) * 2] = [("mAP BEV", scratch["map_bev"], pre["map_bev"], "ap"),
                                                           ("mAP 3D", scratch["map_3d"], pre["map_3d"], "ap")]
    rows += [("mAP BEV", scratch["map_bev_loose"], pre["map_bev_loose"], "ap_loose"),
             ("mAP 3D", scratch["map_3d_loose"], pre["map_3d_loose"], "ap_loose")]
    for label, a, b, kind in rows:
        label += f" @IoU {LOOSE_IOU}" if kind == "ap_loose" else ""
        a, b = (float("nan") if v is None else v for v in (a, b))
        delta = "" if math.isnan(a) or math.isnan(b) else f"{b - a:+9.2f}"
        lines.append(f"{label:<28}{a:>10.2f}{b:>13.2f}{delta:>9}")
    lines.append(f"{'detections per val frame':<28}{scratch['detections_per_frame']:>10.1f}"
                 f"{pre['detections_per_frame']:>13.1f}")
    lines.append(f"{'fine-tune loss (last 10 it)':<28}{scratch['finetune_loss_last']:>10.3f}"
                 f"{pre['finetune_loss_last']:>13.3f}")
    lines.append(f"{'fine-tune + eval time [s]':<28}{scratch['seconds']:>10.1f}{pre['seconds']:>13.1f}")
    p = results["pretrain"]
    lines.append("")
    lines.append(f"pre-training ({results['teacher']['teacher']} teacher): {p['iterations']} it on "
                 f"{results['grid']['pretrain_frames']} scenes, loss {p['loss_first']:.3f} -> {p['loss_last']:.3f} "
                 f"(coord {p['loss_coord_last']:.3f}, seal {p['loss_seal_last']:.4f}; predicting the mean target gives "
                 f"seal {p['loss_seal_predict_mean_last']:.4f}), realised mask ratio {p['mask_ratio']:.3f}, "
                 f"{p['seconds']:.1f} s")
    lines.append(f"fine-tuning: {pre['finetune_iters']} it on {pre['labelled_frames']} labelled scenes each; eval on "
                 f"{results['grid']['val_frames']} val scenes; transferred {pre.get('transfer', {})}")
    lines.append("time per stage [s]: " + ", ".join(f"{k} {v:.1f}" for k, v in results["seconds"].items()))
    return "\n".join(lines)


def pictures(study, pre: dict, out: Path, teacher: str) -> dict[str, str]:
    """The method's pictures of the first pre-training scene from the pre-trained SealMAE of the
    pre-training row ``pre`` (its arm, mask ratio and checkpoint)."""
    from pcdet.datasets import build_dataloader
    from pcdet.models import build_network, load_data_to_gpu

    from pcdet_seal.tools.cli import render
    from pcdet_seal.tools.study import ARMS, pretrain_config

    cfg = pretrain_config(study.base_pre, study.grid, ARMS[pre["arm"]], study.cache_dir(),
                          pre["overrides"].get("MODEL.MASKING.MASK_RATIO"))
    cfg.DATA_CONFIG.NUM_FRAMES.test = 1
    cfg.DATA_CONFIG.SEED.test = cfg.DATA_CONFIG.SEED.train  # a pre-training scene: it is in the cache
    ds, _, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=1, dist=False, workers=0,
                                logger=logger, training=False)
    model = build_network(model_cfg=cfg.MODEL, num_class=len(cfg.CLASS_NAMES), dataset=ds)
    model.load_state_dict(torch.load(pre["checkpoint"], map_location="cpu", weights_only=True)["model_state"])
    model.to(study.device)
    batch = ds.collate_batch([ds[0]])
    load_data_to_gpu(batch)
    data = render.model_pictures(model, batch, title=f"frame {batch['frame_id'][0]}, {teacher} teacher, "
                                                     f"after pre-training")
    return {k: str(v) for k, v in render.viz.render(data, out / "pictures").items()}


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
    from pcdet_seal.tools.startup import NoCudaDevice, prepare_device

    try:
        device = prepare_device(args.gpu)
    except NoCudaDevice as error:
        print(error, file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    from pcdet_seal.seal.cache import SealCacheError
    from pcdet_seal.seal.checkpoint import SealCheckpointError
    from pcdet_seal.tools.study import SMALL, Study, StudySetupError, write_atomic

    preset = "quick" if args.quick else "gpu" if args.gpu else "cpu"
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / "study.json", out / "demo_results.json"):  # --overwrite: results are replaced
        stale.unlink(missing_ok=True)
    wall = time.perf_counter()
    try:
        study = Study(out, seeds=[args.seed], arms=["scratch", args.arm], grid=presets()[preset], budgets=[SMALL],
                      probes=False, device=device, seal_ckpt=args.seal_ckpt, replace_stale_cache=args.overwrite)
        logger.info("demo (%s preset, %s): the label-scarce cell of the study grid (%s of the labelled pool), "
                    "%s vs scratch, seed %d; output %s", preset, device, study.grid.budgets[SMALL], args.arm, args.seed,
                    out)
        data = study.run(log=logger.info)
    except (SealCheckpointError, SealCacheError, StudySetupError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    budget = study.grid.budgets[SMALL]
    runs = {r["arm"]: r for r in data["runs"] if r["seed"] == args.seed and r["budget"] == budget}
    pre = next(r for r in data["pretrain"] if r["arm"] == args.arm and r["seed"] == args.seed)
    logger.info("pre-training: realised mask ratio %.3f", pre["mask_ratio"])
    seconds = {"pre-train": pre["seconds"], "fine-tune + eval scratch": runs["scratch"]["seconds"],
               "fine-tune + eval pretrained": runs[args.arm]["seconds"]}
    shown: dict[str, str] = {}
    if not args.no_pictures:
        start = time.perf_counter()
        shown = pictures(study, pre, out, data["teacher"]["teacher"])
        seconds["pictures"] = time.perf_counter() - start
    seconds["total"] = time.perf_counter() - wall
    results = {"preset": preset, "device": str(device), "grid": data["grid"], "config_hash": data["config_hash"],
               "teacher": data["teacher"], "seed": args.seed, "machine": data["machine"], "arm": args.arm,
               "pretrain": pre, "finetune": {"scratch": runs["scratch"], "pretrained": runs[args.arm]},
               "committed_delta": committed_delta(data["config_hash"], budget, args.arm, seed=args.seed),
               "pictures": shown, "seconds": seconds}
    text = table(results)
    results["table"] = text
    write_atomic(out / "demo_results.json", json.dumps(results, indent=2))
    print("\n" + text)
    print(f"\nwrote {out / 'demo_results.json'}" + (f" and {len(shown)} pictures in {out / 'pictures'}"
                                                    if shown else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

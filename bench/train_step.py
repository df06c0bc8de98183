#!/usr/bin/env python
"""Seconds per training iteration of the study's tiny configs, data loading included, as the study
and the demo run them (``pcdet_seal.tools.training.train_model``, batch 2, the study's scenes).

Times fine-tuning (``finetune_tiny.yaml``, labelled pool) and pre-training (``seal_pretrain_tiny.yaml``,
``picture`` arm, the stand-in feature cache) with the synthetic dataset's frame cache on (the
default) and off (``DATA_CONFIG.FRAME_CACHE_SIZE 0``), interleaved in one process so that the
ratios compare like with like. Each run visits its frames ``--epochs`` times, as training does.

    python bench/train_step.py                      # 2 rounds x 4 runs, about 5 min on 2 CPU cores
    python bench/train_step.py --frames 16 --epochs 3 --rounds 1
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path


def time_run(cfg, device, frames: int, epochs: int, cache: bool) -> float:
    """Seconds per iteration of one ``train_model`` call (network build excluded, first iteration excluded)."""
    import copy

    from pcdet_seal.tools import training

    cfg = copy.deepcopy(cfg)
    cfg.DATA_CONFIG.NUM_FRAMES.train = frames
    cfg.DATA_CONFIG.FRAME_CACHE_SIZE = frames if cache else 0
    cfg.OPTIMIZATION.NUM_EPOCHS = epochs
    stamps: list[float] = []
    original = training.tqdm

    class Clock(original):  # one time stamp per finished iteration
        def update(self, n=1):
            stamps.append(time.perf_counter())
            return super().update(n)

    training.tqdm = Clock
    try:
        training.train_model(cfg, device, 0, "bench", 2, progress=False)
    finally:
        training.tqdm = original
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=24, help="scenes per run (default 24)")
    parser.add_argument("--epochs", type=int, default=3, help="passes over them (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    from pcdet_seal.tools.startup import prepare_device

    device = prepare_device(False)
    import os

    import torch

    from pcdet_seal.tools import study

    pre, fine = study.load_base_configs()
    grid = study.Grid()
    with tempfile.TemporaryDirectory() as tmp:
        s = study.Study(Path(tmp), seeds=[0], arms=["picture"], grid=grid, device=device, progress=False)
        cache_dir = s.cache_dir()
        s.write_cache(cache_dir)
        configs = {"fine-tuning": study.finetune_config(fine, grid, study.FULL),
                   "pre-training": study.pretrain_config(pre, grid, study.ARMS["picture"], cache_dir, None)}
        results: dict[tuple[str, bool], list[float]] = {}
        for _ in range(args.rounds):
            for name, cfg in configs.items():
                for cache in (True, False):
                    results.setdefault((name, cache), []).append(time_run(cfg, device, args.frames, args.epochs, cache))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average at the end "
          f"{os.getloadavg()[0]:.2f}; {args.frames} scenes x {args.epochs} epochs per run, {args.rounds} rounds")
    print("| step | frame cache | s / iteration (median) | runs | cache off / on |")
    print("|---|---|---|---|---|")
    for name in configs:
        on, off = statistics.median(results[(name, True)]), statistics.median(results[(name, False)])
        runs_on, runs_off = (", ".join(f"{v:.3f}" for v in results[(name, cache)]) for cache in (True, False))
        print(f"| {name} | on | {on:.3f} | {runs_on} | {off / on:.2f} |")
        print(f"| {name} | off | {off:.3f} | {runs_off} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Does pre-training make a better detector? The paper's comparisons in miniature, with error bars.

    python bench/study.py --out study_out                    # default grid, 3 seeds (time: bench/RESULTS.md)
    python bench/study.py --out study_out --arms picture_short picture_long   # Table D.1 arms
    python bench/study.py --out study_out --optimizer stock  # OpenPCDet's adam_onecycle for every arm
    python bench/study.py --out study_1200 --arms scratch picture --budgets full --finetune-iters 1200
    python bench/study.py --out /tmp/q --quick               # a reduced grid in minutes (smoke test)

Arms (``pcdet_seal.tools.study.ARMS``, each a set of config overrides): scratch, coord (coordinates
only, RandomMask at picture's ratio: the teacher-free control), seal (Seal targets only), picture
(both, I2Mask: the method), picture_random (RandomMask), picture_short / picture_long (0.5x / 2x
pre-training). The Seal targets come from the stand-in teacher, which carries each point's
superclass by construction: arms seal, picture and picture_random measure that the pipeline
carries a teacher's semantics into the encoder and on into detection, not the value of a real
Seal teacher. Results go to ``<out>/study.json``, ``study.md`` and ``study.png``; rerunning with
the same settings resumes where it stopped.
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch


def build_parser() -> argparse.ArgumentParser:
    from pcdet_seal.tools.study import ARMS, DEFAULT_ARMS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (resumed if it holds the same study)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="study seeds (default 0 1 2)")
    parser.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), choices=sorted(ARMS),
                        help=f"arms to run (default {' '.join(DEFAULT_ARMS)})")
    parser.add_argument("--optimizer", choices=("all", "stock"), default="all",
                        help="all: adamw_onecycle over every parameter (the plugin's configs); stock: OpenPCDet's "
                             "adam_onecycle, which leaves attention in-projections untrained")
    parser.add_argument("--quick", action="store_true", help="reduced grid, a few iterations per unit (minutes)")
    parser.add_argument("--finetune-iters", type=int, default=None, metavar="N",
                        help="fine-tuning iterations at every budget, for every arm (default: the grid's 480; a "
                             "whole number of epochs at each budget, e.g. 1200). Another study: another config hash")
    parser.add_argument("--budgets", nargs="+", choices=("small", "full"), default=None,
                        help="fine-tune only at these label budgets (default: the grid's)")
    detection = parser.add_mutually_exclusive_group()
    detection.add_argument("--all-detection", action="store_true",
                           help="fine-tune every arm at every budget (default: the study's priority grid)")
    detection.add_argument("--no-detection", action="store_true",
                           help="pre-training and linear probes only (no fine-tuning); rerun without it to add them")
    parser.add_argument("--report", action="store_true",
                        help="only write study.md and study.png from the study.json in --out (e.g. of an interrupted "
                             "study; rows not run are absent from the table); runs nothing")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--gpu", action="store_true", help="run on CUDA")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from pcdet_seal.tools.startup import prepare_device

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.finetune_iters is not None and (args.quick or args.finetune_iters < 1):
        parser.error("--finetune-iters takes a positive number and applies to the default grid, not --quick")
    if args.report:
        return report(args.out)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")
    device = prepare_device(args.gpu)
    if args.threads:
        torch.set_num_threads(args.threads)
    from pcdet_seal.seal.cache import SealCacheError
    from pcdet_seal.tools.study import QUICK_GRID, Grid, Study, StudySetupError, chart, markdown_table, write_atomic

    try:
        grid = QUICK_GRID if args.quick else Grid()
        if args.finetune_iters is not None:
            grid = grid.with_finetune_iters(args.finetune_iters)
        study = Study(args.out, seeds=args.seeds, arms=args.arms, grid=grid,
                      optimizer=args.optimizer, all_detection=args.all_detection, device=device,
                      budgets=[] if args.no_detection else args.budgets, progress=not args.no_progress)
        data = study.run()
    except (StudySetupError, SealCacheError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = markdown_table(data)
    write_atomic(study.out / "study.md", table)
    chart(data, study.out / "study.png")
    print(table)
    print(f"wrote {study.out / 'study.json'}, study.md and study.png")
    return 0


def report(out: Path) -> int:
    """study.md and study.png from ``out/study.json`` as it stands (summary recomputed)."""
    import json

    from pcdet_seal.tools.study import chart, markdown_table, summarize, write_atomic

    path = Path(out) / "study.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        print(f"error: {path}: no readable study ({error})", file=sys.stderr)
        return 2
    data["summary"] = summarize(data)
    table = markdown_table(data)
    write_atomic(Path(out) / "study.md", table)
    chart(data, Path(out) / "study.png")
    print(table)
    print(f"wrote {Path(out) / 'study.md'} and study.png from {path} (nothing run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

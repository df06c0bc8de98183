"""Check that a pre-training checkpoint transfers into a fine-tuning config: build the fine-tuning
network, load the checkpoint exactly as ``tools/train.py --pretrained_model`` does, print
loaded/total tensors per module prefix, and exit 1 unless 100 % of ``vfe.*`` and ``backbone_3d.*`` load.

    python scripts/check_transfer.py output/.../ckpt/checkpoint_epoch_30.pth cfgs/finetune/dsvt_voxel_waymo.yaml

Run it where the config's ``_BASE_CONFIG_`` resolves (OpenPCDet's ``tools/``; it falls back to
that folder by itself). Without a GPU it switches on pcdet-seal's CPU mode. Exit status: 0 complete,
1 incomplete transfer, 2 unreadable checkpoint or config, or any other failure.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pretrain_ckpt", help="OpenPCDet checkpoint of the pre-training (checkpoint_epoch_N.pth)")
    parser.add_argument("finetune_cfg", help="fine-tuning config (e.g. cfgs/finetune/dsvt_voxel_waymo.yaml)")
    parser.add_argument("--require", nargs="+", default=None, metavar="PREFIX",
                        help="prefixes that must load completely (default: vfe backbone_3d)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import torch

    if not torch.cuda.is_available():
        from pcdet_seal.compat import enable_cpu_mode

        enable_cpu_mode()
    from pcdet_seal import registry
    from pcdet_seal.tools.config_network import build_network_from_config, load_config
    from pcdet_seal.tools.transfer import (REQUIRED_PREFIXES, CheckpointFormatError, read_model_state,
                                           transfer_report)

    registry.register()
    required = tuple(args.require or REQUIRED_PREFIXES)
    try:
        cfg = load_config(args.finetune_cfg)
        model = build_network_from_config(cfg)
    except (OSError, KeyError) as err:
        print(f"error: cannot build the network of {args.finetune_cfg}: {err}", file=sys.stderr)
        return 2
    try:
        state = read_model_state(args.pretrain_ckpt)
    except CheckpointFormatError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = transfer_report(model, state)
    print(f"{args.pretrain_ckpt} -> {cfg.MODEL.NAME} ({args.finetune_cfg})")
    print("\n".join(report.lines(required)))
    if report.complete(required):
        print(f"OK: 100 % of {', '.join(p + '.*' for p in required)} load")
        return 0
    if report.non_finite:
        print(f"FAIL: {len(report.non_finite)} checkpoint tensors hold NaN/inf (fine-tuning would start from "
              "them):", file=sys.stderr)
    else:
        print(f"FAIL: not every tensor of {', '.join(p + '.*' for p in required)} loads "
              "(--pretrained_model would silently leave them at initialisation):", file=sys.stderr)
    for line in report.problems(required):
        print(f"  {line}", file=sys.stderr)
    return 1


def console_main() -> int:
    """``main()`` for the command line (``pcdet-seal-check-transfer``, ``scripts/check_transfer.py``):
    a crash prints its traceback and exits 2, since exit 1 means "incomplete transfer"."""
    try:
        return main()
    except Exception:  # a crash must not read as exit 1 ("incomplete transfer")
        import traceback

        traceback.print_exc()
        return 2


if __name__ == "__main__":
    sys.exit(console_main())

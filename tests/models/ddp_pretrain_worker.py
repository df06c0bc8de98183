"""One rank of the two-process DDP pre-training check (run by tests/models/test_ddp.py).

SealMAE in ``DistributedDataParallel`` (gloo, CPU, no ``device_ids``, no
``find_unused_parameters``), data from OpenPCDet's ``build_dataloader(dist=True)``, Seal targets
read from an offline cache the test wrote beforehand. At step ``--nan-step`` rank ``--nan-rank``
gets a NaN elongation in its batch. Writes ``rank<r>.pt``: parameters, per-step frame ids and
masked-voxel counts, and the message of the error that stopped training (if any).

    RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 python ddp_pretrain_worker.py ...
"""
from __future__ import annotations

import argparse
import datetime
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers_models


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, required=True)
    parser.add_argument("--cell", type=float, nargs=3, required=True)
    parser.add_argument("--nan-step", type=int, default=-1)
    parser.add_argument("--nan-rank", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)

    from pcdet_seal.compat import enable_cpu_mode

    enable_cpu_mode()
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
    rank = dist.get_rank()

    from helpers_models import TINY_PRETRAIN, load, small_frames
    from pcdet.datasets import build_dataloader
    from pcdet.models import build_network, model_fn_decorator

    from pcdet_seal import registry
    from pcdet_seal.models.nonfinite import NonFiniteLossError
    from pcdet_seal.optim import build_optimizer_and_scheduler

    registry.register()
    cfg = small_frames(load(TINY_PRETRAIN))
    cfg.DATA_CONFIG.NUM_FRAMES.train = args.frames
    cfg.MODEL.SEAL_TARGET.update({"MODE": "cache", "CACHE_DIR": args.cache_dir, "CELL_SIZE": list(args.cell)})
    train_set, loader, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=2, dist=True, workers=0,
                                            logger=logging.getLogger("ddp"), training=True, seed=0)
    torch.manual_seed(rank)  # different initialisations: DDP must broadcast rank 0's
    model = build_network(model_cfg=cfg.MODEL, num_class=len(cfg.CLASS_NAMES), dataset=train_set)
    model.train()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer, scheduler, _ = build_optimizer_and_scheduler(model, cfg.OPTIMIZATION, len(loader), 1)
    model_func = model_fn_decorator()
    record: dict = {"frames": [], "num_masked": [], "error": None}
    for step, batch in enumerate(loader):
        if step == args.nan_step and rank == args.nan_rank:
            batch["points"][0, 5] = float("nan")  # (batch, x, y, z, intensity, elongation)
        record["frames"].append([str(f) for f in batch["frame_id"]])
        scheduler.step(step, 0)
        optimizer.zero_grad()
        try:
            loss, tb_dict, _ = model_func(ddp, batch)
        except NonFiniteLossError as error:
            record["error"] = str(error)
            break
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.OPTIMIZATION.GRAD_NORM_CLIP)
        optimizer.step()
        record["num_masked"].append(int(tb_dict["num_masked"]))
    record["params"] = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.save(record, args.out / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

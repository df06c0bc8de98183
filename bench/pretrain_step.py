"""Benchmark: one PICTURE pre-training step (SealMAE) vs one stock CenterPoint-DSVT step on the same frames.

Prints forward+backward time (median of --repeats, the two models interleaved) and the peak memory
of each step, and their ratios (goal on GPU: time ratio <= 0.8). Memory: CUDA
``max_memory_allocated`` on GPU; on CPU the peak resident-set increase during the step (sampled
every 2 ms from /proc/self/statm). The pre-training step includes the online Seal teacher and I2Mask.

    python bench/pretrain_step.py                                   # tiny configs, CPU
    python bench/pretrain_step.py --device cuda --pretrain cfgs/seal_pretrain.yaml \
        --stock cfgs/finetune/dsvt_voxel_waymo.yaml --set MODEL.SEAL_TARGET.TEACHER_CKPT seal.pth

Real-size configs need their data set on disk; the tiny ones run on the synthetic scenes.
Without a GPU (or without OpenPCDet's compiled ops) pcdet-seal's CPU mode stands in for the CUDA
ops; the stand-ins in effect are printed.
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
import platform
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


class PeakRSS:
    """Peak resident-set size (bytes) while the block runs, sampled by a thread."""

    def __init__(self, period: float = 0.002) -> None:
        self.period, self.peak, self._stop = period, 0, threading.Event()
        self.page = os.sysconf("SC_PAGE_SIZE")

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.period)

    def __enter__(self) -> "PeakRSS":
        self.base = self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def one_step(model, batch, device) -> tuple[float, float, dict]:
    """(seconds, peak bytes, tb_dict) of forward + backward on a copy of ``batch``."""
    data = copy.deepcopy(batch)
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        ret, tb, _ = model(data)
        ret["loss"].backward()
        torch.cuda.synchronize()
        return time.perf_counter() - start, torch.cuda.max_memory_allocated() - base, tb
    with PeakRSS() as mem:
        start = time.perf_counter()
        ret, tb, _ = model(data)
        ret["loss"].backward()
        seconds = time.perf_counter() - start
    return seconds, mem.peak - mem.base, tb


def module_times(model) -> dict:
    """Forward seconds per top-level module, filled by hooks on each call."""
    times: dict = {}
    for name, module in model.named_children():
        if name == "module_list" or module is None:
            continue
        module.register_forward_pre_hook(lambda m, a, n=name: times.__setitem__(n, -time.perf_counter()))
        module.register_forward_hook(lambda m, a, o, n=name: times.__setitem__(n, times[n] + time.perf_counter()))
    return times


def worker(args, which: str) -> dict:
    """Build one model, measure its first (cold) step's memory and the median time of --repeats steps."""
    device = torch.device(args.device)
    if device.type == "cpu":
        from pcdet_seal.compat import enable_cpu_mode

        enable_cpu_mode()
    from pcdet.config import cfg_from_list
    from pcdet.datasets import build_dataloader
    from pcdet.models import build_network, load_data_to_gpu

    from pcdet_seal import compat, registry
    from pcdet_seal.tools.config_network import load_config

    registry.register()
    pre_cfg, stock_cfg = load_config(args.pretrain), load_config(args.stock)
    if args.set_cfgs:
        cfg_from_list(args.set_cfgs, pre_cfg)
    # the same frames for both: the pre-training data config (no augmentation), gt boxes included
    ds, _, _ = build_dataloader(pre_cfg.DATA_CONFIG, stock_cfg.CLASS_NAMES, batch_size=args.batch_size,
                                dist=False, workers=0, logger=logging.getLogger("bench"), training=True)
    torch.manual_seed(0)
    import numpy as np

    np.random.seed(0)  # the same point shuffle in both workers
    batch = ds.collate_batch([ds[i] for i in range(args.batch_size)])
    load_data_to_gpu(batch)
    cfg = pre_cfg if which == "pretrain" else stock_cfg
    model = build_network(cfg.MODEL, len(cfg.CLASS_NAMES), ds).to(device).train()
    per_module = module_times(model)
    _, peak, tb = one_step(model, batch, device)  # cold step: memory
    times, modules = [], []
    for _ in range(args.repeats):
        seconds, _, tb = one_step(model, batch, device)
        times.append(seconds)
        modules.append(dict(per_module))
    return {"time": statistics.median(times), "peak": peak, "tb": tb,
            "modules": {k: statistics.median(m[k] for m in modules) for k in modules[0]},
            "stand_ins": [n for n, s in compat.patch_status().items() if s == "installed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrain", default=str(ROOT / "cfgs/demo/seal_pretrain_tiny.yaml"))
    parser.add_argument("--stock", default=str(ROOT / "cfgs/demo/finetune_tiny.yaml"))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY VALUE", dest="set_cfgs",
                        help="overrides for the pre-training config, as train.py's --set")
    parser.add_argument("--worker", choices=["pretrain", "stock"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.worker:
        print("RESULT " + json.dumps(worker(args, args.worker)))
        return
    results = {}
    for which in ("pretrain", "stock"):  # one process each: a fresh allocator for the memory figure
        cmd = [sys.executable, __file__, "--worker", which, *sys.argv[1:]]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
        if out.returncode != 0 or not line:
            raise SystemExit(f"{which} worker failed:\n{out.stderr[-3000:]}")
        results[which] = json.loads(line[0][7:])
    pre, stock = results["pretrain"], results["stock"]
    device = torch.device(args.device)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"configs: {Path(args.pretrain).name} vs {Path(args.stock).name}; batch {args.batch_size}, "
          f"{pre['tb']['num_voxels']} voxels, realised mask ratio {pre['tb']['mask_ratio']:.3f}; "
          f"time = median of {args.repeats} steps")
    mem_kind = "peak CUDA alloc" if device.type == "cuda" else "peak RSS increase, cold step"
    print(f"{'step':<26}{'fwd+bwd [s]':>12}{mem_kind + ' [MiB]':>38}")
    for name, r in (("pre-train (SealMAE)", pre), ("stock CenterPoint-DSVT", stock)):
        print(f"{name:<26}{r['time']:>12.3f}{r['peak'] / 2 ** 20:>38.1f}")
    print(f"ratio pre-train / stock: time {pre['time'] / stock['time']:.2f}, memory {pre['peak'] / max(stock['peak'], 1):.2f}")
    for name, r in (("pre-train", pre), ("stock", stock)):
        print(f"forward per module, {name}: " + ", ".join(f"{k} {v:.3f}s" for k, v in r["modules"].items()))
    if pre["stand_ins"]:
        print(f"stand-ins (pcdet-seal compat patches in effect): {', '.join(pre['stand_ins'])}")


if __name__ == "__main__":
    main()

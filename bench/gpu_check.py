#!/usr/bin/env python
"""One GPU check: everything in pcdet-seal that needs CUDA, in one run (≤ 8 minutes on an H100/H200).

1. ``pytest -m gpu`` (the CUDA tests of the suite);
2. I2Mask on a Waymo-sized frame (150k voxels × 64) vs the reference's scikit-learn path
   (bench/i2mask.py);
3. the Res16UNet34C Seal teacher on spconv: frames/s at ~150k cells (bench/seal_targets.py);
4. one pre-training step of cfgs/seal_pretrain.yaml (SealMAE, online Res16UNet34C teacher with
   random weights) vs one step of the stock CenterPoint-DSVT fine-tuning config
   cfgs/finetune/dsvt_voxel_waymo.yaml on the same synthetic Waymo-range frames, forward + backward
   + ``adamw_onecycle`` step: median time, peak CUDA memory, ratio.

Writes one JSON (``--out``, default ``gpu_check_<card>.json``) with the card's name and prints a
summary. Needs, with no network: torch with CUDA, spconv built for that CUDA, scikit-learn,
pytest, an OpenPCDet source checkout importable as ``pcdet`` (with its CUDA ops built) and this
project; it lists exactly what is missing otherwise (exit code 2).

    python bench/gpu_check.py                      # on the GPU machine
    python bench/gpu_check.py --dry-run            # anywhere: list what is missing, then run every
                                                   # section it can on the CPU at small sizes (code
                                                   # paths only; these are not GPU figures)
"""
from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
PRETRAIN_CFG = ROOT / "cfgs" / "seal_pretrain.yaml"
STOCK_CFG = ROOT / "cfgs" / "finetune" / "dsvt_voxel_waymo.yaml"
logger = logging.getLogger("gpu_check")

#: Sizes of a real run and of a CPU dry run.
SIZES = {
    "gpu": dict(i2mask_voxels=150_000, i2mask_repeats=5, ref_repeats=2, teacher_points=190_000, teacher_repeats=3,
                step_points=180_000, step_frames=2, step_repeats=3, pytest_timeout=300),
    "dry": dict(i2mask_voxels=20_000, i2mask_repeats=1, ref_repeats=1, teacher_points=20_000, teacher_repeats=1,
                step_points=6_000, step_frames=1, step_repeats=1, pytest_timeout=0),
}


def _check(name: str, fn: Callable[[], str], fix: str) -> dict:
    try:
        return {"name": name, "ok": True, "detail": fn()}
    except Exception as error:  # noqa: BLE001 - every failure is a missing requirement, reported by name
        return {"name": name, "ok": False, "detail": f"{type(error).__name__}: {error}", "fix": fix}


def _torch_cuda() -> str:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"torch {torch.__version__} (CUDA build {torch.version.cuda}) sees no CUDA device")
    return f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}"


def _spconv_cuda() -> str:
    import spconv
    import spconv.pytorch as spconv_torch
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"spconv {spconv.__version__} importable; its CUDA kernels cannot be tried without a "
                           "CUDA device")
    conv = spconv_torch.SubMConv3d(1, 1, 3, indice_key="check").cuda()
    coords = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 2]], dtype=torch.int32, device="cuda")
    out = conv(spconv_torch.SparseConvTensor(torch.ones(2, 1, device="cuda"), coords, [4, 4, 4], 1))
    torch.cuda.synchronize()
    return f"spconv {spconv.__version__}: a CUDA SubMConv3d ran ({tuple(out.features.shape)})"


def _module(name: str) -> Callable[[], str]:
    def run() -> str:
        module = importlib.import_module(name)
        return f"{name} {getattr(module, '__version__', '')} at {Path(module.__file__).parent}".strip()
    return run


def _pcdet() -> str:
    spec = importlib.util.find_spec("pcdet")
    if spec is None:
        raise ModuleNotFoundError("no module named 'pcdet'")
    root = Path(list(spec.submodule_search_locations)[0]).parent
    if not (root / "tools" / "train_utils" / "optimization" / "__init__.py").is_file():
        raise FileNotFoundError(f"{root} has no tools/train_utils/optimization: not an OpenPCDet source checkout")
    ops = [p.name for p in (root / "pcdet" / "ops" / "iou3d_nms").glob("iou3d_nms_cuda*.so")]
    if not ops:
        raise FileNotFoundError(f"OpenPCDet at {root}: CUDA ops not built (no pcdet/ops/iou3d_nms/iou3d_nms_cuda*.so)")
    return f"OpenPCDet source checkout at {root}, CUDA ops built ({ops[0]})"


def _project() -> str:
    import pcdet_seal

    missing = [p for p in (PRETRAIN_CFG, STOCK_CFG, BENCH / "i2mask.py", BENCH / "seal_targets.py") if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"missing project files: {[str(p) for p in missing]}")
    return f"pcdet_seal {getattr(pcdet_seal, '__version__', '')} at {Path(pcdet_seal.__file__).parent}"


def requirements() -> list[dict]:
    """Every requirement, checked without network; ``ok`` False entries carry ``fix``."""
    return [
        _check("torch with CUDA", _torch_cuda, "a CUDA build of torch on a machine with an NVIDIA GPU"),
        _check("spconv for that CUDA", _spconv_cuda, "pip install spconv-cu1xx matching torch.version.cuda"),
        _check("scikit-learn", _module("sklearn"), "pip install scikit-learn"),
        _check("pytest", _module("pytest"), "pip install pytest"),
        _check("OpenPCDet source checkout (CUDA ops built)", _pcdet,
               "git clone OpenPCDet, `python setup.py develop` there (builds its CUDA ops), make it importable"),
        _check("pcdet-seal (this project)", _project, "pip install -e . in this repository"),
    ]


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def run_pytest(timeout: int) -> dict:
    """``pytest -m gpu`` in a subprocess: exit code, the summary line, failures if any."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    summary = next((l for l in reversed(lines) if re.search(r"\b(passed|failed|error|skipped)\b", l)), "")
    return {"returncode": proc.returncode, "summary": summary.strip("= "), "seconds": time.perf_counter() - start,
            "failures": [l for l in lines if l.startswith(("FAILED", "ERROR"))]}


def run_i2mask(device, sizes: dict) -> dict:
    """Our torch I2Mask vs the reference's scikit-learn path on one frame (bench/i2mask.py)."""
    import torch

    i2mask = importlib.import_module("i2mask")
    from pcdet_seal.masking import I2Mask

    n = sizes["i2mask_voxels"]
    feats = i2mask.frame(n).to(device)
    coords = torch.zeros(n, 4, dtype=torch.long, device=device)
    masker, gen = I2Mask(), torch.Generator(device=device).manual_seed(0)
    ours = i2mask.timed(lambda: masker(feats, coords, None, gen), sizes["i2mask_repeats"], device)
    _, stats = masker(feats, coords, None, gen)
    ref = i2mask.timed(lambda: i2mask.reference_i2mask(feats, 1), sizes["ref_repeats"], device)
    return {"voxels": n, "ours_ms": ours, "reference_sklearn_n_init1_ms": ref, "speedup": ref / ours,
            "mask_ratio": float(stats["mask_ratio"])}


def run_teacher(device, sizes: dict) -> dict:
    """The Res16UNet34C teacher (random weights) on one Waymo-like frame: frames/s (bench/seal_targets.py)."""
    import torch

    seal_targets = importlib.import_module("seal_targets")
    from pcdet_seal.seal.minkunet import Res16UNet, Res16UNetArch, SealTeacher
    from pcdet_seal.seal.targets import teacher_input

    points = seal_targets.synthetic_scan(sizes["teacher_points"])
    cells, feats = teacher_input(points, torch.zeros(len(points), dtype=torch.long), seal_targets.WAYMO_VOXEL)
    teacher = SealTeacher(Res16UNet(Res16UNetArch())).to(device)
    with torch.no_grad():
        teacher(cells.coords.to(device), feats.to(device))  # warm-up (spconv tuning)
        wall, _, _ = seal_targets.time_teacher(teacher, cells.coords, feats, device, sizes["teacher_repeats"])
    return {"points": int(points.shape[0]), "cells": int(cells.coords.shape[0]), "seconds_per_frame": wall,
            "frames_per_second": 1.0 / wall}


def step_batch(cfg, sizes: dict, device) -> dict:
    """``step_frames`` synthetic Waymo-range frames (bench/seal_targets.py scans, zero elongation)
    with 20 boxes each, as a collated OpenPCDet batch on ``device``."""
    import torch

    seal_targets = importlib.import_module("seal_targets")
    rng = np.random.default_rng(0)
    points, boxes = [], []
    n_features = len(cfg.DATA_CONFIG.POINT_FEATURE_ENCODING.used_feature_list)
    for b in range(sizes["step_frames"]):
        scan = seal_targets.synthetic_scan(sizes["step_points"], seed=b).numpy()
        rows = np.zeros((scan.shape[0], 1 + n_features), dtype=np.float32)
        rows[:, 0], rows[:, 1:5] = b, scan
        points.append(rows)
        centre = np.c_[rng.uniform(-60, 60, (20, 2)), np.full(20, -1.0)]
        size = np.tile([4.5, 2.0, 1.6], (20, 1))
        boxes.append(np.c_[centre, size, rng.uniform(-np.pi, np.pi, 20), rng.integers(1, 4, 20)])
    return {"points": torch.from_numpy(np.concatenate(points)).to(device),
            "gt_boxes": torch.from_numpy(np.stack(boxes).astype(np.float32)).to(device),
            "batch_size": sizes["step_frames"], "frame_id": np.array([f"gpu_check_{b}" for b in range(sizes["step_frames"])])}


def run_steps(device, sizes: dict) -> dict:
    """Median time and peak memory of forward + backward + optimizer step, pre-training vs stock."""
    import torch

    from pcdet_seal import registry
    from pcdet_seal.tools.config_network import build_network_from_config, load_config
    from pcdet_seal.optim import build_optimizer_and_scheduler

    registry.register()
    out: dict[str, Any] = {}
    for name, path in (("pretrain", PRETRAIN_CFG), ("stock", STOCK_CFG)):
        cfg = load_config(path)
        if name == "pretrain":
            cfg.MODEL.SEAL_TARGET.update({"RANDOM_TEACHER": True, "TEACHER_CKPT": None})
        torch.manual_seed(0)
        model = build_network_from_config(cfg).to(device).train()
        optimizer, scheduler, _ = build_optimizer_and_scheduler(model, cfg.OPTIMIZATION, 100, 1)
        batch = step_batch(cfg, sizes, device)
        times, peak, tb = [], 0, {}
        for it in range(sizes["step_repeats"] + 1):  # the first is a warm-up; its memory counts
            data = copy.copy(batch)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            _synchronize(device)
            start = time.perf_counter()
            scheduler.step(it, 0)
            optimizer.zero_grad()
            ret, tb, _ = model(data)
            ret["loss"].backward()
            optimizer.step()
            _synchronize(device)
            if it:
                times.append(time.perf_counter() - start)
            if device.type == "cuda":
                peak = max(peak, torch.cuda.max_memory_allocated())
        out[name] = {"config": str(path.relative_to(ROOT)), "seconds": statistics.median(times),
                     "peak_cuda_bytes": peak if device.type == "cuda" else None,
                     "voxels": int(data["voxel_coords"].shape[0]), "loss": float(ret["loss"].detach())}
        if name == "pretrain":
            out[name]["mask_ratio"] = float(tb["mask_ratio"])
        del model, optimizer
    out["ratio_time"] = out["pretrain"]["seconds"] / out["stock"]["seconds"]
    if device.type == "cuda":
        out["ratio_memory"] = out["pretrain"]["peak_cuda_bytes"] / out["stock"]["peak_cuda_bytes"]
    return out


def _section(results: dict, name: str, fn: Callable[[], dict]) -> None:
    start = time.perf_counter()
    try:
        results[name] = {"ok": True, **fn()}
    except Exception as error:  # noqa: BLE001 - one failed section must not hide the others
        logger.exception("section %s failed", name)
        results[name] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    results[name]["section_seconds"] = time.perf_counter() - start


def summary(report: dict) -> str:
    """The printed summary."""
    lines = [f"pcdet-seal GPU check on {report['card']} ({'CPU DRY RUN: not GPU figures' if report['dry_run'] else 'CUDA'})"]
    for req in report["requirements"]:
        lines.append(f"  [{'ok' if req['ok'] else 'MISSING'}] {req['name']}: {req['detail']}"
                     + ("" if req["ok"] else f"  -> {req['fix']}"))
    s = report["sections"]
    if "pytest_gpu" in s:
        p = s["pytest_gpu"]
        lines.append(f"pytest -m gpu: {p.get('summary') or p.get('error')}")
    if s.get("i2mask", {}).get("ok"):
        i = s["i2mask"]
        lines.append(f"I2Mask, {i['voxels']} voxels: ours {i['ours_ms']:.1f} ms, scikit-learn reference "
                     f"{i['reference_sklearn_n_init1_ms']:.1f} ms ({i['speedup']:.1f}x)")
    if s.get("teacher", {}).get("ok"):
        t = s["teacher"]
        lines.append(f"Res16UNet34C teacher, {t['cells']} cells: {t['frames_per_second']:.2f} frames/s")
    if s.get("steps", {}).get("ok"):
        st = s["steps"]
        for name in ("pretrain", "stock"):
            r = st[name]
            mem = f", peak {r['peak_cuda_bytes'] / 2 ** 30:.2f} GiB" if r["peak_cuda_bytes"] is not None else ""
            lines.append(f"step {name} ({r['config']}, {r['voxels']} voxels): {r['seconds']:.3f} s{mem}")
        lines.append(f"ratio pre-train / stock: time {st['ratio_time']:.2f}"
                     + (f", memory {st['ratio_memory']:.2f}" if "ratio_memory" in st else ""))
    for name, sec in s.items():
        if not sec.get("ok", True):
            lines.append(f"section {name} FAILED: {sec['error']}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true",
                        help="list what is missing, then run what can run on the CPU at small sizes")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default gpu_check_<card>.json)")
    parser.add_argument("--skip-pytest", action="store_true", help="leave out `pytest -m gpu`")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, str(BENCH))  # bench/i2mask.py, bench/seal_targets.py
    reqs = requirements()
    missing = [r for r in reqs if not r["ok"]]
    if missing and not args.dry_run:
        print("pcdet-seal GPU check cannot run; missing:", file=sys.stderr)
        for r in missing:
            print(f"  - {r['name']}: {r['detail']}  -> {r['fix']}", file=sys.stderr)
        return 2
    import torch

    dry = args.dry_run
    device = torch.device("cpu" if dry else "cuda")
    if dry:
        from pcdet_seal.compat import enable_cpu_mode

        enable_cpu_mode()
    sizes = SIZES["dry" if dry else "gpu"]
    card = "cpu-dry-run" if dry else torch.cuda.get_device_name(0)
    report = {"card": card, "dry_run": dry, "device": str(device), "sizes": sizes, "requirements": reqs,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                          "cuda": torch.version.cuda, "python": sys.version.split()[0]},
              "sections": {}}
    wall = time.perf_counter()
    sections = report["sections"]
    have = {r["name"]: r["ok"] for r in reqs}
    if not dry and not args.skip_pytest:
        _section(sections, "pytest_gpu", lambda: run_pytest(sizes["pytest_timeout"]))
    if have["scikit-learn"]:
        _section(sections, "i2mask", lambda: run_i2mask(device, sizes))
    else:
        sections["i2mask"] = {"ok": False, "error": "scikit-learn missing (the reference path needs it)"}
    _section(sections, "teacher", lambda: run_teacher(device, sizes))
    _section(sections, "steps", lambda: run_steps(device, sizes))
    report["seconds"] = time.perf_counter() - wall
    out = args.out or Path(f"gpu_check_{re.sub(r'[^A-Za-z0-9]+', '_', card).strip('_')}.json")
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(out)  # no half-written JSON after a crash
    print(summary(report))
    print(f"wrote {out} ({report['seconds']:.0f} s)")
    failed = [n for n, s in sections.items() if not s.get("ok", True)]
    return 1 if failed or (not dry and sections.get("pytest_gpu", {}).get("returncode", 0)) else 0


if __name__ == "__main__":
    sys.exit(main())

"""OpenPCDet's training and evaluation recipe in process, shared by the demo and the study.

The same steps as the stock ``tools/train.py`` / ``tools/test.py`` (``build_dataloader``,
``build_network``, ``--pretrained_model`` loading, the optimizer and one-cycle schedule of
:mod:`pcdet_seal.optim`, gradient clipping), without their output folders and side files.
"""
from __future__ import annotations

import contextlib
import logging
import random
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

logger = logging.getLogger(__name__)

#: A short fine-tune localises roughly before it localises well: evaluation also scores here.
LOOSE_IOU = 0.3


class IncompleteTransfer(RuntimeError):
    """Pre-trained encoder weights did not load completely into the fine-tuning network."""


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (model initialisation, data order, masking)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def reproducible_kernels(device: torch.device) -> Iterator[bool]:
    """Inside the block, on CPU, torch runs its deterministic kernels; the previous setting returns after.

    With more than one thread, torch's CPU ``index_put_(accumulate=True)`` adds floats with atomics in
    whatever order the threads reach them. OpenPCDet's PFN layers (``x_max[unq_inv]`` in the dynamic
    VFEs) take that path in backward, so the first step's VFE gradient differs in its last bits from
    run to run and 480 steps later one seed's detector scores anything from 6.8 to 14.1 mAP
    (bench/RESULTS.md, "A seed did not fix a run"). ``torch.use_deterministic_algorithms`` makes those
    sums serial; ops without a deterministic kernel warn. On CUDA the block changes nothing: spconv's
    and torch_scatter's CUDA kernels are not deterministic anyway, so CUDA runs are not bit-reproducible.

    Yields whether deterministic kernels are on.
    """
    if device.type != "cpu":
        yield False
        return
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield True
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def load_encoder(model: torch.nn.Module, checkpoint: Path, device: torch.device, desc: str = "") -> dict[str, str]:
    """Load ``vfe.*`` and ``backbone_3d.*`` as ``--pretrained_model`` does; fail unless 100 % load.

    Returns ``{"vfe": "loaded/total", "backbone_3d": "loaded/total"}``.
    """
    from pcdet_seal.tools.transfer import REQUIRED_PREFIXES, read_model_state, transfer_report

    quiet = logging.getLogger(f"{__name__}.load_params")  # OpenPCDet logs every key it does not load
    quiet.setLevel(logging.WARNING)
    model.load_params_from_file(str(checkpoint), quiet, to_cpu=device.type == "cpu")
    report = transfer_report(model, read_model_state(str(checkpoint)))
    loaded = {p: f"{report.loaded[p]}/{report.total[p]}" for p in REQUIRED_PREFIXES}
    if not report.complete():
        raise IncompleteTransfer(f"{desc or checkpoint}: pre-trained weights from {checkpoint} did not load "
                                 f"completely: {report.problems()}")
    logger.info("%s: loaded %s from %s (as --pretrained_model does; the rest starts from scratch)",
                desc, ", ".join(f"{p}.* {v}" for p, v in loaded.items()), Path(checkpoint).name)
    return loaded


def train_model(cfg: Any, device: torch.device, seed: int, desc: str, batch_size: int, workers: int = 0,
                pretrained: Optional[Path] = None, stats_keys: Sequence[str] = (),
                progress: bool = True) -> tuple[Any, dict]:
    """Build the dataset and network of ``cfg`` and train it for ``OPTIMIZATION.NUM_EPOCHS``.

    ``seed`` fixes the initialisation of every parameter not loaded from ``pretrained``, the data
    order and any random masking: two calls that differ only in ``pretrained`` see the same batches
    in the same order with the same recipe. On CPU two calls with the same arguments give the same
    weights bit for bit on the same machine and installation (:func:`reproducible_kernels`;
    docs/architecture.md §4.5); on CUDA they do not.

    Returns:
        ``(model, info)``; ``info`` holds ``iterations``, ``epochs``, ``frames``, ``history``
        (per-iteration ``loss`` and each of ``stats_keys`` found in the tb_dict) and, with
        ``pretrained``, ``transfer`` (``{"vfe": "12/12", "backbone_3d": "213/213"}``).
    """
    from pcdet.datasets import build_dataloader
    from pcdet.models import build_network, model_fn_decorator

    from pcdet_seal.optim import build_optimizer_and_scheduler

    seed_everything(seed)
    train_set, loader, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=batch_size, dist=False,
                                            workers=workers, logger=logger, training=True, seed=seed)
    model = build_network(model_cfg=cfg.MODEL, num_class=len(cfg.CLASS_NAMES), dataset=train_set)
    info: dict = {}
    if pretrained is not None:
        info["transfer"] = load_encoder(model, Path(pretrained), device, desc)
    model.to(device).train()
    optim_cfg = cfg.OPTIMIZATION
    epochs = int(optim_cfg.NUM_EPOCHS)
    optimizer, scheduler, warmup = build_optimizer_and_scheduler(model, optim_cfg, total_iters_each_epoch=len(loader),
                                                                 total_epochs=epochs)
    model_func = model_fn_decorator()
    history: dict[str, list] = {"loss": []}
    step = 0
    with reproducible_kernels(device), tqdm(total=epochs * len(loader), desc=desc, unit="it",
                                           disable=not progress) as bar:
        for epoch in range(epochs):
            # as OpenPCDet's train_model: the warm-up scheduler (LR_WARMUP) drives the first WARMUP_EPOCH epochs
            current = warmup if warmup is not None and epoch < optim_cfg.WARMUP_EPOCH else scheduler
            for batch in loader:
                current.step(step, epoch)
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
def evaluate_model(model: Any, cfg: Any, device: torch.device, batch_size: int, workers: int = 0,
                   desc: str = "evaluate", progress: bool = True) -> dict[str, float]:
    """Predict every val scene of ``cfg`` and score it with the dataset's AP (BEV and 3-D per class).

    Returns the dataset's AP keys (fractions in [0, 1]) at the config's IoU thresholds, the same
    keys suffixed ``@0.3`` at :data:`LOOSE_IOU`, and ``detections_per_frame``.
    """
    from pcdet.datasets import build_dataloader
    from pcdet.models import load_data_to_gpu

    test_set, loader, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=batch_size, dist=False,
                                           workers=workers, logger=logger, training=False)
    model.eval()
    annos = []
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress):
        load_data_to_gpu(batch)
        pred_dicts, _ = model(batch)
        annos += test_set.generate_prediction_dicts(batch, pred_dicts, cfg.CLASS_NAMES)
    text, results = test_set.evaluation(annos, cfg.CLASS_NAMES)
    logger.info("%s, AP at the config's IoU thresholds:\n%s", desc, text)
    had_thresholds = "EVAL_IOU_THRESHOLDS" in test_set.dataset_cfg
    strict = test_set.dataset_cfg.get("EVAL_IOU_THRESHOLDS")
    test_set.dataset_cfg.EVAL_IOU_THRESHOLDS = {name: LOOSE_IOU for name in cfg.CLASS_NAMES}
    try:
        text, loose = test_set.evaluation(annos, cfg.CLASS_NAMES)
    finally:
        if had_thresholds:
            test_set.dataset_cfg.EVAL_IOU_THRESHOLDS = strict
        else:
            del test_set.dataset_cfg["EVAL_IOU_THRESHOLDS"]
    logger.info("%s, AP at IoU %.1f:\n%s", desc, LOOSE_IOU, text)
    out = {k: float(v) for k, v in results.items()}
    out.update({f"{k}@{LOOSE_IOU}": float(v) for k, v in loose.items()})
    out["detections_per_frame"] = float(np.mean([len(a["name"]) for a in annos])) if annos else 0.0
    return out

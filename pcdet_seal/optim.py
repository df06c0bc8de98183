"""``adamw_onecycle``: OpenPCDet's ``adam_onecycle`` recipe over every trainable parameter.

OpenPCDet's ``adam_onecycle`` (``tools/train_utils/optimization``) builds its parameter groups
from the *leaf* modules of the model, so parameters held by a module that has children are never
optimised: every ``nn.MultiheadAttention.in_proj_weight`` / ``in_proj_bias`` and DSVT's pooling
``pos_embedding`` stay at their initialisation (OpenPCDet issue #960). ``adamw_onecycle`` is the
same recipe — Adam with decoupled weight decay on all parameters, norms included (fastai's
``OptimWrapper`` with ``true_wd`` and ``bn_wd``), OpenPCDet's ``OneCycle`` learning-rate and
momentum schedule — with every parameter that has ``requires_grad`` in exactly one group
(norm layers in the second group, as ``adam_onecycle`` splits them). One difference in the
schedule: a phase that rounds to zero iterations (``int(PCT_START * total) == 0``, a run of a few
iterations) is skipped instead of dividing by zero; the schedule is otherwise identical.

Two ways in, both composing OpenPCDet's own classes (nothing copied, nothing edited):

* :func:`build_optimizer_and_scheduler` — the one function in-process trainers (``pcdet_seal.tools.training``,
  benchmarks, tests) call for any ``OPTIMIZATION.OPTIMIZER``, stock names included.
* :func:`patch_tools_optimization` — run by the plugin's import hook right after OpenPCDet's
  ``train_utils.optimization`` is imported (before ``tools/train.py`` binds its names): its
  ``build_optimizer`` / ``build_scheduler`` learn the plugin's names; stock names go to the
  original functions unchanged.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple, Optional

import torch
from torch import nn

from .autoload import OPTIMIZATION_MODULE

logger = logging.getLogger(__name__)

#: ``OPTIMIZATION.OPTIMIZER`` names the plugin adds to OpenPCDet's builder.
PLUGIN_OPTIMIZERS = ("adamw_onecycle",)
#: OpenPCDet's optimiser module, as ``tools/train.py`` imports it (``tools/`` on ``sys.path``); named
#: in the start-up hook, which must not import this module (it imports torch).
TOOLS_MODULE = OPTIMIZATION_MODULE
_REQUIRED_KEYS = ("LR", "WEIGHT_DECAY", "MOMS", "DIV_FACTOR", "PCT_START")
_PATCHED = "__pcdet_seal_patched__"


class Optimization(NamedTuple):
    """What :func:`build_optimizer_and_scheduler` returns (unpacks as a 3-tuple)."""

    optimizer: Any
    scheduler: Any
    warmup_scheduler: Optional[Any]


def _openpcdet_tools_dir() -> Path:
    """OpenPCDet's ``tools/`` folder next to the ``pcdet`` package, found without importing it."""
    spec = importlib.util.find_spec("pcdet")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("OpenPCDet (pcdet) is not importable, so its tools/train_utils/optimization is not found")
    return Path(list(spec.submodule_search_locations)[0]).resolve().parent / "tools"


def is_openpcdet_tools_module(module: ModuleType) -> bool:
    """Whether ``module`` is the file of that name under OpenPCDet's ``tools/`` folder."""
    file = getattr(module, "__file__", None)
    if not file:
        return False
    expected = _openpcdet_tools_dir().joinpath(*module.__name__.split("."))
    return Path(file).resolve() in (expected / "__init__.py", expected.with_suffix(".py"))


def tools_module(name: str = TOOLS_MODULE) -> ModuleType:
    """OpenPCDet's ``tools/<name>`` imported under its own name (as ``tools/train.py`` imports it,
    so the import hook patches it), with ``tools/`` on ``sys.path`` only during the import."""
    module = sys.modules.get(name)
    if module is None:
        tools = str(_openpcdet_tools_dir())
        sys.path.insert(0, tools)
        try:
            module = importlib.import_module(name)
        finally:
            sys.path.remove(tools)
    if not is_openpcdet_tools_module(module):
        raise ImportError(f"module {name!r} comes from {getattr(module, '__file__', None)}, not from OpenPCDet's "
                          f"{_openpcdet_tools_dir()}; another package of that name shadows it")
    return module


def parameter_groups(model: nn.Module, norm_types: tuple[type, ...]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(others, norms)``: every parameter with ``requires_grad`` exactly once, those owned
    directly by a module of ``norm_types`` in the second list (``adam_onecycle``'s split)."""
    seen: set[int] = set()
    others: list[nn.Parameter] = []
    norms: list[nn.Parameter] = []
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (norms if isinstance(module, norm_types) else others).append(param)
    return others, norms


def _check_keys(optim_cfg: Any) -> None:
    missing = [key for key in _REQUIRED_KEYS if optim_cfg.get(key) is None]
    if missing:
        raise KeyError(f"OPTIMIZATION.OPTIMIZER {optim_cfg.OPTIMIZER} needs "
                       f"{', '.join('OPTIMIZATION.' + k for k in missing)} (as adam_onecycle does)")


def _adamw_onecycle_optimizer(model: nn.Module, optim_cfg: Any, tools: ModuleType):
    """fastai's ``OptimWrapper`` over ``torch.optim.Adam`` exactly as ``adam_onecycle`` builds it,
    with groups from :func:`parameter_groups` instead of the leaf modules."""
    _check_keys(optim_cfg)
    others, norms = parameter_groups(model, tools.fastai_optim.bn_types)
    betas = tuple(optim_cfg.get("BETAS", (0.9, 0.99)))
    adam = torch.optim.Adam([{"params": others, "lr": 0}, {"params": norms, "lr": 0}], betas=betas)
    optimizer = tools.OptimWrapper(adam, wd=optim_cfg.WEIGHT_DECAY, true_wd=True, bn_wd=True)
    optimizer.lr = float(optim_cfg.LR)  # OneCycle sets the first value of the schedule
    return optimizer


def _one_cycle(optimizer: Any, total_steps: int, optim_cfg: Any, tools: ModuleType):
    """OpenPCDet's ``OneCycle``, minus phases that round to zero iterations (which divide by zero)."""
    _check_keys(optim_cfg)
    scheduler = tools.OneCycle(optimizer, total_steps, optim_cfg.LR, list(optim_cfg.MOMS), optim_cfg.DIV_FACTOR,
                               optim_cfg.PCT_START)
    scheduler.lr_phases = [phase for phase in scheduler.lr_phases if phase[1] > phase[0]]
    scheduler.mom_phases = [phase for phase in scheduler.mom_phases if phase[1] > phase[0]]
    return scheduler


def build_optimizer_and_scheduler(model: nn.Module, optim_cfg: Any, total_iters_each_epoch: int,
                                  total_epochs: int, last_epoch: int = -1) -> Optimization:
    """Optimizer and schedulers for ``optim_cfg`` (an ``OPTIMIZATION`` block) as ``tools/train.py``
    builds them: the plugin's ``adamw_onecycle`` here, any other name by OpenPCDet's own
    ``build_optimizer`` / ``build_scheduler``. Call ``scheduler.step(accumulated_iter, epoch)``
    before each ``optimizer.step()``, as OpenPCDet's ``train_one_epoch`` does."""
    tools = tools_module(TOOLS_MODULE)
    if optim_cfg.OPTIMIZER in PLUGIN_OPTIMIZERS:
        optimizer = _adamw_onecycle_optimizer(model, optim_cfg, tools)
        return Optimization(optimizer, _one_cycle(optimizer, total_iters_each_epoch * total_epochs, optim_cfg, tools),
                            None)
    optimizer = tools.build_optimizer(model, optim_cfg)
    scheduler, warmup = tools.build_scheduler(optimizer, total_iters_each_epoch=total_iters_each_epoch,
                                              total_epochs=total_epochs, last_epoch=last_epoch, optim_cfg=optim_cfg)
    return Optimization(optimizer, scheduler, warmup)


def patch_tools_optimization(module: ModuleType) -> None:
    """Teach OpenPCDet's ``train_utils.optimization`` the plugin's optimizer names.

    Does nothing unless ``module`` is the file under OpenPCDet's own ``tools/``, and nothing twice.
    The new ``build_optimizer`` / ``build_scheduler`` hand every name outside
    :data:`PLUGIN_OPTIMIZERS` to the original functions, so stock names behave exactly as before.
    """
    if getattr(module, _PATCHED, False):
        return
    if not is_openpcdet_tools_module(module):
        logger.debug("pcdet-seal: %s from %s is not OpenPCDet's tools module; not patched", module.__name__,
                     getattr(module, "__file__", None))
        return
    stock_optimizer, stock_scheduler = module.build_optimizer, module.build_scheduler

    @functools.wraps(stock_optimizer)
    def build_optimizer(model, optim_cfg):
        if optim_cfg.OPTIMIZER in PLUGIN_OPTIMIZERS:
            return _adamw_onecycle_optimizer(model, optim_cfg, module)
        return stock_optimizer(model, optim_cfg)

    @functools.wraps(stock_scheduler)
    def build_scheduler(optimizer, total_iters_each_epoch, total_epochs, last_epoch, optim_cfg):
        if optim_cfg.OPTIMIZER in PLUGIN_OPTIMIZERS:
            return _one_cycle(optimizer, total_iters_each_epoch * total_epochs, optim_cfg, module), None
        return stock_scheduler(optimizer, total_iters_each_epoch, total_epochs, last_epoch, optim_cfg)

    module.build_optimizer, module.build_scheduler = build_optimizer, build_scheduler
    setattr(module, _PATCHED, True)
    logger.debug("pcdet-seal: %s knows %s", module.__name__, ", ".join(PLUGIN_OPTIMIZERS))

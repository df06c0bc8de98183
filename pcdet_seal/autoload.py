"""What the start-up hook does on a process's first ``import pcdet`` (see ``pcdet_seal_autoload``).

CPU mode when ``PCDET_SEAL_CPU`` is on (1/true/yes/on); else a one-line hint if the checkout is unbuilt; and
:func:`pcdet_seal.registry.register` once ``pcdet.models`` / ``pcdet.datasets`` have executed
(after the outermost of the two, since ``pcdet.models`` imports ``pcdet.datasets``); and the
plugin's optimizer names in OpenPCDet's ``tools/train_utils/optimization`` (:mod:`pcdet_seal.optim`).
"""
from __future__ import annotations

import contextlib
import logging
import threading
from types import ModuleType
from typing import Iterator, NoReturn

from pcdet_seal_autoload import AUTOLOAD_ENV, CPU_ENV, env_flag

from .compat import importhook

logger = logging.getLogger(__name__)

WATCHED = ("pcdet.models", "pcdet.datasets")

_state = threading.local()
_installed: list[bool] = []


def _explain_missing_version(name: str) -> NoReturn:
    from .compat import HOW_TO_ENABLE

    raise ModuleNotFoundError(
        f"No module named {name!r}: this OpenPCDet is a source checkout whose setup.py never ran (it writes "
        f"pcdet/version.py and builds the CUDA ops). Without CUDA, use pcdet-seal's CPU mode: {HOW_TO_ENABLE}.",
        name=name)


@contextlib.contextmanager
def _track_depth(name: str) -> Iterator[None]:
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1


def _register_when_outermost(module: ModuleType) -> None:
    if getattr(_state, "depth", 0) > 0:  # still inside the other watched module
        return
    from . import compat, registry

    try:
        registry.register(check_device=False)
    except Exception as error:
        raise ImportError(f"pcdet-seal could not register its classes with OpenPCDet ({type(error).__name__}: "
                          f"{error}); set {AUTOLOAD_ENV}=0 to import OpenPCDet without the plugin") from error
    import torch

    if not torch.cuda.is_available() and not compat.cpu_mode_enabled():
        logger.warning("pcdet-seal: no CUDA device and CPU mode is off, so OpenPCDet will fail at its first "
                       ".cuda(); %s", compat.HOW_TO_ENABLE)


def install_registration_hook() -> None:
    """Run ``register()`` right after ``pcdet.models`` / ``pcdet.datasets`` execute (once each)."""
    if _installed:
        return
    _installed.append(True)
    for name in WATCHED:
        importhook.around_import(name, _track_depth)
        importhook.after_import(name, _register_when_outermost)


#: OpenPCDet's optimiser module as ``tools/train.py`` imports it (``pcdet_seal.optim.TOOLS_MODULE``);
#: named here so that the start-up hook does not import torch before anything needs it.
OPTIMIZATION_MODULE = "train_utils.optimization"


def _patch_tools_optimization(module: ModuleType) -> None:
    from . import optim

    optim.patch_tools_optimization(module)


def install_optimizer_hook() -> None:
    """Patch OpenPCDet's ``tools/train_utils/optimization`` right after it is imported, so that
    ``tools/train.py`` builds the plugin's optimizer names (:mod:`pcdet_seal.optim`)."""
    importhook.after_import(OPTIMIZATION_MODULE, _patch_tools_optimization)


def on_first_pcdet_import() -> None:
    """CPU mode (if ``PCDET_SEAL_CPU=1``), the unbuilt-checkout hint, the registration hook and
    the optimizer hook."""
    from . import compat

    if env_flag(CPU_ENV, False):
        compat.enable_cpu_mode()
    elif not compat.cpu_mode_enabled():
        importhook.supply_if_missing("pcdet.version", _explain_missing_version)
    install_registration_hook()
    install_optimizer_hook()

"""OpenPCDet without CUDA (the plugin's CPU mode) and fixes for current PyTorch.

``enable_cpu_mode()`` must run before ``import pcdet`` (or set ``PCDET_SEAL_CPU=1`` and let the
start-up hook do it). Every change is listed in :data:`PATCHES`. Importing this package is cheap:
it imports neither torch nor pcdet.
"""
from __future__ import annotations

import logging
import os
import sys

from pcdet_seal_autoload import AUTOLOAD_ENV, CPU_ENV, env_flag

from .patches import CPU_MODE, PATCHES, REGISTRATION, Patch, apply_stage, patch_status, patch_table_markdown
from .placeholders import CompiledOpUnavailable, ModuleUnavailable

__all__ = [
    "PATCHES",
    "CompiledOpUnavailable",
    "CpuModeRequired",
    "ModuleUnavailable",
    "Patch",
    "apply_version_fixes",
    "cpu_mode_enabled",
    "enable_cpu_mode",
    "patch_status",
    "patch_table_markdown",
    "require_cuda_or_cpu_mode",
]

logger = logging.getLogger(__name__)

HOW_TO_ENABLE = (f"set {CPU_ENV}=1 in the environment (or call pcdet_seal.compat.enable_cpu_mode() "
                 "before the first `import pcdet`)")

_cpu_mode = False


class CpuModeRequired(RuntimeError):
    """No CUDA device and CPU mode is off: OpenPCDet would fail at its first ``.cuda()``."""


def enable_cpu_mode() -> dict[str, str]:
    """Switch on CPU mode: install the ``cpu_mode`` patches (idempotent; each logged once).

    Also sets ``PCDET_SEAL_CPU=1`` so that child processes (data-loader workers, ``tools/*.py``
    started from here) get CPU mode through the start-up hook. Returns ``{patch: status}``.
    """
    global _cpu_mode
    if not _cpu_mode and "pcdet" in sys.modules:
        logger.warning("pcdet-seal: CPU mode enabled after `import pcdet`; modules already imported only get "
                       "the patches that can act on loaded modules (call enable_cpu_mode() earlier)")
    _cpu_mode = True
    os.environ[CPU_ENV] = "1"
    return apply_stage(CPU_MODE)


def cpu_mode_enabled() -> bool:
    """True once :func:`enable_cpu_mode` ran in this process."""
    return _cpu_mode


def apply_version_fixes() -> dict[str, str]:
    """Install the ``registration`` patches (they apply with CUDA too); returns ``{patch: status}``."""
    return apply_stage(REGISTRATION)


def require_cuda_or_cpu_mode(what: str = "pcdet-seal") -> None:
    """Raise :class:`CpuModeRequired` (one line, says how to enable CPU mode) where OpenPCDet cannot run."""
    import torch

    if torch.cuda.is_available() or _cpu_mode:
        return
    if env_flag(CPU_ENV, False):  # asked for, but nothing acted on it
        raise CpuModeRequired(
            f"{what}: no CUDA device, and CPU mode is off although {CPU_ENV}={os.environ[CPU_ENV]} is set: the "
            f"variable takes effect through pcdet-seal's start-up hook at the first `import pcdet`, which "
            f"{AUTOLOAD_ENV}={os.environ.get(AUTOLOAD_ENV, '<unset>')} turns off (or the hook is not installed: "
            f"pip install -e <plugin>). Unset {AUTOLOAD_ENV}, or call pcdet_seal.compat.enable_cpu_mode() before "
            f"the first `import pcdet`")
    raise CpuModeRequired(f"{what}: no CUDA device and pcdet-seal's CPU mode is off; to run OpenPCDet on CPU, "
                          f"{HOW_TO_ENABLE}")

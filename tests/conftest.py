"""Test set-up: markers, CPU mode before any ``import pcdet``, and a skip summary.

Tests come in three kinds (see README): plain (always run), ``pcdet`` (need an importable
OpenPCDet) and ``gpu`` (need CUDA). The last line before pytest's own closing line says how
many tests were skipped for lack of pcdet, CUDA, spconv or (install tests, offline) the build
requirements, so a skip is never silent.
"""
from __future__ import annotations

import importlib.util

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
#: Skip reason of the install tests when neither pip nor this interpreter can build the package
#: (tests/test_registry_install.py uses the same text).
OFFLINE_BUILD_SKIP = "no build requirements offline"

# With no CUDA device, OpenPCDet (a source checkout) is only importable through the plugin's
# CPU mode, which must be switched on before the first ``import pcdet``.
_COMPAT = importlib.util.find_spec("pcdet_seal.compat")
if not HAS_CUDA and _COMPAT is not None and _COMPAT.origin not in (None, "namespace"):
    from pcdet_seal.compat import enable_cpu_mode

    enable_cpu_mode()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests, visibly, where there is no CUDA device."""
    if HAS_CUDA:
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA: no CUDA device on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Print how many tests were skipped for lack of pcdet / CUDA / spconv / offline build tools, and why."""
    counts = {"pcdet": 0, "CUDA": 0, "spconv": 0, "build": 0, "hook": 0, "other": 0}
    for report in terminalreporter.stats.get("skipped", []):
        reason = _skip_reason(report)
        keywords = getattr(report, "keywords", {}) or {}
        if OFFLINE_BUILD_SKIP in reason:
            counts["build"] += 1
        elif "start-up hook is not installed" in reason:  # says "pcdet-seal", which is not pcdet
            counts["hook"] += 1
        elif "CUDA" in reason or "gpu" in keywords:
            counts["CUDA"] += 1
        elif "pcdet" in reason or "OpenPCDet" in reason:
            counts["pcdet"] += 1
        elif "spconv" in reason:
            counts["spconv"] += 1
        else:
            counts["other"] += 1
    terminalreporter.write_line(
        "pcdet-seal skips: {pcdet} for lack of pcdet, {CUDA} for lack of CUDA, "
        "{spconv} for lack of spconv, {build} install tests for lack of build requirements offline, "
        "{hook} for lack of the installed start-up hook, {other} other".format(**counts)
    )

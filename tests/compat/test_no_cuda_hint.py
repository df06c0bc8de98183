"""Without CUDA and without CPU mode, the plugin's entry points say in one line how to turn CPU mode on."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcdet_seal_autoload import AUTOLOAD_ENV, CPU_ENV

HINT = "PCDET_SEAL_CPU=1"


def _env_without_cpu_mode() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (CPU_ENV, AUTOLOAD_ENV)}
    env["CUDA_VISIBLE_DEVICES"] = ""  # no CUDA device, also on a GPU machine
    env["PYTHONWARNINGS"] = "ignore"
    return env


def _last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def test_register_says_how_to_enable_cpu_mode():
    result = subprocess.run([sys.executable, "-c", "import pcdet_seal; pcdet_seal.register()"],
                            env=_env_without_cpu_mode(), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    last = _last_line(result.stderr)
    assert last.startswith("pcdet_seal.compat.CpuModeRequired:") and HINT in last, result.stderr[-2000:]


@pytest.mark.pcdet
def test_stock_train_py_says_how_to_enable_cpu_mode():
    spec = importlib.util.find_spec("pcdet")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs an OpenPCDet (pcdet) checkout on the path")
    tools = Path(list(spec.submodule_search_locations)[0]).parent / "tools"
    if not (tools / "train.py").is_file():
        pytest.skip(f"no tools/train.py next to pcdet at {tools.parent}")
    config = Path(__file__).resolve().parents[2] / "cfgs" / "demo" / "dsvt_centerpoint_tiny.yaml"
    result = subprocess.run([sys.executable, "train.py", "--cfg_file", str(config), "--extra_tag", "never_created"],
                            cwd=tools, env=_env_without_cpu_mode(), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert HINT in result.stderr, result.stderr[-3000:]
    assert not (tools.parent / "output" / "never_created").exists()

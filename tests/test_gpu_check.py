"""bench/gpu_check.py without a GPU: it lists exactly what is missing and stops (exit code 2)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run for real")
def test_without_cuda_it_lists_what_is_missing_and_stops(tmp_path, capsys):
    module = _gpu_check()
    out = tmp_path / "report.json"
    assert module.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "missing:" in err and "torch with CUDA" in err and "sees no CUDA device" in err
    assert "scikit-learn" not in err  # present here: only what is missing is listed
    assert not out.exists()
    names = [r["name"] for r in module.requirements()]
    assert names == ["torch with CUDA", "spconv for that CUDA", "scikit-learn", "pytest",
                     "OpenPCDet source checkout (CUDA ops built)", "pcdet-seal (this project)"]

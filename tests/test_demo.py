"""scripts/demo.py --quick end to end (stand-in teacher → pre-train → fine-tune pre-trained and
scratch → evaluate → pictures): the table JSON and the PNGs it writes, checked for content."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.pcdet, pytest.mark.spconv]
pytest.importorskip("pcdet", reason="the demo trains with OpenPCDet: needs an importable pcdet checkout")
pytest.importorskip("matplotlib", reason="the demo's pictures need matplotlib")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "PCDET_SEAL_CPU": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--quick", "--out", str(out)],
                         cwd=out, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return out, run.stdout + run.stderr, json.loads((out / "demo_results.json").read_text())


def test_quick_demo_writes_both_finetunes_and_their_ap(demo_run):
    _, log, results = demo_run
    assert "teacher: STAND-IN" in log
    assert results["preset"] == "quick" and results["teacher"]["teacher"] == "stand-in"
    for name in ("scratch", "pretrained"):
        run = results["finetune"][name]
        assert run["iterations"] == 2 and math.isfinite(run["final_loss"])
        ap = run["ap"]
        assert {"Vehicle/AP_BEV", "Vehicle/AP_3D", "Pedestrian/AP_BEV", "Cyclist/AP_3D", "mAP_BEV", "mAP_3D"} <= set(ap)
        assert {"mAP_BEV@0.3", "Vehicle/AP_3D@0.3"} <= set(ap)  # also scored at a loose IoU
        assert all(math.isnan(v) or 0.0 <= v <= 1.0 for k, v in ap.items() if "AP" in k)
        assert ap["detections_per_frame"] >= 0.0
    # only the pre-trained run loads weights, and it loads all of the encoder
    assert "transfer" not in results["finetune"]["scratch"]
    assert results["finetune"]["pretrained"]["transfer"] == {"vfe": "12/12", "backbone_3d": "213/213"}


def test_quick_demo_pretrains_with_a_real_mask_ratio_and_logs_the_table(demo_run):
    out, log, results = demo_run
    pre = results["pretrain"]
    assert pre["iterations"] == 2 and all(math.isfinite(v) for v in pre["history"]["loss"])
    assert 0.1 < pre["mask_ratio"] < 0.9  # the stand-in's class-dependent noise makes I2Mask mask
    assert Path(pre["checkpoint"]).is_file() and Path(pre["checkpoint"]).parent == out
    assert (out / "seal_cache_standin" / "meta.json").is_file()
    assert len(list((out / "seal_cache_standin").glob("synthetic_0_*.npz"))) == 4
    for stage in ("scenes + targets", "pre-train", "fine-tune scratch", "fine-tune pretrained", "total"):
        assert results["seconds"][stage] >= 0.0
    table = results["table"]
    assert "scratch" in table and "pre-trained" in table and "AP Vehicle 3D" in table
    assert table in log  # printed as written


def test_quick_demo_renders_the_pictures(demo_run):
    out, _, results = demo_run
    assert set(results["pictures"]) == {"targets_pca", "kmeans_clusters", "i2mask_partition", "i2mask_mask",
                                        "recon_error"}
    for path in map(Path, results["pictures"].values()):
        assert path.parent == out / "pictures"
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, path

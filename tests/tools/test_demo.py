"""scripts/demo.py --quick end to end (stand-in teacher → pre-train → fine-tune pre-trained and
scratch → evaluate → pictures, one cell of the study grid): the table JSON and the PNGs it writes,
checked for content; the committed study's spread is quoted only for the same cell."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcdet_seal_autoload import CPU_ENV

pytestmark = [pytest.mark.pcdet, pytest.mark.spconv]
pytest.importorskip("pcdet", reason="the demo trains with OpenPCDet: needs an importable pcdet checkout")
pytest.importorskip("matplotlib", reason="the demo's pictures need matplotlib")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    env = {**os.environ, CPU_ENV: "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
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
        assert run["finetune_iters"] == 2 and math.isfinite(run["finetune_loss_last"])
        assert run["budget"] == 0.5 and run["labelled_frames"] == 2  # the study grid's label-scarce cell
        assert set(run["ap"]) == set(run["ap_loose"]) == {"Vehicle", "Pedestrian", "Cyclist"}  # also a loose IoU
        values = [v for ap in (run["ap"], run["ap_loose"]) for c in ap.values() for v in c.values()]
        assert all(v is None or 0.0 <= v <= 100.0 for v in values + [run["map_bev"], run["map_3d"]])
        assert run["detections_per_frame"] >= 0.0
    # only the pre-trained run loads weights, and it loads all of the encoder
    assert results["finetune"]["scratch"]["transfer"] is None
    assert results["finetune"]["pretrained"]["transfer"] == {"vfe": "12/12", "backbone_3d": "213/213"}
    # the demo's cell is not the committed study's (quick grid): no spread to quote
    assert results["committed_delta"] is None
    assert "spread not measured for this setting" in results["table"].splitlines()[0]


def test_quick_demo_pretrains_with_a_real_mask_ratio_and_logs_the_table(demo_run):
    out, log, results = demo_run
    pre = results["pretrain"]
    assert pre["arm"] == "picture" and pre["iterations"] == 4 and math.isfinite(pre["loss_last"])
    assert 0.1 < pre["mask_ratio"] < 0.9  # the stand-in's class-dependent noise makes I2Mask mask
    assert Path(pre["checkpoint"]).is_file() and Path(pre["checkpoint"]).parent == out / "pretrain"
    assert (out / "seal_cache_standin" / "meta.json").is_file()
    assert len(list((out / "seal_cache_standin").glob("synthetic_0_*.npz"))) == 4
    for stage in ("pre-train", "fine-tune + eval scratch", "fine-tune + eval pretrained", "total"):
        assert results["seconds"][stage] >= 0.0
    table = results["table"]
    assert table.startswith("pre-trained (picture) − scratch: ")
    assert f"predicting the mean target gives seal {pre['loss_seal_predict_mean_last']:.4f}" in table
    assert "scratch" in table and "pre-trained" in table and "AP Vehicle 3D" in table and "@IoU 0.3" in table
    assert table in log  # printed as written
    from pcdet_seal.tools.cli.demo import table as demo_table

    spread = {"mean": 1.5, "std": 2.25, "n": 5, "seed": 0, "seed_delta": -0.5}
    quoted = demo_table({**results, "committed_delta": spread})
    assert "the committed study measured +1.50 ± 2.25 (std over 5 seeds) for this cell, -0.50 for seed 0" in quoted
    study = json.loads((out / "study.json").read_text())  # the study's own record of the same cell
    assert {r["arm"] for r in study["runs"]} == {"scratch", "picture"} and study["probes"] == []
    assert study["config_hash"] == results["config_hash"]


def test_committed_spread_is_quoted_only_for_the_same_cell(tmp_path):
    from pcdet_seal.tools.cli import demo

    runs = [{"arm": arm, "seed": seed, "budget": 0.125, "map_bev": value, "map_3d": value,
             "ap": {"Vehicle": {"bev": value, "3d": value}}}
            for arm, seed, value in (("scratch", 0, 10.0), ("scratch", 1, 12.0), ("picture", 0, 14.0),
                                     ("picture", 1, 14.0))]
    from dataclasses import asdict, replace

    from pcdet_seal.tools.study import ARMS

    arms = {name: asdict(ARMS[name]) for name in ("scratch", "picture")}
    path = tmp_path / "study.json"
    path.write_text(json.dumps({"config_hash": "abc", "runs": runs, "probes": [], "arms": arms}))
    assert demo.committed_delta("abc", 0.125, path=path) == {"mean": 3.0, "std": pytest.approx(2 ** 0.5), "n": 2,
                                                             "seed": None, "seed_delta": None}
    # the committed study's own gain for the demo's seed, to compare with the demo's
    assert demo.committed_delta("abc", 0.125, path=path, seed=1)["seed_delta"] == 2.0
    assert demo.committed_delta("abc", 0.125, path=path, seed=7)["seed_delta"] is None  # seed not in the study
    assert demo.committed_delta("other", 0.125, path=path) is None
    assert demo.committed_delta("abc", 1.0, path=path) is None
    assert demo.committed_delta("abc", 0.125, "picture_norm", path=path) is None  # not in that study
    assert demo.committed_delta("abc", 0.125, path=tmp_path / "missing.json") is None
    # the hash leaves arms out: a study whose picture arm was defined otherwise is another cell
    other = {**arms, "picture": asdict(replace(ARMS["picture"], overrides={"MODEL.MASKING.NAME": "RandomMask"}))}
    path.write_text(json.dumps({"config_hash": "abc", "runs": runs, "probes": [], "arms": other}))
    assert demo.committed_delta("abc", 0.125, path=path) is None


def test_quick_demo_renders_the_pictures(demo_run):
    out, _, results = demo_run
    assert set(results["pictures"]) == {"targets_pca", "kmeans_clusters", "i2mask_partition", "i2mask_mask",
                                        "recon_error"}
    for path in map(Path, results["pictures"].values()):
        assert path.parent == out / "pictures"
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, path

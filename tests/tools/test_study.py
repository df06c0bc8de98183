"""bench/study.py: every arm's configs differ only where intended, the summary pairs seeds, and
``--quick`` runs end to end into a schema-checked, resumable study.json."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcdet_seal.tools import study as st
from pcdet_seal_autoload import CPU_ENV

needs_pcdet = pytest.mark.pcdet

ROOT = Path(__file__).resolve().parents[2]


def _flatten(obj, prefix=""):
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: obj}


@pytest.fixture(scope="module")
def bases():
    pytest.importorskip("pcdet", reason="the study's configs load through OpenPCDet: needs an importable pcdet checkout")
    return st.load_base_configs("all")


@needs_pcdet
def test_finetune_configs_are_identical_across_arms_and_nested_budgets(bases):
    _, fine = bases
    grid = st.Grid()
    # fine-tuning configs depend on the budget only: there is no arm argument to differ by
    small, full = st.finetune_config(fine, grid, st.SMALL), st.finetune_config(fine, grid, st.FULL)
    assert small.DATA_CONFIG.NUM_FRAMES.train < full.DATA_CONFIG.NUM_FRAMES.train == grid.pool_frames
    assert small.DATA_CONFIG.SEED.train == full.DATA_CONFIG.SEED.train  # the small pool is a prefix of the full one
    for budget, cfg in ((st.SMALL, small), (st.FULL, full)):
        per_epoch = math.ceil(cfg.DATA_CONFIG.NUM_FRAMES.train / grid.batch_size)
        assert cfg.OPTIMIZATION.NUM_EPOCHS * per_epoch == grid.finetune_iters[budget]
    diff = {k for k, v in _flatten(small).items() if _flatten(full)[k] != v}
    assert diff == {"DATA_CONFIG.NUM_FRAMES.train", "OPTIMIZATION.NUM_EPOCHS"}
    assert small.OPTIMIZATION.OPTIMIZER == "adamw_onecycle"


@needs_pcdet
def test_pretraining_configs_differ_only_in_the_intended_keys(bases, tmp_path):
    pre, _ = bases
    grid = st.Grid()
    picture = _flatten(st.pretrain_config(pre, grid, st.ARMS["picture"], tmp_path, None))
    assert picture["MODEL.SEAL_TARGET.MODE"] == "cache" and picture["MODEL.MASKING.NAME"] == "I2Mask"
    assert picture["MODEL.DENSE_HEAD.LOSS_WEIGHTS"] == [1.0, 3.0]
    assert picture["MODEL.DENSE_HEAD.SEAL_TARGET_NORM"] == "none"  # the paper's raw targets
    expected = {
        "coord": {"MODEL.DENSE_HEAD.LOSS_WEIGHTS": [1.0, 0.0], "MODEL.MASKING.NAME": "RandomMask",
                  "MODEL.MASKING.MASK_RATIO": 0.4321},
        "seal": {"MODEL.DENSE_HEAD.LOSS_WEIGHTS": [0.0, 3.0]},
        "picture_random": {"MODEL.MASKING.NAME": "RandomMask", "MODEL.MASKING.MASK_RATIO": 0.4321},
        "picture_norm": {"MODEL.DENSE_HEAD.SEAL_TARGET_NORM": "channel"},
        "picture_short": {"OPTIMIZATION.NUM_EPOCHS": grid.pretrain_epochs // 2},
        "picture_long": {"OPTIMIZATION.NUM_EPOCHS": grid.pretrain_epochs * 2},
    }
    assert set(expected) | {"picture"} == {name for name, arm in st.ARMS.items() if arm.overrides is not None}
    for name, changes in expected.items():
        cfg = _flatten(st.pretrain_config(pre, grid, st.ARMS[name], tmp_path, 0.43214))
        diff = {k: v for k, v in cfg.items() if picture[k] != v}
        assert diff == changes, name
    with pytest.raises(ValueError, match="picture arm's measured mask ratio"):
        st.pretrain_config(pre, grid, st.ARMS["coord"], tmp_path, None)
    with pytest.raises(KeyError, match="MODEL.MASKING.NOPE"):
        st.set_key(st.pretrain_config(pre, grid, st.ARMS["picture"], tmp_path, None), "MODEL.MASKING.NOPE", 1)


@needs_pcdet
def test_stock_optimizer_switches_every_arm(bases):
    pre, fine = st.load_base_configs("stock")
    assert pre.OPTIMIZATION.OPTIMIZER == fine.OPTIMIZATION.OPTIMIZER == "adam_onecycle"
    assert st.config_hash(st.Grid(), "stock", pre, fine) != st.config_hash(st.Grid(), "all", *bases)


def test_summary_pairs_each_seed_with_its_scratch_run():
    def run(arm, seed, value):
        return {"arm": arm, "seed": seed, "budget": 0.125, "map_bev": value, "map_3d": value,
                "ap": {"Vehicle": {"bev": value, "3d": value}}}

    data = {"runs": [run("scratch", 0, 10.0), run("scratch", 1, 20.0), run("picture", 0, 13.0),
                     run("picture", 1, 21.0)],
            "probes": [{"arm": "scratch", "seed": 0, "probe_miou": 30.0, "majority_miou": 5.0},
                       {"arm": "scratch", "seed": 1, "probe_miou": 34.0, "majority_miou": 5.0}]}
    summary = st.summarize(data)
    picture = next(r for r in summary["detection"] if r["arm"] == "picture")
    assert picture["delta_per_seed"] == [{"seed": 0, "delta": 3.0}, {"seed": 1, "delta": 1.0}]
    assert picture["delta_map_bev_vs_scratch"]["mean"] == 2.0
    assert abs(picture["delta_map_bev_vs_scratch"]["std"] - math.sqrt(2.0)) < 1e-12
    assert summary["probe"][0]["probe_miou"]["mean"] == 32.0
    assert "+2.0 ± 1.4" in st.markdown_table({**data, "summary": summary, "grid": {"val_frames": 1, "pool_frames": 1},
                                              "config_hash": "x", "commit": "y", "optimizer": "all", "seeds": [0, 1]})


def test_per_seed_differences_name_their_seed_whatever_the_run_order():
    """A resumed study appends rows in run order (seed 3 before seed 0, say) and a seed may lack its
    scratch run: every per-seed difference must still sit next to its own seed, in the summary and
    in study.md's per-seed table."""
    def run(arm, seed, value):
        return {"arm": arm, "seed": seed, "budget": 1.0, "map_bev": value, "map_3d": value,
                "ap": {"Vehicle": {"bev": value, "3d": value}}}

    data = {"runs": [run("picture", 3, 30.0), run("scratch", 0, 10.0), run("picture", 1, 5.0), run("picture", 0, 12.0),
                     run("scratch", 3, 20.0), run("coord", 0, 10.03)],  # no scratch run for seed 1
            "probes": []}
    summary = st.summarize(data)
    picture = next(r for r in summary["detection"] if r["arm"] == "picture")
    assert picture["seeds"] == [0, 1, 3]
    assert picture["delta_per_seed"] == [{"seed": 0, "delta": 2.0}, {"seed": 3, "delta": 10.0}]
    assert picture["delta_map_bev_vs_scratch"]["mean"] == 6.0
    table = st.markdown_table({**data, "summary": summary, "grid": {"val_frames": 1, "pool_frames": 1},
                               "config_hash": "x", "commit": "y", "optimizer": "all", "seeds": [0, 1, 3]})
    assert "| budget | arm | seed 0 | seed 3 | better than scratch |" in table
    assert "| 1 | picture | +2.0 | +10.0 | 2/2 |" in table
    assert "| 1 | coord | +0.0 | – | 0/1 |" in table  # counted as shown: +0.03 is no win


@needs_pcdet
@pytest.mark.spconv
def test_quick_study_writes_a_schema_checked_study_json_and_resumes(tmp_path):
    pytest.importorskip("pcdet", reason="the study trains with OpenPCDet: needs an importable pcdet checkout")
    out = tmp_path / "study"
    env = {**os.environ, CPU_ENV: "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    cmd = [sys.executable, str(ROOT / "bench" / "study.py"), "--out", str(out), "--quick", "--seeds", "0",
           "--no-progress"]
    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    data = json.loads((out / "study.json").read_text())
    assert {"commit", "machine", "config_hash", "runs", "probes"} <= set(data)
    arms = {r["arm"] for r in data["runs"]}
    assert arms == {"scratch", "coord", "picture", "picture_random"}  # seal: probe only (the priority grid)
    for row in data["runs"]:
        assert {"arm", "budget", "seed", "pretrain_iters", "map_bev", "map_3d", "ap", "mask_ratio", "seconds"} <= set(row)
        assert set(row["ap"]) == {"Vehicle", "Pedestrian", "Cyclist"}
        assert all(set(v) == {"bev", "3d"} for v in row["ap"].values())
        assert row["budget"] in (0.5, 1.0) and row["seed"] == 0
        if row["arm"] == "scratch":
            assert row["pretrain_iters"] is None and row["mask_ratio"] is None and row["transfer"] is None
        else:
            assert row["pretrain_iters"] > 0 and 0.0 < row["mask_ratio"] < 1.0
            assert row["transfer"] == {"vfe": "12/12", "backbone_3d": "213/213"}
    ratios = {p["arm"]: p["mask_ratio"] for p in data["pretrain"]}
    for arm in ("coord", "picture_random"):  # RandomMask at picture's measured ratio
        assert next(p for p in data["pretrain"] if p["arm"] == arm)["overrides"]["MODEL.MASKING.MASK_RATIO"] == \
            round(ratios["picture"], 4)
    assert {p["arm"] for p in data["probes"]} == {"scratch", "coord", "seal", "picture", "picture_random"}
    assert all(0.0 <= p["probe_miou"] <= 100.0 for p in data["probes"])
    table = (out / "study.md").read_text()
    assert table.count("| scratch |") == 3  # two budgets and the probe
    assert "(n=1)" in table and " ± " not in table.split("\n", 1)[1]  # one seed: no spread is reported
    assert (out / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    units = len(data["runs"]) + len(data["probes"]) + len(data["pretrain"])
    assert f"resuming {out / 'study.json'}: {units} of {units} units already done" in again.stdout
    assert json.loads((out / "study.json").read_text())["runs"] == data["runs"]

    other = subprocess.run(cmd + ["--optimizer", "stock"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=900)
    assert other.returncode != 0 and "choose another --out" in other.stderr


@needs_pcdet
def test_picture_pretrains_per_seed_and_other_arms_share_one_pretraining(bases, tmp_path):
    study = st.Study(out=tmp_path / "s", seeds=(3, 4), progress=False)
    pretrain = [u for u in study.units() if u[0] == "pretrain"]
    # picture per study seed; every other pre-training arm once, with the shared seed, after the
    # picture run (same shared seed) whose measured mask ratio RandomMask copies
    assert pretrain[0] == ("pretrain", "picture", 3)
    shared = study.grid.shared_pretrain_seed
    assert pretrain.index(("pretrain", "picture", shared)) < pretrain.index(("pretrain", "coord", shared))
    assert sorted(pretrain) == sorted([("pretrain", "picture", 3), ("pretrain", "picture", 4),
                                       ("pretrain", "picture", shared), ("pretrain", "coord", shared),
                                       ("pretrain", "seal", shared), ("pretrain", "picture_random", shared)])
    store = st.StudyFile(tmp_path / "s", {"commit": "c", "config_hash": study.hash, "seeds": [3, 4], "arms": {}})
    for arm, seed in (("picture", 4), ("coord", shared)):
        store.put("pretrain", {"arm": arm, "seed": seed, "iterations": 1}, key=("arm", "seed"))
    ckpt, row = study.initial_encoder(store, "picture", 4)
    assert ckpt.name == "picture_seed4.pth" and row["seed"] == 4
    ckpt, row = study.initial_encoder(store, "coord", 4)
    assert ckpt.name == f"coord_seed{shared}.pth" and row["seed"] == shared
    assert study.initial_encoder(store, "scratch", 4) == (None, None)


def test_report_writes_table_and_chart_of_a_partial_study_without_running(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_study", ROOT / "bench" / "study.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def run(arm, seed, value):
        return {"arm": arm, "seed": seed, "budget": 0.125, "map_bev": value, "map_3d": value,
                "ap": {"Vehicle": {"bev": value, "3d": value}}}

    data = {"config_hash": "h", "commit": "c", "optimizer": "all", "seeds": [0, 1], "grid": {"val_frames": 1,
            "pool_frames": 1}, "runs": [run("scratch", 0, 10.0), run("scratch", 1, 20.0), run("picture", 0, 13.0),
                                        run("picture", 1, 21.0)], "probes": [], "pretrain": []}
    (tmp_path / "study.json").write_text(json.dumps(data))
    assert bench.main(["--out", str(tmp_path), "--report"]) == 0
    assert "+2.0 ± 1.4" in (tmp_path / "study.md").read_text()
    assert (tmp_path / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "study.json").read_text()) == data  # nothing run, nothing rewritten
    assert bench.main(["--out", str(tmp_path / "none"), "--report"]) == 2
    assert "no readable study" in capsys.readouterr().err


def test_resumed_study_keeps_other_arms_and_refuses_a_redefined_arm(tmp_path):
    """The hash leaves the arm table out: adding an arm keeps a study's results, but an arm whose
    overrides changed since its rows were written is refused."""
    from dataclasses import asdict, replace

    header = {"commit": "c", "config_hash": "h", "seeds": [0], "arms": {"picture": asdict(st.ARMS["picture"])}}
    st.StudyFile(tmp_path, header).save()
    more = {**header, "arms": {"picture": asdict(replace(st.ARMS["picture"], description="reworded")),
                               "picture_norm": asdict(st.ARMS["picture_norm"])}}
    store = st.StudyFile(tmp_path, more)
    assert store.resumed and set(store.data["arms"]) == {"picture", "picture_norm"}
    store.save()
    changed = {**header, "arms": {"picture_norm": asdict(replace(st.ARMS["picture_norm"], iters_factor=2.0))}}
    with pytest.raises(st.StudySetupError, match="arm 'picture_norm' was run with another definition"):
        st.StudyFile(tmp_path, changed)


@needs_pcdet
def test_finetune_iters_switch_changes_every_budget_and_the_hash(bases, tmp_path, capsys):
    """``--finetune-iters`` is a recipe change for every arm at every budget: another grid, another
    config hash (a study folder of the default recipe is never resumed with it); counts that are not
    whole epochs at some budget are refused before anything runs."""
    import importlib.util

    grid = st.Grid().with_finetune_iters(1200)
    assert grid.finetune_iters == {"small": 1200, "full": 1200}
    assert (grid.finetune_epochs("small"), grid.finetune_epochs("full")) == (200, 25)
    assert st.config_hash(grid, "all", *bases) != st.config_hash(st.Grid(), "all", *bases)
    spec = importlib.util.spec_from_file_location("bench_study", ROOT / "bench" / "study.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--out", str(tmp_path / "s"), "--finetune-iters", "1000", "--arms", "scratch",
                       "--no-progress"]) == 2
    assert "1000 fine-tuning iterations at budget 'small' are not a whole number of 6-iteration epochs" \
        in capsys.readouterr().err
    assert not (tmp_path / "s" / "study.json").exists()
    with pytest.raises(SystemExit) as refused:
        bench.main(["--out", str(tmp_path / "q"), "--quick", "--finetune-iters", "10"])
    assert refused.value.code == 2 and "not --quick" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()
    for bad in (0, -48, 1.5):
        with pytest.raises(st.StudySetupError, match="positive whole number"):
            st.Grid().with_finetune_iters(bad)


def test_budget_label_names_the_fraction_in_percent():
    assert st.budget_label(1.0) == "all labels"
    assert st.budget_label(0.125) == "12.5 % of the labels"
    assert st.budget_label(0.5) == "50 % of the labels"


def test_summary_lists_arms_in_ARMS_order_for_detection_and_probe():
    def run(arm, budget):
        return {"arm": arm, "seed": 0, "budget": budget, "map_bev": 1.0, "map_3d": 1.0,
                "ap": {"Vehicle": {"bev": 1.0, "3d": 1.0}}}

    def probe(arm):
        return {"arm": arm, "seed": 0, "probe_miou": 1.0, "majority_miou": 0.5}

    # run order differs from ARMS order on purpose: the summary must not follow it
    data = {"runs": [run("picture_norm", 1.0), run("picture", 1.0), run("coord", 0.125), run("scratch", 1.0),
                     run("picture_random", 1.0), run("scratch", 0.125)],
            "probes": [probe("picture_norm"), probe("picture"), probe("coord"), probe("scratch")]}
    summary = st.summarize(data)
    assert [(r["budget"], r["arm"]) for r in summary["detection"]] == [
        (0.125, "scratch"), (0.125, "coord"), (1.0, "scratch"), (1.0, "picture"), (1.0, "picture_random"),
        (1.0, "picture_norm")]  # ARMS order, not alphabetical
    assert [r["arm"] for r in summary["probe"]] == ["scratch", "coord", "picture", "picture_norm"]


def test_cpu_model_reads_cpuinfo_and_falls_back(tmp_path, monkeypatch):
    """Bits agree across runs of a seed only on the same machine (docs/architecture.md §4.5): the
    study names the CPU in its header and in every row."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Test CPU 9000 @ 2.0GHz\n\nprocessor\t: 1\n"
                    "model name\t: Test CPU 9000 @ 2.0GHz\n")
    assert st.cpu_model(info) == "Test CPU 9000 @ 2.0GHz"
    monkeypatch.setattr(st.platform, "processor", lambda: "armv8")
    assert st.cpu_model(tmp_path / "missing") == "armv8"
    (tmp_path / "arm").write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")  # no model name line
    assert st.cpu_model(tmp_path / "arm") == "armv8"
    monkeypatch.setattr(st.platform, "processor", lambda: "")
    assert st.cpu_model(tmp_path / "missing") == "unknown"
    assert "cpu" in st.machine_info()


def test_rows_record_the_cpu_of_the_run_that_wrote_them(tmp_path):
    header = {"commit": "c", "config_hash": "h", "seeds": [0], "arms": {}, "machine": {"cpu": "first CPU"}}
    st.StudyFile(tmp_path, header).put("probes", {"arm": "scratch", "seed": 0}, key=("arm", "seed"))
    resumed = st.StudyFile(tmp_path, {**header, "machine": {"cpu": "second CPU"}})
    resumed.put("probes", {"arm": "scratch", "seed": 1}, key=("arm", "seed"))
    rows = json.loads((tmp_path / "study.json").read_text())["probes"]
    assert [(r["seed"], r["cpu"]) for r in rows] == [(0, "first CPU"), (1, "second CPU")]

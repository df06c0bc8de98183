"""Weight transfer: ``scripts/check_transfer.py`` on in-process checkpoints (complete, renamed keys,
not a checkpoint), and the stock ``tools/train.py`` running the tiny pre-training through the
``.pth`` start-up hook, whose checkpoint then transfers 100 % into the tiny fine-tuning config."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

from pcdet_seal_autoload import AUTOLOAD_ENV, CPU_ENV

pytestmark = [pytest.mark.pcdet, pytest.mark.spconv]
pytest.importorskip("pcdet", reason="needs an importable OpenPCDet (pcdet) checkout")
pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")

from helpers_models import TINY_FINETUNE, TINY_PRETRAIN, dataset, load, network, small_frames  # noqa: E402
from pcdet_seal.tools.cli import check_transfer  # noqa: E402


@pytest.fixture(scope="module")
def pretrain_state():
    from pcdet_seal import registry

    registry.register()
    cfg = small_frames(load(TINY_PRETRAIN))
    return network(cfg, dataset(cfg)).state_dict()


def _save(path, state):
    torch.save({"model_state": state, "epoch": 1}, path)  # what OpenPCDet's checkpoint_state writes
    return str(path)


def test_check_transfer_passes_on_a_pretraining_checkpoint(pretrain_state, tmp_path, capsys):
    rc = check_transfer.main([_save(tmp_path / "ckpt.pth", pretrain_state), str(TINY_FINETUNE)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "OK: 100 % of vfe.*, backbone_3d.* load" in out
    vfe = sum(1 for k in pretrain_state if k.startswith("vfe."))
    bb3d = sum(1 for k in pretrain_state if k.startswith("backbone_3d."))
    assert f"{vfe:>5}/{vfe:<5}" in out and f"{bb3d:>5}/{bb3d:<5}" in out


def test_check_transfer_fails_clearly_on_renamed_keys(pretrain_state, tmp_path, capsys):
    renamed = {k.replace("backbone_3d.stage_1.", "backbone_3d.stages.1."): v for k, v in pretrain_state.items()}
    rc = check_transfer.main([_save(tmp_path / "renamed.pth", renamed), str(TINY_FINETUNE)])
    captured = capsys.readouterr()
    assert rc == 1
    assert "FAIL" in captured.err and "backbone_3d.stage_1.0.encoder_list" in captured.err
    assert "renamed?" in captured.err and "backbone_3d.stages.1." in captured.err


def test_check_transfer_rejects_a_file_that_is_not_a_checkpoint(pretrain_state, tmp_path, capsys):
    path = tmp_path / "bare.pth"
    torch.save(pretrain_state, path)  # a bare state dict, not {'model_state': ...}
    assert check_transfer.main([str(path), str(TINY_FINETUNE)]) == 2
    assert "model_state" in capsys.readouterr().err


def test_check_transfer_refuses_a_checkpoint_with_nan_naming_the_tensor(pretrain_state, tmp_path, capsys):
    state = {k: v.clone() for k, v in pretrain_state.items()}
    key = next(k for k, v in state.items() if k.startswith("backbone_3d.") and v.is_floating_point())
    state[key].view(-1)[0] = float("nan")
    rc = check_transfer.main([_save(tmp_path / "nan.pth", state), str(TINY_FINETUNE)])
    captured = capsys.readouterr()
    assert rc == 1 and "OK" not in captured.out
    assert "FAIL: 1 checkpoint tensors hold NaN/inf" in captured.err
    assert f"{key} (1 of {state[key].numel()} values): NaN/inf in the checkpoint" in captured.err


def test_check_transfer_prints_both_shapes_of_a_mismatch(pretrain_state, tmp_path, capsys):
    state = dict(pretrain_state)
    key = next(k for k, v in state.items() if k.startswith("vfe.") and v.ndim == 2)
    state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    assert check_transfer.main([_save(tmp_path / "shape.pth", state), str(TINY_FINETUNE)]) == 1
    net = list(pretrain_state[key].shape)
    assert f"{key}: shape {[net[0] + 1, net[1]]} in the checkpoint, {net} in the network" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["text", "empty", "list", "not_tensors"])
def test_check_transfer_names_the_file_and_what_was_expected(tmp_path, capsys, kind):
    path = tmp_path / f"{kind}.pth"
    if kind == "text":
        path.write_text("hello\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "list":
        torch.save([1, 2], path)
    else:
        torch.save({"model_state": [1, 2]}, path)
    assert check_transfer.main([str(path), str(TINY_FINETUNE)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and "expected an OpenPCDet checkpoint" in err
    assert "Traceback" not in err


def _hook_installed() -> bool:
    code = "import sys, pcdet_seal_autoload; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    site = [p for p in sys.path if p.endswith("site-packages")]
    pth = any(f.suffix == ".pth" and "pcdet_seal_autoload" in f.read_text(errors="ignore")
              for d in site for f in Path(d).glob("*.pth"))
    return out.returncode == 0 and pth


def test_stock_train_py_pretrains_through_the_startup_hook(tmp_path):
    """2 iterations (4 frames, batch 2) + the stock evaluation; no plugin import in the command."""
    from pcdet_seal.tools.config_network import pcdet_tools_dir

    if not _hook_installed():
        pytest.skip("the pcdet-seal .pth start-up hook is not installed (pip install -e . installs it)")
    tools = pcdet_tools_dir()
    # A copy under a unique folder: train.py writes to <OpenPCDet>/output/<cfg folder>/<cfg name>/<tag>,
    # so the run cannot collide with another one; the config is self-contained (no _BASE_CONFIG_).
    unique = f"pcdet_seal_test_{uuid.uuid4().hex[:8]}"
    cfg_copy = tmp_path / unique / "seal_pretrain_tiny.yaml"
    cfg_copy.parent.mkdir()
    shutil.copy(TINY_PRETRAIN, cfg_copy)
    output_root = tools.parent / "output"
    created_root = not output_root.exists()
    run_dir = output_root / Path(*cfg_copy.parent.parts[1:])  # train.py: output/<cfg folder minus its first part>
    out_dir = run_dir / "seal_pretrain_tiny" / "default"
    env = {**os.environ, CPU_ENV: "1"}
    env.pop(AUTOLOAD_ENV, None)
    cmd = [sys.executable, "train.py", "--cfg_file", str(cfg_copy), "--workers", "0",
           "--set", "DATA_CONFIG.NUM_FRAMES.train", "4", "DATA_CONFIG.NUM_FRAMES.test", "2",
           "OPTIMIZATION.BATCH_SIZE_PER_GPU", "2", "OPTIMIZATION.NUM_EPOCHS", "1",
           "DATA_CONFIG.SYNTHETIC.SENSOR.NUM_BEAMS", "8", "DATA_CONFIG.SYNTHETIC.SENSOR.AZIMUTH_STEPS", "256"]
    try:
        run = subprocess.run(cmd, cwd=tools, env=env, capture_output=True, text=True, timeout=600)
        log = run.stdout + run.stderr
        assert run.returncode == 0, log[-4000:]
        assert "Acc_iter 2" in log and "==> Done (loaded" in log
        ckpt = out_dir / "ckpt" / "checkpoint_epoch_1.pth"
        assert ckpt.is_file(), log[-2000:]
        state = torch.load(ckpt, map_location="cpu")["model_state"]
        assert not any("teacher" in k or k.startswith("seal_target.") for k in state)
        assert check_transfer.main([str(ckpt), str(TINY_FINETUNE)]) == 0
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        _remove_empty_parents(run_dir, stop=output_root)
        if created_root and output_root.exists() and not any(output_root.iterdir()):
            output_root.rmdir()


def _remove_empty_parents(path: Path, stop: Path) -> None:
    for parent in path.parents:
        if parent == stop or stop not in parent.parents:
            break
        try:
            parent.rmdir()
        except OSError:
            break

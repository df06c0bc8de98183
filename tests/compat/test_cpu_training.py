"""Tiny DSVT CenterPoint trains and evaluates on CPU in CPU mode: in process, and via stock tools/train.py."""
from __future__ import annotations

import importlib.util
import math
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

from pcdet_seal_autoload import AUTOLOAD_ENV, CPU_ENV

pcdet = pytest.importorskip("pcdet", reason="needs OpenPCDet (pcdet) importable: a checkout + CPU mode is enough")
pytestmark = pytest.mark.pcdet

from easydict import EasyDict  # noqa: E402
from pcdet.config import cfg_from_yaml_file  # noqa: E402
from pcdet.datasets import build_dataloader  # noqa: E402
from pcdet.models import build_network, load_data_to_gpu, model_fn_decorator  # noqa: E402

from pcdet_seal import compat, ops, register  # noqa: E402

CONFIG = Path(__file__).resolve().parents[2] / "cfgs" / "demo" / "dsvt_centerpoint_tiny.yaml"


@pytest.fixture(scope="module")
def cfg() -> EasyDict:
    if not torch.cuda.is_available() and not compat.cpu_mode_enabled():
        pytest.skip("no CUDA device and CPU mode is off")
    register()
    return cfg_from_yaml_file(str(CONFIG), EasyDict())


def test_two_iterations_and_evaluation_in_process(cfg):
    torch.manual_seed(0)
    train_set, train_loader, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=2, dist=False,
                                                  workers=0, training=True)
    model = build_network(model_cfg=cfg.MODEL, num_class=len(cfg.CLASS_NAMES), dataset=train_set)
    model.cuda()  # a no-op in CPU mode, as in tools/train.py
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model_func = model_fn_decorator()
    model.train()
    losses = []
    for batch in list(train_loader)[:2]:
        loss, tb_dict, _ = model_func(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert {"hm_loss_head_0", "loc_loss_head_0", "iou_loss_head_0", "iou_reg_loss_head_0"} <= set(tb_dict)
    for prefix in ("vfe.", "backbone_3d.", "backbone_2d.", "dense_head."):
        assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n.startswith(prefix)), prefix

    test_set, test_loader, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=2, dist=False,
                                                workers=0, training=False)
    model.eval()
    annos = []
    for batch in test_loader:
        load_data_to_gpu(batch)
        with torch.no_grad():
            pred_dicts, recall = model(batch)
        annos += test_set.generate_prediction_dicts(batch, pred_dicts, cfg.CLASS_NAMES)
    assert len(annos) == len(test_set) and "gt" in recall
    nms_thresh = dict(zip(cfg.CLASS_NAMES, cfg.MODEL.DENSE_HEAD.POST_PROCESSING.NMS_CONFIG.NMS_THRESH))
    for anno in annos:  # post-processing ran the routed class-specific NMS: no kept pair overlaps more
        for name, thresh in nms_thresh.items():
            boxes = torch.from_numpy(anno["boxes_lidar"][anno["name"] == name]).float()
            iou = ops.boxes_bev_iou(boxes, boxes) - torch.eye(len(boxes))
            assert iou.numel() == 0 or float(iou.max()) <= thresh + 1e-4, name
    text, results = test_set.evaluation(annos, cfg.CLASS_NAMES, eval_metric="synthetic")
    assert {"mAP_BEV", "mAP_3D", "Vehicle/AP_3D"} <= set(results) and "AP_3D" in text


# Test harness only: tools/test.py's repeat_eval_ckpt idles 30 s after the last checkpoint before it
# returns; the driver shortens time.sleep and then runs the unchanged tools/train.py as __main__.
_DRIVER = """
import runpy, sys, time
_sleep = time.sleep
time.sleep = lambda seconds: _sleep(min(seconds, 0.05))
sys.argv = ["train.py"] + sys.argv[1:]
runpy.run_path("train.py", run_name="__main__")
"""


def _tools_dir() -> Path:
    spec = importlib.util.find_spec("pcdet")
    tools = Path(list(spec.submodule_search_locations)[0]).parent / "tools"
    if not (tools / "train.py").is_file():
        pytest.skip(f"no tools/train.py next to pcdet at {tools.parent}")
    return tools


def test_stock_train_py_trains_and_evaluates_through_the_startup_hook(cfg):
    tools = _tools_dir()
    output_root = tools.parent / "output"
    root_existed = output_root.exists()
    tag = f"pcdet_seal_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    # tools/train.py: output_dir = ROOT/output/<cfg path minus first and last part>/<cfg stem>/<extra_tag>
    group = "/".join(str(CONFIG).split("/")[1:-1])
    output_dir = output_root / group / CONFIG.stem / tag
    env = dict(os.environ, **{CPU_ENV: "1"}, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop(AUTOLOAD_ENV, None)
    try:
        result = subprocess.run(
            [sys.executable, "-c", _DRIVER, "--cfg_file", str(CONFIG), "--workers", "0", "--extra_tag", tag,
             "--batch_size", "2", "--epochs", "1"],
            cwd=tools, env=env, capture_output=True, text=True, timeout=420)
        log = result.stdout + result.stderr
        assert result.returncode == 0, log[-4000:]
        assert "SyntheticLidarDataset: split 'train', 4 frames" in log
        assert "Train:    1/1 (100%) [   1/2" in log  # the second of two iterations
        assert (output_dir / "ckpt" / "checkpoint_epoch_1.pth").is_file()
        assert "==> Done (loaded" in log  # test.py reloaded the checkpoint (weights_only torch.load)
        assert "mAP_BEV" in log or "AP_BEV" in log
        assert "Epoch 1 has been evaluated" in log
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)
        _prune_empty_parents(output_dir.parent, stop=output_root)
        if not root_existed and output_root.exists() and not any(output_root.iterdir()):
            output_root.rmdir()


def _prune_empty_parents(path: Path, stop: Path) -> None:
    while path != stop and stop in path.parents and path.is_dir() and not any(path.iterdir()):
        path.rmdir()
        path = path.parent

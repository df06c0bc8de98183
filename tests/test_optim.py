"""``adamw_onecycle`` (pcdet_seal.optim): every trainable parameter of SealMAE and of the
fine-tuning CenterPoint-DSVT optimised exactly once, all moved after one step, ``adam_onecycle``'s
learning-rate and momentum curve, stock names untouched, ``--ckpt`` resume of the optimizer state."""
from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys
from types import ModuleType

import pytest
import torch
from easydict import EasyDict
from torch import nn

from pcdet_seal_autoload import AUTOLOAD_ENV, CPU_ENV

pytestmark = [pytest.mark.pcdet, pytest.mark.spconv]
pytest.importorskip("pcdet", reason="needs an importable OpenPCDet (pcdet) checkout")
pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")

from helpers_models import CFGS, SMALL_TEACHER, TINY_FINETUNE, TINY_PRETRAIN, batch, dataset, load, network, \
    small_frames  # noqa: E402

from pcdet_seal import optim  # noqa: E402

STOCK = "adam_onecycle"
PLUGIN = "adamw_onecycle"


def _optim_cfg(name: str, **changes) -> EasyDict:
    cfg = copy.deepcopy(load(TINY_PRETRAIN).OPTIMIZATION)
    cfg.OPTIMIZER = name
    cfg.update(changes)
    return cfg


def _optimised(optimizer) -> list[int]:
    return [id(p) for group in optimizer.param_groups for p in group["params"]]


@pytest.fixture(scope="module")
def tools() -> ModuleType:
    from pcdet_seal import registry
    from pcdet_seal.autoload import install_optimizer_hook

    registry.register()
    install_optimizer_hook()  # what the start-up hook does on the first `import pcdet`
    return optim.tools_module()


@pytest.fixture(scope="module")
def pretrain_cfg():
    return small_frames(load(TINY_PRETRAIN))


@pytest.fixture(scope="module")
def finetune_cfg():
    return small_frames(load(TINY_FINETUNE))


def _real_model(name: str):
    from pcdet_seal.tools.config_network import build_network_from_config

    cfg = load(CFGS / name)
    if cfg.MODEL.NAME == "SealMAE":
        cfg.MODEL.SEAL_TARGET.update({"RANDOM_TEACHER": True, "TEACHER_ARCH": SMALL_TEACHER, "TEACHER_CKPT": None})
    return build_network_from_config(cfg)


@pytest.mark.parametrize("name", ["seal_pretrain.yaml", "finetune/dsvt_voxel_waymo.yaml"],
                         ids=["SealMAE", "CenterPoint-DSVT"])
def test_every_trainable_parameter_is_optimised_exactly_once(tools, name):
    model = _real_model(name)
    trainable = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    ours = optim.build_optimizer_and_scheduler(model, _optim_cfg(PLUGIN), 10, 1).optimizer
    listed = _optimised(ours)
    assert len(listed) == len(set(listed)) == len(trainable)
    assert set(listed) == set(trainable)
    # The stock builder leaves out the parameters of non-leaf modules (OpenPCDet issue #960).
    stock = set(_optimised(tools.build_optimizer(model, _optim_cfg(STOCK))))
    left_out = sorted(trainable[i] for i in set(trainable) - stock)
    assert left_out and all(n.endswith(("in_proj_weight", "in_proj_bias", "pos_embedding")) for n in left_out)


@pytest.mark.parametrize("which", ["pretrain", "finetune"])
def test_one_step_moves_every_trainable_parameter(tools, pretrain_cfg, finetune_cfg, which):
    from pcdet.models import model_fn_decorator

    cfg = pretrain_cfg if which == "pretrain" else finetune_cfg
    ds = dataset(cfg)
    torch.manual_seed(0)
    model = network(cfg, ds)
    model.train()
    optimizer, scheduler, _ = optim.build_optimizer_and_scheduler(model, cfg.OPTIMIZATION, 10, 1)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    scheduler.step(0, 0)
    optimizer.zero_grad()
    loss, _, _ = model_fn_decorator()(model, batch(ds))
    loss.backward()
    optimizer.step()
    still = [n for n, p in model.named_parameters() if n in before and torch.equal(p, before[n])]
    assert not still, f"{len(still)} parameters did not move, e.g. {still[:5]}"


def _attention_model() -> nn.Module:
    """Parameters on a non-leaf module (``in_proj_weight``) and a norm layer: both groups used."""
    torch.manual_seed(0)
    return nn.Sequential(nn.MultiheadAttention(8, 2), nn.BatchNorm1d(8), nn.Linear(8, 8))


@pytest.mark.parametrize("iters_per_epoch,epochs", [(25, 2), (7, 3)])
def test_learning_rate_and_momentum_follow_adam_onecycle_step_by_step(tools, iters_per_epoch, epochs):
    cfg = {name: _optim_cfg(name) for name in (STOCK, PLUGIN)}
    runs = {name: optim.build_optimizer_and_scheduler(_attention_model(), cfg[name], iters_per_epoch, epochs)
            for name in (STOCK, PLUGIN)}
    assert type(runs[PLUGIN].scheduler) is type(runs[STOCK].scheduler) is tools.OneCycle
    for step in range(iters_per_epoch * epochs):
        values = {}
        for name, run in runs.items():
            run.scheduler.step(step, step // iters_per_epoch)
            groups = run.optimizer.opt.param_groups
            values[name] = (run.optimizer.lr, run.optimizer.mom, [g["lr"] for g in groups],
                            [g["betas"] for g in groups])
        assert values[PLUGIN] == values[STOCK], step
    assert runs[PLUGIN].optimizer.wd == runs[STOCK].optimizer.wd == cfg[PLUGIN].WEIGHT_DECAY


def test_decoupled_weight_decay_reaches_norm_layers(tools):
    model = _attention_model()
    run = optim.build_optimizer_and_scheduler(model, _optim_cfg(PLUGIN, WEIGHT_DECAY=0.5), 10, 1)
    norm = model[1].weight
    assert [id(p) for p in run.optimizer.opt.param_groups[1]["params"]] == [id(model[1].weight), id(model[1].bias)]
    run.scheduler.step(0, 0)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only the decay moves the weights
    before = norm.detach().clone()
    run.optimizer.step()
    torch.testing.assert_close(norm.detach(), before * (1 - 0.5 * run.optimizer.lr))


@pytest.mark.parametrize("total", [1, 3])
def test_few_iterations_do_not_divide_by_zero(tools, total):
    """``int(PCT_START * total) == 0``: OpenPCDet's OneCycle divides by zero, ours skips the empty
    warm-up and starts at the peak learning rate."""
    stock = optim.build_optimizer_and_scheduler(_attention_model(), _optim_cfg(STOCK, PCT_START=0.1), total, 1)
    with pytest.raises(ZeroDivisionError):
        stock.scheduler.step(0, 0)
    cfg = _optim_cfg(PLUGIN, PCT_START=0.1)
    ours = optim.build_optimizer_and_scheduler(_attention_model(), cfg, total, 1)
    lrs = []
    for step in range(total):
        ours.scheduler.step(step, 0)
        lrs.append(ours.optimizer.lr)
    assert lrs[0] == pytest.approx(cfg.LR)
    assert all(0 < a and b <= a for a, b in zip(lrs, lrs[1:]))


def test_stock_names_are_untouched_by_the_patch(tools):
    assert getattr(tools, "__pcdet_seal_patched__", False)
    stock_optimizer, stock_scheduler = tools.build_optimizer.__wrapped__, tools.build_scheduler.__wrapped__
    model = _attention_model()
    for name in ("adam", "sgd", STOCK):
        cfg = _optim_cfg(name)
        patched, original = tools.build_optimizer(model, cfg), stock_optimizer(model, cfg)
        assert type(patched) is type(original)
        assert [[id(p) for p in g["params"]] for g in patched.param_groups] == \
            [[id(p) for p in g["params"]] for g in original.param_groups], name
        sched, warm = tools.build_scheduler(patched, total_iters_each_epoch=10, total_epochs=2, last_epoch=-1,
                                            optim_cfg=cfg)
        ref, ref_warm = stock_scheduler(original, total_iters_each_epoch=10, total_epochs=2, last_epoch=-1,
                                        optim_cfg=cfg)
        assert type(sched) is type(ref) and warm is ref_warm is None
        if name == STOCK:
            assert [(a, b, f.args) for a, b, f in sched.lr_phases] == [(a, b, f.args) for a, b, f in ref.lr_phases]
    with pytest.raises(NotImplementedError):  # an unknown name still fails as in OpenPCDet
        tools.build_optimizer(model, _optim_cfg("adamw"))


def test_patch_applies_only_to_openpcdet_tools_module(tmp_path):
    (tmp_path / "optimization.py").write_text("def build_optimizer(m, c):\n    return 'theirs'\n"
                                              "def build_scheduler(*a, **k):\n    return 'theirs'\n")
    other = ModuleType(optim.TOOLS_MODULE)
    other.__file__ = str(tmp_path / "optimization.py")
    exec(compile((tmp_path / "optimization.py").read_text(), other.__file__, "exec"), other.__dict__)
    optim.patch_tools_optimization(other)
    assert other.build_optimizer(None, _optim_cfg(PLUGIN)) == "theirs"
    assert not hasattr(other, "__pcdet_seal_patched__")


def test_stock_train_py_binds_the_patched_builders_through_the_startup_hook(tools):
    """What ``tools/train.py`` does: ``tools/`` on sys.path, ``import pcdet``, then
    ``from train_utils.optimization import build_optimizer, build_scheduler``."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import pcdet; "
            "from train_utils.optimization import build_optimizer, build_scheduler; "
            "print('autoload' if 'pcdet_seal_autoload' in sys.modules else 'no-autoload', "
            "build_optimizer.__code__.co_filename, build_scheduler.__code__.co_filename)")
    env = {**os.environ, CPU_ENV: "1"}
    env.pop(AUTOLOAD_ENV, None)
    out = subprocess.run([sys.executable, "-c", code, str(optim._openpcdet_tools_dir())], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    words = out.stdout.split()
    if words[0] == "no-autoload":
        pytest.skip("the pcdet-seal .pth start-up hook is not installed (pip install -e . installs it)")
    assert words[1:] == [optim.__file__, optim.__file__]


def test_ckpt_resume_restores_the_optimizer_state(tools, pretrain_cfg, tmp_path):
    """``tools/train.py --ckpt``: ``checkpoint_state`` / ``save_checkpoint`` write, then
    ``load_params_with_optimizer`` restores; the next step is identical to an uninterrupted run."""
    from pcdet.models import model_fn_decorator

    train_utils = optim.tools_module("train_utils.train_utils")
    ds = dataset(pretrain_cfg)
    data = batch(ds)
    torch.manual_seed(0)
    model = network(pretrain_cfg, ds)
    model.train()
    run = optim.build_optimizer_and_scheduler(model, pretrain_cfg.OPTIMIZATION, 4, 1)
    fn = model_fn_decorator()

    def step(m, r, it):
        r.scheduler.step(it, 0)
        r.optimizer.zero_grad()
        torch.manual_seed(100 + it)  # the same masking in both runs
        loss, _, _ = fn(m, copy.deepcopy(data))
        loss.backward()
        r.optimizer.step()

    step(model, run, 0)
    path = tmp_path / "checkpoint_epoch_1"
    train_utils.save_checkpoint(train_utils.checkpoint_state(model, run.optimizer, epoch=0, it=1), filename=str(path))
    torch.manual_seed(0)  # the same random teacher (not part of the checkpoint)
    resumed = network(pretrain_cfg, ds)
    resumed.train()
    run2 = optim.build_optimizer_and_scheduler(resumed, pretrain_cfg.OPTIMIZATION, 4, 1)
    resumed.load_params_with_optimizer(str(path) + ".pth", to_cpu=True, optimizer=run2.optimizer,
                                       logger=logging.getLogger("tests"))
    saved, loaded = run.optimizer.state_dict(), run2.optimizer.state_dict()
    assert saved["state"].keys() == loaded["state"].keys() and len(saved["state"]) == len(_optimised(run.optimizer))
    for key, state in saved["state"].items():
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(torch.as_tensor(state[name]), torch.as_tensor(loaded["state"][key][name])), name
    step(model, run, 1)
    step(resumed, run2, 1)
    for (name, a), b in zip(model.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)

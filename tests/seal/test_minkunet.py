"""spconv Res16UNet34C teacher vs a MinkowskiEngine-semantics reference (docs/method.md §2.2):
layer by layer, end to end on a reduced-width net, and the frozen full-width teacher."""
from __future__ import annotations

import importlib
import sys

import pytest
import torch
from torch import nn

from me_reference import (DenseIndex, MEForward, me_conv, me_conv_transpose, me_state_dict_spec,
                          random_cloud, random_me_state_dict)
from pcdet_seal.seal.checkpoint import convert_kernel, convert_me_state_dict
from pcdet_seal.seal.minkunet import Res16UNetArch

TOL = 1e-4
SMALL = Res16UNetArch(in_channels=1, out_channels=16, init_dim=8, planes=(8, 16, 16, 24, 16, 16, 8, 8))


def test_missing_spconv_names_what_to_install(monkeypatch):
    import pcdet_seal.seal as seal_pkg

    # importing a fresh copy rebinds the package attribute too: restore both afterwards
    monkeypatch.setattr(seal_pkg, "spconv_utils", importlib.import_module("pcdet_seal.seal.spconv_utils"))
    monkeypatch.setitem(sys.modules, "spconv", None)
    monkeypatch.setitem(sys.modules, "spconv.pytorch", None)
    monkeypatch.delitem(sys.modules, "pcdet_seal.seal.spconv_utils", raising=False)
    fresh = importlib.import_module("pcdet_seal.seal.spconv_utils")
    with pytest.raises(ImportError, match=r"pip install spconv-cu120 \(choose the build matching your CUDA"):
        fresh.spconv_modules()


def test_importing_the_teacher_modules_does_not_import_spconv():
    import subprocess

    code = ("import sys, pcdet_seal, pcdet_seal.seal.minkunet, pcdet_seal.seal.checkpoint, "
            "pcdet_seal.seal.targets, pcdet_seal.seal.cache; "
            "print([m for m in ('spconv', 'pcdet') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def su():
    pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")
    from pcdet_seal.seal import spconv_utils

    return spconv_utils


def _spconv_rows_to_me(indices: torch.Tensor, shift: torch.Tensor, tensor_stride: int) -> torch.Tensor:
    """spconv output indices at ``tensor_stride`` → ME coordinates (b, x, y, z)."""
    idx = indices.long()
    return torch.cat([idx[:, :1], idx[:, 1:] * tensor_stride + shift], dim=1)


@pytest.mark.spconv
def test_conv3_stride1_matches_me(su):
    from pcdet_seal.seal.minkunet import sparse_input

    coords, feats = random_cloud(700, -21, 19, channels=16, seed=1)
    kernel = torch.randn(27, 16, 24, generator=torch.Generator().manual_seed(2)) / 20
    layer = su.subm_conv3(16, 24, "k")
    layer.weight.data.copy_(convert_kernel(kernel))
    su.set_conv_algo(layer, torch.device("cpu"))
    x, _ = sparse_input(coords, feats)
    with torch.no_grad():
        out = layer(x)
    assert torch.equal(out.indices, x.indices)
    _, ref = me_conv(coords, feats, kernel, 3, 1, 1)
    assert ref.abs().max() > 0.1
    assert (out.features - ref).abs().max() < TOL


@pytest.mark.spconv
def test_conv2_stride2_matches_me_on_negative_coords(su):
    from pcdet_seal.seal.minkunet import sparse_input

    coords, feats = random_cloud(700, -37, 11, channels=8, seed=3)
    assert (coords[:, 1:] < 0).any()
    kernel = torch.randn(8, 8, 12, generator=torch.Generator().manual_seed(4)) / 8
    layer = su.down_conv2(8, 12, "d")
    layer.weight.data.copy_(convert_kernel(kernel))
    su.set_conv_algo(layer, torch.device("cpu"))
    x, shift = sparse_input(coords, feats)
    with torch.no_grad():
        out = layer(x)
    ref_coords, ref = me_conv(coords, feats, kernel, 2, 2, 1)
    sp_coords = _spconv_rows_to_me(out.indices, shift, 2)
    assert sp_coords.shape == ref_coords.shape
    rows = DenseIndex(ref_coords).rows(sp_coords)
    assert (rows >= 0).all() and rows.unique().numel() == rows.numel()
    assert (out.features - ref[rows]).abs().max() < TOL


@pytest.mark.spconv
def test_transposed_conv2_matches_me(su):
    from pcdet_seal.seal.minkunet import sparse_input

    coords, feats = random_cloud(700, -30, 20, channels=4, seed=5)
    g = torch.Generator().manual_seed(6)
    down = su.down_conv2(4, 10, "pair")
    up = su.up_conv2(10, 6, "pair")
    kernel = torch.randn(8, 10, 6, generator=g) / 8
    up.weight.data.copy_(convert_kernel(kernel))
    su.set_conv_algo(nn.ModuleList([down, up]), torch.device("cpu"))
    x, shift = sparse_input(coords, feats)
    with torch.no_grad():
        coarse = down(x)
        coarse_feats = torch.randn(coarse.features.shape, generator=g)
        out = up(coarse.replace_feature(coarse_feats))
    assert torch.equal(out.indices, x.indices)  # onto the existing finer rows, same order
    ref = me_conv_transpose(_spconv_rows_to_me(coarse.indices, shift, 2), coarse_feats, coords, kernel, 1)
    assert ref.abs().max() > 0.1
    assert (out.features - ref).abs().max() < TOL


def test_conv1x1_with_bias_matches_me():
    spec = me_state_dict_spec(SMALL.in_channels, SMALL.out_channels, SMALL.init_dim, SMALL.planes, SMALL.layers)
    state = random_me_state_dict(spec, seed=7)
    converted = convert_me_state_dict(state, SMALL)
    feats = torch.randn(50, SMALL.planes[7], generator=torch.Generator().manual_seed(8))
    final = nn.Linear(SMALL.planes[7], SMALL.out_channels)
    final.load_state_dict({"weight": converted["final.weight"], "bias": converted["final.bias"]})
    ref = feats @ state["final.kernel"] + state["final.bias"]
    assert (final(feats) - ref).abs().max() < TOL
    key = "block2.0.downsample.0"
    cin, cout = state[f"{key}.kernel"].shape
    shortcut = nn.Linear(cin, cout, bias=False)
    shortcut.weight.data.copy_(converted[f"{key}.weight"])
    x = torch.randn(30, cin, generator=torch.Generator().manual_seed(9))
    assert (shortcut(x) - x @ state[f"{key}.kernel"]).abs().max() < TOL


@pytest.fixture(scope="module")
def small_net_and_reference(su):
    from pcdet_seal.seal.minkunet import Res16UNet

    spec = me_state_dict_spec(SMALL.in_channels, SMALL.out_channels, SMALL.init_dim, SMALL.planes, SMALL.layers)
    state = random_me_state_dict(spec, seed=11)
    coords, feats = random_cloud(1500, -40, 40, batch=2, seed=12)
    feats = feats.abs()  # intensity-like input
    reference = MEForward(state, calibrate=True)  # sets BN statistics to O(1) activations
    raw = reference(coords, feats, normalize=False)
    net = Res16UNet(SMALL)
    net.load_state_dict(convert_me_state_dict(state, SMALL))
    net.eval()
    return net, coords, feats, raw


@pytest.mark.spconv
def test_reduced_width_network_matches_me_end_to_end(small_net_and_reference):
    net, coords, feats, raw = small_net_and_reference
    assert raw.norm(dim=1).min() > 0.1  # a meaningful signal, not a vanished one
    with torch.no_grad():
        out_raw = net(coords, feats, normalize=False)
        out = net(coords, feats)
    assert (out_raw - raw).abs().max() < TOL * raw.abs().max()  # pre-normalisation, relative
    assert (out - raw / raw.norm(dim=1, keepdim=True)).abs().max() < TOL


@pytest.mark.spconv
def test_full_width_teacher_is_frozen_unit_norm_and_deterministic(su):
    from pcdet_seal.seal.minkunet import Res16UNet, SealTeacher

    torch.manual_seed(0)
    teacher = SealTeacher(Res16UNet())
    parent = nn.Module()
    parent.teacher = teacher
    parent.head = nn.Linear(2, 2)
    coords, feats = random_cloud(1000, -60, 60, batch=2, seed=13)
    out = teacher(coords, feats)
    assert out.shape == (coords.shape[0], 64)
    assert (out.norm(dim=1) - 1).abs().max() < 1e-5
    assert not out.requires_grad and all(not p.requires_grad for p in teacher.net.parameters())
    parent.train()
    assert not teacher.training and not any(m.training for m in teacher.net.modules())
    assert torch.equal(teacher(coords, feats), out)  # BN stays in eval, same numbers
    assert set(parent.state_dict()) == {"head.weight", "head.bias"}
    assert {id(p) for p in parent.parameters()} == {id(parent.head.weight), id(parent.head.bias)}
    native = su.spconv_modules().ConvAlgo.Native
    convs = [m for m in teacher.net.modules() if hasattr(m, "cuda_algo")]
    assert len(convs) == 1 + 4 + 4 + 2 * sum(Res16UNetArch().layers)
    assert all(m.algo == native for m in convs)
    parent.double()  # a parent's .to()/.double() reaches the hidden network
    assert next(teacher.net.parameters()).dtype == torch.float64


@pytest.mark.spconv
@pytest.mark.gpu
def test_teacher_cpu_and_cuda_agree(su):
    from pcdet_seal.seal.minkunet import Res16UNet, SealTeacher

    torch.manual_seed(0)
    teacher = SealTeacher(Res16UNet())
    coords, feats = random_cloud(20000, -200, 200, batch=2, seed=14)
    cpu = teacher(coords, feats)
    teacher.cuda()
    gpu = teacher(coords.cuda(), feats.cuda())
    convs = [m for m in teacher.net.modules() if hasattr(m, "cuda_algo")]
    assert all(m.algo == m.cuda_algo for m in convs)
    assert (gpu.cpu() - cpu).abs().max() < TOL


@pytest.mark.spconv
@pytest.mark.gpu
def test_teacher_ignores_a_callers_autocast(su):
    """OpenPCDet's --use_amp wraps the forward in autocast; the targets must stay fp32."""
    from pcdet_seal.seal.minkunet import Res16UNet, SealTeacher

    torch.manual_seed(0)
    teacher = SealTeacher(Res16UNet()).cuda()
    coords, feats = random_cloud(20000, -200, 200, batch=2, seed=15)
    coords, feats = coords.cuda(), feats.cuda()
    plain = teacher(coords, feats)
    with torch.autocast(device_type="cuda", dtype=torch.float16):
        amp = teacher(coords, feats)
    assert amp.dtype == torch.float32
    assert (amp - plain).abs().max() < TOL

"""Every CPU-mode / version patch: it is listed, it applies, it acts as documented, it is idempotent."""
from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pcdet_seal import compat, ops
from pcdet_seal.compat import patches, placeholders

pcdet = pytest.importorskip("pcdet", reason="needs OpenPCDet (pcdet) importable: a checkout + CPU mode is enough")
pytestmark = pytest.mark.pcdet

import pcdet.datasets  # noqa: E402
import pcdet.models  # noqa: E402

BOXES = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0],
                      [0.3, 0.1, 0.0, 4.0, 2.0, 1.5, 0.2],
                      [10.0, 5.0, 0.5, 1.0, 1.0, 1.8, 1.0],
                      [10.2, 5.1, 0.4, 1.0, 1.0, 1.8, 1.1]])
SCORES = torch.tensor([0.9, 0.8, 0.3, 0.7])


def _needs_cpu_mode():
    if not compat.cpu_mode_enabled():
        pytest.skip("CPU mode is off in this session (a CUDA device exists); these patches are CPU-mode ones")


def test_every_patch_is_documented_and_in_the_markdown_table():
    names = [p.name for p in patches.PATCHES]
    assert len(names) == len(set(names))
    table = compat.patch_table_markdown()
    for patch in patches.PATCHES:
        assert patch.stage in (patches.CPU_MODE, patches.REGISTRATION)
        assert patch.what and patch.why and patch.when
        assert f"`{patch.name}`" in table


def test_enable_cpu_mode_is_idempotent_and_logs_nothing_the_second_time(caplog):
    _needs_cpu_mode()
    before = compat.patch_status()
    with caplog.at_level(logging.INFO, logger="pcdet_seal"):
        statuses = compat.enable_cpu_mode()
        again = compat.apply_version_fixes()
    assert not [r for r in caplog.records if "installed" in r.getMessage() or "not needed" in r.getMessage()]
    assert compat.patch_status() == before
    assert set(statuses) == {p.name for p in patches.PATCHES if p.stage == patches.CPU_MODE}
    assert set(again) == {p.name for p in patches.PATCHES if p.stage == patches.REGISTRATION}
    assert statuses["cuda_noop"] == (patches.NOT_NEEDED if torch.cuda.is_available() else patches.INSTALLED)


def test_pcdet_version_is_supplied_without_writing_the_checkout():
    _needs_cpu_mode()
    import pcdet.version

    version_file = Path(pcdet.__path__[0]) / "version.py"
    assert placeholders.is_placeholder(pcdet.version) == (not version_file.exists())
    if placeholders.is_placeholder(pcdet.version):
        assert pcdet.version.__version__.endswith("+source")
    assert pcdet.__version__.startswith(pcdet.version.__version__)


@pytest.mark.parametrize("extension", placeholders.COMPILED_EXTENSIONS)
def test_compiled_extensions_import_and_placeholders_name_the_op(extension):
    _needs_cpu_mode()
    module = __import__(extension, fromlist=["_"])
    if not placeholders.is_placeholder(module):
        pytest.skip(f"{extension} is built here")
    with pytest.raises(placeholders.CompiledOpUnavailable, match=extension.replace(".", r"\.") + r"\.some_op"):
        module.some_op()


def test_placeholder_errors_say_which_cpu_fallback_exists():
    module = placeholders.compiled_extension_placeholder("pcdet.ops.iou3d_nms.iou3d_nms_cuda")
    with pytest.raises(placeholders.CompiledOpUnavailable, match=r"iou3d_nms_utils\.nms_gpu -> pcdet_seal\.ops\.nms"):
        module.nms_gpu(None, None, 0.1)
    module = placeholders.compiled_extension_placeholder("pcdet.ops.roipoint_pool3d.roipoint_pool3d_cuda")
    with pytest.raises(placeholders.CompiledOpUnavailable, match="no CPU fallback"):
        module.forward()


def test_iou3d_nms_wrappers_route_cpu_tensors_to_the_plugin_ops():
    _needs_cpu_mode()
    from pcdet.ops.iou3d_nms import iou3d_nms_utils as utils

    torch.testing.assert_close(utils.boxes_iou3d_gpu(BOXES, BOXES), ops.boxes_iou3d(BOXES, BOXES))
    torch.testing.assert_close(utils.boxes_iou_bev(BOXES, BOXES), ops.boxes_bev_iou(BOXES, BOXES))
    torch.testing.assert_close(utils.paired_boxes_iou3d_gpu(BOXES, BOXES.flip(0)),
                               ops.paired_boxes_iou3d(BOXES, BOXES.flip(0)))
    assert utils.boxes_aligned_iou3d_gpu(BOXES, BOXES).shape == (4, 1)
    bev = utils.boxes_bev_iou_cpu(BOXES.numpy(), BOXES.numpy())
    assert isinstance(bev, np.ndarray) and np.allclose(bev, ops.boxes_bev_iou(BOXES, BOXES).numpy())
    keep, _ = utils.nms_gpu(BOXES, SCORES, 0.5)
    assert keep.tolist() == ops.nms(BOXES, SCORES, 0.5).tolist() == [0, 3]
    keep_normal, _ = utils.nms_normal_gpu(BOXES, SCORES, 0.5)
    assert keep_normal.tolist() == ops.nms_normal(BOXES, SCORES, 0.5).tolist()
    # the model's NMS helper reaches the routed wrapper through the module attribute
    from pcdet.models.model_utils import model_nms_utils

    assert model_nms_utils.iou3d_nms_utils.nms_gpu is utils.nms_gpu


def test_points_in_boxes_wrappers_route_and_keep_numpy_in_numpy_out():
    _needs_cpu_mode()
    from pcdet.ops.roiaware_pool3d import roiaware_pool3d_utils as utils

    points = torch.tensor([[0.0, 0.0, 0.0], [10.0, 5.0, 0.5], [30.0, 0.0, 0.0]])
    mask = utils.points_in_boxes_cpu(points.numpy(), BOXES.numpy())
    assert isinstance(mask, np.ndarray) and mask.shape == (4, 3)
    assert mask[:, 2].sum() == 0 and mask[0, 0] == 1 and mask[2, 1] == 1
    index = utils.points_in_boxes_gpu(points[None], BOXES[None])
    assert index.tolist() == [[0, 2, -1]]


def test_dsvt_gets_the_routed_ingroup_inds():
    _needs_cpu_mode()
    from pcdet.models.backbones_3d import dsvt
    from pcdet.models.model_utils import dsvt_utils
    from pcdet.ops.ingroup_inds import ingroup_inds_op

    assert dsvt.get_inner_win_inds_cuda is ingroup_inds_op.ingroup_inds is dsvt_utils.get_inner_win_inds_cuda
    groups = torch.tensor([5, 5, 2, 5, 2, 9], dtype=torch.int64)
    out = dsvt.get_inner_win_inds_cuda(groups)
    assert out.dtype == groups.dtype
    for g in groups.unique():
        assert sorted(out[groups == g].tolist()) == list(range(int((groups == g).sum())))


def test_routing_is_idempotent():
    _needs_cpu_mode()
    from pcdet_seal.compat import op_routing
    from pcdet.ops.iou3d_nms import iou3d_nms_utils

    before = iou3d_nms_utils.nms_gpu
    assert op_routing.route_module(iou3d_nms_utils) == []
    assert iou3d_nms_utils.nms_gpu is before


def test_cuda_is_a_noop_without_a_device():
    _needs_cpu_mode()
    if torch.cuda.is_available():
        pytest.skip("a CUDA device exists: .cuda() keeps its meaning")
    tensor, module = torch.zeros(2), torch.nn.Linear(2, 2)
    assert tensor.cuda() is tensor and module.cuda() is module
    from pcdet_seal.compat import device

    wrapped = torch.Tensor.cuda
    assert device.make_cuda_a_noop() is True and torch.Tensor.cuda is wrapped


def test_dynamic_vfe_gets_native_scatter_only_where_torch_scatter_is_missing():
    _needs_cpu_mode()
    from pcdet.models.backbones_3d.vfe import dynamic_voxel_vfe
    from pcdet_seal.compat.scatter import torch_scatter_shim

    if importlib.util.find_spec("torch_scatter") is None:
        assert dynamic_voxel_vfe.torch_scatter is torch_scatter_shim
    else:  # installed: the module's own import decides (a broken build still gets the stand-in)
        assert dynamic_voxel_vfe.torch_scatter is not None


def test_torchvision_placeholder_is_scoped_to_pcdet_modules():
    _needs_cpu_mode()
    from pcdet.datasets.processor import data_processor

    if patches.torchvision_import_error() is None:
        assert not placeholders.is_placeholder(data_processor.torchvision)
        return
    assert placeholders.is_placeholder(data_processor.torchvision)
    assert "torchvision" not in sys.modules or not placeholders.is_placeholder(sys.modules["torchvision"])
    with pytest.raises(placeholders.ModuleUnavailable, match="torchvision"):
        data_processor.torchvision.transforms.Compose([])


def test_argo2_guard_keeps_the_table_importable():
    _needs_cpu_mode()
    argo2 = pcdet.datasets.__all__["Argo2Dataset"]
    module = sys.modules["pcdet.datasets.argo2.argo2_dataset"]
    if not placeholders.is_placeholder(module):
        pytest.skip("OpenPCDet's Argo2 dataset imports here (av2 installed)")
    with pytest.raises(placeholders.ModuleUnavailable, match="av2"):
        argo2(dataset_cfg=None, class_names=None)


def test_dsvt_int_key_padding_mask_fix_keeps_state_dict_and_output():
    from pcdet.models.backbones_3d.dsvt import Stage_ReductionAtt_Block
    from pcdet_seal.compat import version_fixes

    compat.apply_version_fixes()
    assert getattr(Stage_ReductionAtt_Block.forward, version_fixes.MASK_FIX_FLAG, False)
    assert version_fixes.fix_dsvt_key_padding_mask(sys.modules[version_fixes.DSVT_MODULE]) is False  # idempotent
    torch.manual_seed(0)
    block = Stage_ReductionAtt_Block(16, 4).eval()
    keys = set(block.state_dict())
    x = torch.randn(5, 16, 4)
    int_mask = torch.zeros(5, 4).int()
    int_mask[0, 3] = 1
    with torch.no_grad():
        fixed = block(x, int_mask)
        reference = Stage_ReductionAtt_Block.forward.__pcdet_seal_original__(block, x, int_mask.bool())
    torch.testing.assert_close(fixed, reference)
    assert set(block.state_dict()) == keys


def test_torch_load_reads_numpy_scalars_but_still_refuses_arbitrary_objects(tmp_path):
    compat.apply_version_fixes()
    path = tmp_path / "ckpt.pth"
    torch.save({"optimizer_state": {"lr": np.float64(0.003), "mom": np.float32(0.9)}, "w": torch.ones(2)}, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["optimizer_state"]["lr"] == pytest.approx(0.003)
    torch.save({"obj": _Arbitrary()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        torch.load(tmp_path / "evil.pth", weights_only=True)


class _Arbitrary:
    pass

"""The table of every change the plugin makes to OpenPCDet / torch at run time, and how each applies.

Two stages: ``cpu_mode`` patches (:func:`pcdet_seal.compat.enable_cpu_mode`, must run before
``import pcdet``) and ``registration`` patches (version fixes, applied by
:func:`pcdet_seal.register` on GPU as well). Each is idempotent and logged once per process.
Heavy imports (torch) happen inside the install functions, so importing this module is cheap.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Iterator, Optional

from . import importhook, placeholders

logger = logging.getLogger("pcdet_seal.compat")

CPU_MODE = "cpu_mode"
REGISTRATION = "registration"

INSTALLED = "installed"
NOT_NEEDED = "not needed"


@dataclass(frozen=True)
class Patch:
    """One run-time change: what it does, why, when it acts, and the function that installs it.

    ``install()`` returns True when it installed something, False when this machine does not
    need it (e.g. a CUDA device exists); it is called at most once per process.
    """

    name: str
    stage: str
    what: str
    why: str
    when: str
    install: Callable[[], bool]


# --- install functions ----------------------------------------------------------------------

def _install_pcdet_version() -> bool:
    importhook.supply_if_missing("pcdet.version", placeholders.pcdet_version_module)
    return True


def _install_extension_placeholders() -> bool:
    for name in placeholders.COMPILED_EXTENSIONS:
        importhook.supply_if_missing(name, placeholders.compiled_extension_placeholder)
    return True


def _route(wrapper_module: str) -> Callable[[], bool]:
    def install() -> bool:
        from . import op_routing

        importhook.after_import(wrapper_module, op_routing.route_module)
        return True

    return install


def _install_cuda_noop() -> bool:
    from . import device

    return device.make_cuda_a_noop()


def _give_torch_scatter(module: ModuleType) -> None:
    if "torch_scatter" in module.__dict__:  # the real one imported fine
        return
    from .scatter import torch_scatter_shim

    module.torch_scatter = torch_scatter_shim  # type: ignore[attr-defined]
    logger.info("pcdet-seal compat: %s uses native scatter_reduce (torch_scatter is not importable)",
                module.__name__)


def _install_flat_unique() -> bool:
    from .fast_unique import FLAT_UNIQUE_USERS, give_flat_unique

    for name in FLAT_UNIQUE_USERS:
        importhook.after_import(name, give_flat_unique)
    return True


def _install_torch_scatter() -> bool:
    from .scatter import TORCH_SCATTER_USERS

    for name in TORCH_SCATTER_USERS:
        importhook.after_import(name, _give_torch_scatter)
    return True


# pcdet modules that ``import torchvision`` at top level but use it only for camera inputs.
TORCHVISION_IMPORTERS: tuple[str, ...] = (
    "pcdet.datasets.processor.data_processor",
    "pcdet.models.backbones_3d.focal_sparse_conv.SemanticSeg.sem_deeplabv3",
)

_torchvision_lock = threading.Lock()
_torchvision_error: list[Optional[BaseException]] = []  # [] = not tried yet
_torchvision_warned: list[bool] = []


def torchvision_import_error() -> Optional[BaseException]:
    """None when ``import torchvision`` works, else the exception it raised (tried once)."""
    with _torchvision_lock:
        if not _torchvision_error:
            before = set(sys.modules)
            try:
                importlib.import_module("torchvision")
                _torchvision_error.append(None)
            except Exception as error:  # noqa: BLE001 - a CUDA build next to CPU torch raises RuntimeError
                for name in set(sys.modules) - before:  # drop what the failed import left behind
                    if name == "torchvision" or name.startswith("torchvision."):
                        del sys.modules[name]
                _torchvision_error.append(error)
        return _torchvision_error[0]


@contextlib.contextmanager
def _torchvision_placeholder_while(name: str) -> Iterator[None]:
    error = torchvision_import_error()
    if error is None:
        yield
        return
    if not _torchvision_warned:
        _torchvision_warned.append(True)
        logger.warning("pcdet-seal compat: torchvision does not import here (%s: %s); OpenPCDet's modules get "
                       "a placeholder that raises when used (only camera/image code uses it)",
                       type(error).__name__, error)
    stand_in = placeholders.unavailable_module(
        "torchvision", "torchvision does not import in this environment (PyPI's Linux wheels are CUDA "
        "builds that fail next to a CPU torch)", error)
    with importhook.temporarily_in_sys_modules("torchvision", stand_in):
        yield


def _install_torchvision_placeholder() -> bool:
    for name in TORCHVISION_IMPORTERS:
        importhook.around_import(name, _torchvision_placeholder_while)
    return True


ARGO2_MODULE = "pcdet.datasets.argo2.argo2_dataset"


def _argo2_stand_in(name: str, error: BaseException) -> ModuleType:
    logger.warning("pcdet-seal compat: %s failed to import (%s: %s); Argo2Dataset is a placeholder that "
                   "raises when built (install av2 and kornia==0.6.12 to use it)", name, type(error).__name__, error)
    return placeholders.unavailable_module(
        name, "OpenPCDet's Argo2 dataset needs `av2` and `kornia==0.6.12` (kornia >= 0.7 breaks its "
        "TorchScript code)", error)


def _install_argo2_guard() -> bool:
    importhook.on_import_error(ARGO2_MODULE, _argo2_stand_in)
    return True


def _install_dsvt_mask_fix() -> bool:
    from . import version_fixes

    importhook.after_import(version_fixes.DSVT_MODULE, version_fixes.fix_dsvt_key_padding_mask)
    return True


def _install_torch_load_fix() -> bool:
    from . import version_fixes

    return version_fixes.allow_numpy_scalars_in_torch_load()


# --- the table ----------------------------------------------------------------------------

PATCHES: tuple[Patch, ...] = (
    Patch("pcdet_version", CPU_MODE,
          what="supplies `pcdet.version` (in memory, `__version__ = '<setup.py version>+source'`)",
          why="OpenPCDet's setup.py writes pcdet/version.py; a source checkout lacks it, so `import pcdet` fails",
          when="CPU mode, only if no `pcdet/version.py` is found", install=_install_pcdet_version),
    Patch("compiled_op_placeholders", CPU_MODE,
          what="placeholder modules for the 7 compiled extensions (`iou3d_nms_cuda`, `roiaware_pool3d_cuda`, "
               "`roipoint_pool3d_cuda`, `pointnet2_stack_cuda`, `pointnet2_batch_cuda`, `bev_pool_ext`, "
               "`ingroup_inds_cuda`); calling one raises `CompiledOpUnavailable` naming the op and its CPU fallback",
          why="`import pcdet.models` imports all of them; they cannot be built without CUDA",
          when="CPU mode, per extension, only if it is not built", install=_install_extension_placeholders),
    Patch("route_iou3d_nms", CPU_MODE,
          what="`iou3d_nms_utils.boxes_bev_iou_cpu`, `boxes_iou_bev`, `boxes_iou3d_gpu`, `boxes_aligned_iou3d_gpu`, "
               "`paired_boxes_iou3d_gpu`, `nms_gpu`, `nms_normal_gpu` -> `pcdet_seal.ops`",
          why="CenterHead's IoU loss, NMS and recall need them; the compiled NMS calls `exit(-1)` on CPU tensors",
          when="CPU mode: CPU tensors always; CUDA tensors only if `iou3d_nms_cuda` is not built",
          install=_route("pcdet.ops.iou3d_nms.iou3d_nms_utils")),
    Patch("route_points_in_boxes", CPU_MODE,
          what="`roiaware_pool3d_utils.points_in_boxes_cpu` / `points_in_boxes_gpu` -> `pcdet_seal.ops`",
          why="the data pipeline and gt sampling use them; their C++ code lives in the CUDA extension",
          when="CPU mode: CPU tensors / numpy always; CUDA tensors only if `roiaware_pool3d_cuda` is not built",
          install=_route("pcdet.ops.roiaware_pool3d.roiaware_pool3d_utils")),
    Patch("route_ingroup_inds", CPU_MODE,
          what="`ingroup_inds_op.ingroup_inds` (DSVT's `get_inner_win_inds_cuda`) -> `pcdet_seal.ops.ingroup_inds`",
          why="every DSVT forward calls it; it is CUDA-only",
          when="CPU mode: CPU tensors always; CUDA tensors only if `ingroup_inds_cuda` is not built",
          install=_route("pcdet.ops.ingroup_inds.ingroup_inds_op")),
    Patch("cuda_noop", CPU_MODE,
          what="`torch.Tensor.cuda()` and `torch.nn.Module.cuda()` return the object unchanged",
          why="OpenPCDet and tools/train.py / test.py call `.cuda()` unconditionally",
          when="CPU mode, only if `torch.cuda.is_available()` is False", install=_install_cuda_noop),
    Patch("torch_scatter_native", CPU_MODE,
          what="`torch_scatter.scatter_mean` / `scatter_max` (dim 0) as native `scatter_reduce`, given to the "
               "dynamic VFE modules under the name `torch_scatter`",
          why="`DynamicVoxelVFE` needs torch_scatter, a ~7 min source build on CPU",
          when="CPU mode, only in modules whose own `import torch_scatter` failed", install=_install_torch_scatter),
    Patch("flat_unique_in_dynamic_vfe", CPU_MODE,
          what="in `dynamic_voxel_vfe` / `dynamic_pillar_vfe` only, `torch.unique(keys, ..., dim=0)` of a 1-D CPU "
               "tensor runs without `dim` (same sorted values, inverse and counts); every other call unchanged",
          why="torch's CPU `unique_dim` compares rows one by one: 22 ms instead of 0.7 ms per batch of the tiny "
              "configs, about 4 % of a CPU training step",
          when="CPU mode, CPU tensors only", install=_install_flat_unique),
    Patch("torchvision_placeholder", CPU_MODE,
          what="while `data_processor` / `sem_deeplabv3` execute, `import torchvision` gives a placeholder that "
               "raises (with the original import error) when used",
          why="PyPI's Linux torchvision wheels are CUDA builds: `operator torchvision::nms does not exist` next to "
              "a CPU torch; the LiDAR path never uses torchvision",
          when="CPU mode, only if `import torchvision` fails; other importers of torchvision are not affected",
          install=_install_torchvision_placeholder),
    Patch("argo2_guard", CPU_MODE,
          what="if `pcdet.datasets.argo2.argo2_dataset` fails to import, a placeholder whose `Argo2Dataset` raises "
               "when built (warning logged with the error)",
          why="it needs `av2` (heavy) and `kornia==0.6.12` (>= 0.7 breaks its TorchScript code) at import time",
          when="CPU mode, only if that module's import raises", install=_install_argo2_guard),
    Patch("dsvt_bool_key_padding_mask", REGISTRATION,
          what="`Stage_ReductionAtt_Block.forward` casts an integer `key_padding_mask` to bool "
               "(a wrapper: parameters and state dict unchanged)",
          why="torch >= 2.x `nn.MultiheadAttention` rejects int masks: `only bool and floating types of "
              "key_padding_mask are supported` (stock DSVT fails on GPU too)",
          when="at registration, always", install=_install_dsvt_mask_fix),
    Patch("torch_load_numpy_scalars", REGISTRATION,
          what="`torch.serialization.add_safe_globals` for numpy scalars and dtypes only",
          why="torch >= 2.6 loads with `weights_only=True`; OpenPCDet checkpoints hold `np.float64` "
              "learning rates in the optimizer state, so test.py cannot load what train.py saved",
          when="at registration, if torch has `add_safe_globals`", install=_install_torch_load_fix),
)

_STATUS: dict[str, str] = {}
_STATUS_LOCK = threading.RLock()


def apply_stage(stage: str) -> dict[str, str]:
    """Install every patch of ``stage`` not installed yet; returns ``{name: status}`` for the stage."""
    if stage not in (CPU_MODE, REGISTRATION):
        raise ValueError(f"unknown patch stage {stage!r}; expected {CPU_MODE!r} or {REGISTRATION!r}")
    with _STATUS_LOCK:
        for patch in PATCHES:
            if patch.stage != stage or patch.name in _STATUS:
                continue
            status = INSTALLED if patch.install() else NOT_NEEDED
            _STATUS[patch.name] = status
            logger.info("pcdet-seal compat: %s %s: %s", patch.name, status, patch.what)
        return {patch.name: _STATUS[patch.name] for patch in PATCHES if patch.stage == stage}


def patch_status() -> dict[str, str]:
    """``{name: 'installed' | 'not needed'}`` for every patch applied so far in this process."""
    with _STATUS_LOCK:
        return dict(_STATUS)


def patch_table_markdown() -> str:
    """The patch table as Markdown (for the README)."""
    rows = ["| patch | stage | what | why | when it applies |", "|---|---|---|---|---|"]
    for patch in PATCHES:
        rows.append(f"| `{patch.name}` | {patch.stage} | {patch.what} | {patch.why} | {patch.when} |")
    return "\n".join(rows)

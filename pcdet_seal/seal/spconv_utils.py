"""The one place that imports spconv: layer factories and the per-device algorithm choice.

spconv is imported lazily, on the first layer built, so importing this module is free.
On CPU tensors only ``ConvAlgo.Native`` is correct (docs/architecture.md §6); on CUDA spconv's default.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from types import SimpleNamespace
from typing import Iterator

import torch
from torch import nn

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "pip install spconv-cu120 (choose the build matching your CUDA, e.g. spconv-cu118, "
    "spconv-cu121, spconv-cu124, spconv-cu126; see https://github.com/traveller59/spconv). "
    "On a machine without a GPU, spconv-cu120 also runs on CPU tensors"
)


@functools.lru_cache(maxsize=1)
def spconv_modules() -> SimpleNamespace:
    """Import spconv once; return ``SimpleNamespace(sp=spconv.pytorch, ConvAlgo, cpu_only_build)``.

    Raises ImportError naming what to install when spconv is missing.
    """
    try:
        with warnings.catch_warnings():
            # spconv 2.3 uses the deprecated torch.cuda.amp.custom_fwd decorators at import.
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"spconv\..*")
            import spconv.pytorch as sp
            from spconv.core import ConvAlgo
            from spconv.cppconstants import CPU_ONLY_BUILD
    except ImportError as err:
        raise ImportError(
            f"The Seal teacher (pcdet_seal.seal.minkunet) needs spconv 2.x, which could not be "
            f"imported ({err}). Install it with: {INSTALL_HINT}."
        ) from err
    if CPU_ONLY_BUILD:
        logger.warning(
            "spconv is a CPU-only build: with more than one torch thread its CPU scatter-add can "
            "return wrong rows; the teacher runs its convolutions single-threaded. For speed and "
            "correctness prefer: %s.",
            INSTALL_HINT,
        )
    return SimpleNamespace(sp=sp, ConvAlgo=ConvAlgo, cpu_only_build=bool(CPU_ONLY_BUILD))


def _remember_cuda_algo(layer: nn.Module) -> nn.Module:
    """Record the algorithm spconv picked at construction as the layer's CUDA algorithm."""
    layer.cuda_algo = layer.algo
    return layer


def subm_conv3(in_channels: int, out_channels: int, indice_key: str) -> nn.Module:
    """3x3x3 submanifold convolution without bias (weight [Cout, 3, 3, 3, Cin])."""
    sp = spconv_modules().sp
    return _remember_cuda_algo(
        sp.SubMConv3d(in_channels, out_channels, 3, padding=1, bias=False, indice_key=indice_key)
    )


def down_conv2(in_channels: int, out_channels: int, indice_key: str) -> nn.Module:
    """2x2x2 stride-2 convolution without bias; ``indice_key`` pairs it with an `up_conv2`."""
    sp = spconv_modules().sp
    return _remember_cuda_algo(
        sp.SparseConv3d(in_channels, out_channels, 2, stride=2, bias=False, indice_key=indice_key)
    )


def up_conv2(in_channels: int, out_channels: int, indice_key: str) -> nn.Module:
    """Transposed 2x2x2 stride-2 convolution onto the input rows of the paired `down_conv2`."""
    sp = spconv_modules().sp
    return _remember_cuda_algo(
        sp.SparseInverseConv3d(in_channels, out_channels, 2, indice_key=indice_key, bias=False)
    )


def set_conv_algo(module: nn.Module, device: torch.device) -> None:
    """Set every spconv layer in ``module`` to the algorithm for ``device``.

    ``ConvAlgo.Native`` for CPU tensors (the only correct CPU path), the algorithm spconv chose
    at construction for CUDA tensors. Layers sharing an indice key always get the same one.
    """
    native = spconv_modules().ConvAlgo.Native
    for layer in module.modules():
        if hasattr(layer, "cuda_algo"):
            layer.algo = layer.cuda_algo if device.type == "cuda" else native


@contextlib.contextmanager
def safe_cpu_threads(device: torch.device) -> Iterator[None]:
    """Run spconv single-threaded on CPU tensors when spconv is a CPU-only build (docs/architecture.md §6)."""
    if device.type != "cpu" or not spconv_modules().cpu_only_build:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def sparse_tensor(features: torch.Tensor, indices: torch.Tensor, spatial_shape: list[int],
                  batch_size: int):
    """Build a ``spconv.pytorch.SparseConvTensor`` from features (N, C) and indices (N, 4) int32."""
    return spconv_modules().sp.SparseConvTensor(features, indices, spatial_shape, batch_size)

"""The Seal teacher: MinkUNet Res16UNet34C (docs/method.md §2.1) built from spconv layers, and its
frozen wrapper. spconv is imported (through ``spconv_utils``) only when a network is built.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import spconv_utils

#: Total stride of the four 2x2x2 stride-2 convolutions; coordinates are aligned to it.
TOTAL_STRIDE = 16


@dataclasses.dataclass(frozen=True)
class Res16UNetArch:
    """Widths and depths of a Res16UNet; the defaults are Res16UNet34C (Seal/SLidR)."""

    in_channels: int = 1
    out_channels: int = 64
    init_dim: int = 32
    planes: tuple[int, ...] = (32, 64, 128, 256, 256, 128, 96, 96)
    layers: tuple[int, ...] = (2, 3, 4, 6, 2, 2, 2, 2)

    def __post_init__(self) -> None:
        if len(self.planes) != 8 or len(self.layers) != 8:
            raise ValueError(
                f"Res16UNetArch needs 8 planes and 8 layer counts, got planes={self.planes}, "
                f"layers={self.layers}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON/`weights_only`-safe form (lists, ints)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Res16UNetArch":
        """Inverse of `to_dict`; raises ValueError naming unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown Res16UNetArch keys {sorted(unknown)}; known: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


class BasicBlock(nn.Module):
    """3³ conv → BN → ReLU → 3³ conv → BN → + shortcut → ReLU; a 1³ conv + BN shortcut when
    the width changes (a 1³ stride-1 sparse conv is a per-row Linear)."""

    def __init__(self, in_channels: int, out_channels: int, indice_key: str) -> None:
        super().__init__()
        self.conv1 = spconv_utils.subm_conv3(in_channels, out_channels, indice_key)
        self.norm1 = nn.BatchNorm1d(out_channels)
        self.conv2 = spconv_utils.subm_conv3(out_channels, out_channels, indice_key)
        self.norm2 = nn.BatchNorm1d(out_channels)
        self.downsample: Optional[nn.Sequential] = None
        if in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Linear(in_channels, out_channels, bias=False), nn.BatchNorm1d(out_channels)
            )

    def forward(self, x):
        """SparseConvTensor (N, Cin) → SparseConvTensor (N, Cout) on the same rows."""
        out = self.conv1(x)
        out = out.replace_feature(F.relu(self.norm1(out.features)))
        out = self.conv2(out)
        shortcut = x.features if self.downsample is None else self.downsample(x.features)
        return out.replace_feature(F.relu(self.norm2(out.features) + shortcut))


def _make_layer(in_channels: int, out_channels: int, blocks: int, indice_key: str) -> nn.Sequential:
    return nn.Sequential(
        *[BasicBlock(in_channels if i == 0 else out_channels, out_channels, indice_key)
          for i in range(blocks)]
    )


def _bn_relu(bn: nn.BatchNorm1d, x):
    return x.replace_feature(F.relu(bn(x.features)))


def sparse_input(coords: torch.Tensor, feats: torch.Tensor):
    """Wrap teacher cells for spconv.

    Args:
        coords: (N, 4) integer ``(b, x, y, z)`` cell indices, any sign (x is ME axis 0).
        feats: (N, C_in) float features.

    Returns:
        ``(SparseConvTensor, shift)``: indices ``(b, x - sx, y - sy, z - sz)`` int32 where the
        shift (3,) is a multiple of 16 (so stride-2 partitions equal MinkowskiEngine's floor
        partitions), and a spatial shape padded to a multiple of 16.
    """
    if coords.ndim != 2 or coords.shape[1] != 4:
        raise ValueError(f"teacher coords must be (N, 4) (b, x, y, z), got {tuple(coords.shape)}")
    if feats.ndim != 2 or feats.shape[0] != coords.shape[0]:
        raise ValueError(
            f"teacher feats must be (N, C) with N = {coords.shape[0]}, got {tuple(feats.shape)}"
        )
    coords = coords.long()
    if int(coords[:, 0].min()) < 0:
        raise ValueError(f"teacher batch indices must be >= 0, got {int(coords[:, 0].min())}")
    xyz = coords[:, 1:]
    shift = torch.div(xyz.min(0).values, TOTAL_STRIDE, rounding_mode="floor") * TOTAL_STRIDE
    local = xyz - shift
    extent = local.max(0).values + 1
    spatial_shape = (torch.div(extent + TOTAL_STRIDE - 1, TOTAL_STRIDE, rounding_mode="floor")
                     * TOTAL_STRIDE).tolist()
    indices = torch.cat([coords[:, :1], local], dim=1).int().contiguous()
    batch_size = int(coords[:, 0].max()) + 1
    tensor = spconv_utils.sparse_tensor(feats.contiguous(), indices, spatial_shape, batch_size)
    return tensor, shift


class Res16UNet(nn.Module):
    """MinkUNet Res16UNet (Res16UNet34C by default) on spconv; parameter names follow
    MinkowskiEngine's with ``X.bn.*`` → ``X.*`` and ``X.kernel`` → ``X.weight``.

    Index columns are ``(b, x, y, z)``; conv weights are spconv's [Cout, kx, ky, kz, Cin].
    """

    def __init__(self, arch: Res16UNetArch = Res16UNetArch()) -> None:
        super().__init__()
        self.arch = arch
        p, n, d = arch.planes, arch.layers, arch.init_dim
        self.conv0p1s1 = spconv_utils.subm_conv3(arch.in_channels, d, "subm1")
        self.bn0 = nn.BatchNorm1d(d)
        self.conv1p1s2 = spconv_utils.down_conv2(d, d, "down1")
        self.bn1 = nn.BatchNorm1d(d)
        self.block1 = _make_layer(d, p[0], n[0], "subm2")
        self.conv2p2s2 = spconv_utils.down_conv2(p[0], p[0], "down2")
        self.bn2 = nn.BatchNorm1d(p[0])
        self.block2 = _make_layer(p[0], p[1], n[1], "subm4")
        self.conv3p4s2 = spconv_utils.down_conv2(p[1], p[1], "down3")
        self.bn3 = nn.BatchNorm1d(p[1])
        self.block3 = _make_layer(p[1], p[2], n[2], "subm8")
        self.conv4p8s2 = spconv_utils.down_conv2(p[2], p[2], "down4")
        self.bn4 = nn.BatchNorm1d(p[2])
        self.block4 = _make_layer(p[2], p[3], n[3], "subm16")
        self.convtr4p16s2 = spconv_utils.up_conv2(p[3], p[4], "down4")
        self.bntr4 = nn.BatchNorm1d(p[4])
        self.block5 = _make_layer(p[4] + p[2], p[4], n[4], "subm8")
        self.convtr5p8s2 = spconv_utils.up_conv2(p[4], p[5], "down3")
        self.bntr5 = nn.BatchNorm1d(p[5])
        self.block6 = _make_layer(p[5] + p[1], p[5], n[5], "subm4")
        self.convtr6p4s2 = spconv_utils.up_conv2(p[5], p[6], "down2")
        self.bntr6 = nn.BatchNorm1d(p[6])
        self.block7 = _make_layer(p[6] + p[0], p[6], n[6], "subm2")
        self.convtr7p2s2 = spconv_utils.up_conv2(p[6], p[7], "down1")
        self.bntr7 = nn.BatchNorm1d(p[7])
        self.block8 = _make_layer(p[7] + d, p[7], n[7], "subm1")
        self.final = nn.Linear(p[7], arch.out_channels, bias=True)

    @staticmethod
    def _up_cat(up, skip):
        # A transposed conv writes onto the rows of its paired strided conv's input, i.e. the
        # skip's rows in the skip's order; concatenation order is [upsampled, skip].
        return up.replace_feature(torch.cat([up.features, skip.features], dim=1))

    def forward(self, coords: torch.Tensor, feats: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Per-cell features.

        Args:
            coords: (N, 4) integer ``(b, x, y, z)`` unique teacher cells.
            feats: (N, in_channels) float input features.
            normalize: L2-normalise each output row (no epsilon), as Seal does.

        Returns:
            (N, out_channels) features, rows in the order of ``coords``.
        """
        if coords.shape[0] == 0:
            return feats.new_zeros(0, self.arch.out_channels)
        spconv_utils.set_conv_algo(self, feats.device)
        with spconv_utils.safe_cpu_threads(feats.device):
            x, _ = sparse_input(coords, feats)
            p1 = _bn_relu(self.bn0, self.conv0p1s1(x))
            b1 = self.block1(_bn_relu(self.bn1, self.conv1p1s2(p1)))
            b2 = self.block2(_bn_relu(self.bn2, self.conv2p2s2(b1)))
            b3 = self.block3(_bn_relu(self.bn3, self.conv3p4s2(b2)))
            out = self.block4(_bn_relu(self.bn4, self.conv4p8s2(b3)))
            out = self.block5(self._up_cat(_bn_relu(self.bntr4, self.convtr4p16s2(out)), b3))
            out = self.block6(self._up_cat(_bn_relu(self.bntr5, self.convtr5p8s2(out)), b2))
            out = self.block7(self._up_cat(_bn_relu(self.bntr6, self.convtr6p4s2(out)), b1))
            out = self.block8(self._up_cat(_bn_relu(self.bntr7, self.convtr7p2s2(out)), p1))
        out = self.final(out.features)
        if normalize:
            out = out / out.norm(dim=1, keepdim=True)
        return out


class SealTeacher(nn.Module):
    """A frozen Res16UNet: no gradients, always in eval mode, and invisible to its parent's
    ``state_dict``/``parameters`` (the network is held unregistered; ``.to()``/``.cuda()`` of a
    parent still move it). Its own weights are in ``teacher.net.state_dict()``.
    """

    def __init__(self, net: Res16UNet) -> None:
        super().__init__()
        net.requires_grad_(False)
        net.eval()
        # Not registered as a submodule: keeps it out of checkpoints, optimisers and weight init.
        object.__setattr__(self, "_net", net)
        self.train(False)

    @property
    def net(self) -> Res16UNet:
        """The wrapped network."""
        return self._net

    @property
    def arch(self) -> Res16UNetArch:
        """The wrapped network's architecture."""
        return self._net.arch

    def train(self, mode: bool = True) -> "SealTeacher":
        """Stay in eval mode whatever ``mode`` is (a parent's ``.train()`` reaches this)."""
        self.training = False
        self._net.eval()
        return self

    def _apply(self, fn, recurse: bool = True):
        self._net._apply(fn)
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        return f"frozen Res16UNet {self.arch}"

    def forward(self, coords: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """(N, 4) ``(b, x, y, z)`` cells + (N, in_channels) feats → (N, out_channels) unit rows."""
        param = next(self._net.parameters())
        # fp32 even inside a caller's autocast (OpenPCDet's --use_amp): spconv casts its inputs to
        # fp16 under autocast, which would change the targets the reference computed in fp32.
        with torch.no_grad(), torch.autocast(device_type=param.device.type, enabled=False):
            return self._net(coords.to(param.device), feats.to(device=param.device, dtype=param.dtype))

"""Test-only reference of MinkowskiEngine's sparse convolution semantics (docs/method.md §2.2), a
gather-GEMM over a dense index grid, plus an ME-layout Res16UNet state-dict generator and a
functional ME Res16UNet forward. Independent of spconv and of pcdet_seal's network code.
"""
from __future__ import annotations

from typing import Optional

import torch

_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def me_offsets(kernel_size: int, tensor_stride: int) -> torch.Tensor:
    """(k³, 3) offsets in ME's kernel order: index = i0 + k·(i1 + k·i2), axis 0 fastest.

    Odd k: (i - k//2)·stride; even k: i·stride.
    """
    k = kernel_size
    out = []
    for index in range(k ** 3):
        i = (index % k, (index // k) % k, index // (k * k))
        centre = k // 2 if k % 2 else 0
        out.append([(a - centre) * tensor_stride for a in i])
    return torch.tensor(out, dtype=torch.long)


class DenseIndex:
    """Row lookup of (b, x, y, z) coordinates through a dense grid over their bounding box."""

    def __init__(self, coords: torch.Tensor) -> None:
        coords = coords.long()
        self.low = coords.min(0).values
        self.shape = (coords.max(0).values - self.low + 1).tolist()
        self.grid = torch.full(self.shape, -1, dtype=torch.long)
        local = coords - self.low
        self.grid[local[:, 0], local[:, 1], local[:, 2], local[:, 3]] = torch.arange(coords.shape[0])

    def rows(self, query: torch.Tensor) -> torch.Tensor:
        """(Q, 4) coordinates → (Q,) rows, -1 where absent."""
        local = query.long() - self.low
        inside = ((local >= 0) & (local < torch.tensor(self.shape))).all(1)
        out = torch.full((query.shape[0],), -1, dtype=torch.long)
        li = local[inside]
        out[inside] = self.grid[li[:, 0], li[:, 1], li[:, 2], li[:, 3]]
        return out


def _with_batch(offsets: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.zeros(offsets.shape[0], 1, dtype=torch.long), offsets], dim=1)


def me_conv(coords: torch.Tensor, feats: torch.Tensor, kernel: torch.Tensor, kernel_size: int,
            stride: int, tensor_stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ME convolution: output u gathers input at u + offset(k), ``out += in @ kernel[k]``.

    coords (N, 4) (b, x, y, z) at ``tensor_stride``; kernel (k³, Cin, Cout). Stride 1 keeps the
    input coordinates; stride s outputs ``floor(c / (ts·s))·ts·s`` (unique, sorted).
    """
    coords = coords.long()
    if stride == 1:
        out_coords = coords
    else:
        step = tensor_stride * stride
        strided = torch.cat([coords[:, :1], torch.div(coords[:, 1:], step, rounding_mode="floor") * step], 1)
        out_coords = torch.unique(strided, dim=0)
    offsets = _with_batch(me_offsets(kernel_size, tensor_stride))
    rows = DenseIndex(coords).rows((out_coords[None] + offsets[:, None]).reshape(-1, 4))
    padded = torch.cat([feats, feats.new_zeros(1, feats.shape[1])])  # row -1 → zeros
    gathered = padded[rows].reshape(offsets.shape[0], out_coords.shape[0], -1)
    return out_coords, torch.einsum("knc,kcd->nd", gathered, kernel)


def me_conv_transpose(coarse_coords: torch.Tensor, feats: torch.Tensor, fine_coords: torch.Tensor,
                      kernel: torch.Tensor, fine_tensor_stride: int) -> torch.Tensor:
    """ME 2³ stride-2 transposed conv onto an existing finer coordinate set (swap of the
    forward map): for coarse c and k, fine f = c + offset(k) gets ``in[c] @ kernel[k]``."""
    offsets = _with_batch(me_offsets(2, fine_tensor_stride))
    rows = DenseIndex(fine_coords).rows((coarse_coords.long()[None] + offsets[:, None]).reshape(-1, 4))
    contrib = torch.einsum("nc,kcd->knd", feats, kernel).reshape(rows.shape[0], -1)
    hit = rows >= 0
    out = feats.new_zeros(fine_coords.shape[0], kernel.shape[2])
    return out.index_add_(0, rows[hit], contrib[hit])


def me_state_dict_spec(in_channels: int = 1, out_channels: int = 64, init_dim: int = 32,
                       planes=(32, 64, 128, 256, 256, 128, 96, 96),
                       layers=(2, 3, 4, 6, 2, 2, 2, 2)) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of an ME Res16UNet state dict, built like ME's ``network_initialization``
    (``self.inplanes`` bookkeeping, ``_make_layer`` downsample rule)."""
    spec: dict[str, tuple[int, ...]] = {}
    inplanes = init_dim

    def conv(name, k, cin, cout, bias=False):
        spec[f"{name}.kernel"] = (cin, cout) if k == 1 else (k ** 3, cin, cout)
        if bias:
            spec[f"{name}.bias"] = (1, cout)

    def norm(name, c):
        for key in _BN_KEYS:
            spec[f"{name}.bn.{key}"] = (c,)
        spec[f"{name}.bn.num_batches_tracked"] = ()

    def make_layer(name, out, blocks):
        nonlocal inplanes
        for i in range(blocks):
            if i == 0 and inplanes != out:
                conv(f"{name}.{i}.downsample.0", 1, inplanes, out)
                norm(f"{name}.{i}.downsample.1", out)
            conv(f"{name}.{i}.conv1", 3, inplanes, out)
            norm(f"{name}.{i}.norm1", out)
            conv(f"{name}.{i}.conv2", 3, out, out)
            norm(f"{name}.{i}.norm2", out)
            inplanes = out

    conv("conv0p1s1", 3, in_channels, inplanes)
    norm("bn0", inplanes)
    for level, name in enumerate(("conv1p1s2", "conv2p2s2", "conv3p4s2", "conv4p8s2")):
        conv(name, 2, inplanes, inplanes)
        norm(f"bn{level + 1}", inplanes)
        make_layer(f"block{level + 1}", planes[level], layers[level])
    skips = (planes[2], planes[1], planes[0], init_dim)
    for j, name in enumerate(("convtr4p16s2", "convtr5p8s2", "convtr6p4s2", "convtr7p2s2")):
        conv(name, 2, inplanes, planes[4 + j])
        norm(f"bntr{4 + j}", planes[4 + j])
        inplanes = planes[4 + j] + skips[j]
        make_layer(f"block{5 + j}", planes[4 + j], layers[4 + j])
    conv("final", 1, planes[7], out_channels, bias=True)
    return spec


def random_me_state_dict(spec: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of the given shapes: He-scaled kernels, BN affine near 1/0, var > 0."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in spec.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(7, dtype=torch.long)
        elif key.endswith(".kernel"):
            fan_in = shape[0] * shape[1] if len(shape) == 3 else shape[0]
            out[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif key.endswith(("running_var", ".bn.weight")):
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            out[key] = torch.randn(shape, generator=g) * 0.1
    return out


class MEForward:
    """Functional ME Res16UNet forward on an ME-layout state dict.

    With ``calibrate=True`` every BN first sets its running statistics to the batch statistics
    of its input (written back into the state dict), so random weights give O(1) activations.
    """

    def __init__(self, state: dict[str, torch.Tensor], layers=(2, 3, 4, 6, 2, 2, 2, 2),
                 calibrate: bool = False, eps: float = 1e-5) -> None:
        self.sd, self.layers, self.calibrate, self.eps = state, layers, calibrate, eps

    def bn(self, name: str, x: torch.Tensor) -> torch.Tensor:
        p = f"{name}.bn."
        if self.calibrate:
            self.sd[p + "running_mean"] = x.mean(0).detach().clone()
            self.sd[p + "running_var"] = x.var(0, unbiased=False).detach().clone() + 0.05
        return (x - self.sd[p + "running_mean"]) / torch.sqrt(self.sd[p + "running_var"] + self.eps) \
            * self.sd[p + "weight"] + self.sd[p + "bias"]

    def block(self, name: str, coords: torch.Tensor, x: torch.Tensor, ts: int) -> torch.Tensor:
        _, out = me_conv(coords, x, self.sd[f"{name}.conv1.kernel"], 3, 1, ts)
        out = torch.relu(self.bn(f"{name}.norm1", out))
        _, out = me_conv(coords, out, self.sd[f"{name}.conv2.kernel"], 3, 1, ts)
        out = self.bn(f"{name}.norm2", out)
        if f"{name}.downsample.0.kernel" in self.sd:
            x = self.bn(f"{name}.downsample.1", x @ self.sd[f"{name}.downsample.0.kernel"])
        return torch.relu(out + x)

    def layer(self, index: int, coords: torch.Tensor, x: torch.Tensor, ts: int) -> torch.Tensor:
        for i in range(self.layers[index - 1]):
            x = self.block(f"block{index}.{i}", coords, x, ts)
        return x

    def __call__(self, coords: torch.Tensor, feats: torch.Tensor,
                 normalize: bool = True) -> torch.Tensor:
        """(N, 4) (b, x, y, z) unique cells, (N, Cin) feats → (N, Cout) in the input row order."""
        sd = self.sd
        c1 = coords.long()
        _, p1 = me_conv(c1, feats, sd["conv0p1s1.kernel"], 3, 1, 1)
        p1 = torch.relu(self.bn("bn0", p1))
        skips = [(c1, p1)]
        x, c = p1, c1
        for level, name in enumerate(("conv1p1s2", "conv2p2s2", "conv3p4s2", "conv4p8s2")):
            ts = 2 ** level
            c, x = me_conv(c, x, sd[f"{name}.kernel"], 2, 2, ts)
            x = torch.relu(self.bn(f"bn{level + 1}", x))
            x = self.layer(level + 1, c, x, 2 * ts)
            skips.append((c, x))
        skips.pop()  # the bottleneck is not a skip
        for j, name in enumerate(("convtr4p16s2", "convtr5p8s2", "convtr6p4s2", "convtr7p2s2")):
            fine_c, fine_x = skips.pop()
            ts = 2 ** (3 - j)
            x = me_conv_transpose(c, x, fine_c, sd[f"{name}.kernel"], ts)
            x = torch.relu(self.bn(f"bntr{4 + j}", x))
            c = fine_c
            x = self.layer(5 + j, c, torch.cat([x, fine_x], dim=1), ts)
        out = x @ sd["final.kernel"] + sd["final.bias"]
        return out / out.norm(dim=1, keepdim=True) if normalize else out


def random_cloud(n: int, low: int, high: int, batch: int = 2, channels: int = 1,
                 seed: int = 0, feats: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique random (b, x, y, z) cells in [low, high)³ per frame, clustered on a few surfaces
    so that neighbourhoods are populated; returns (coords (N, 4) int64, feats (N, channels))."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for b in range(batch):
        centres = torch.randint(low, high, (6, 3), generator=g).float()
        pts = centres[torch.randint(0, 6, (n,), generator=g)] + torch.randn(n, 3, generator=g) * (high - low) / 8
        cells = pts.round().long().clamp(low, high - 1)
        rows.append(torch.cat([torch.full((n, 1), b), cells], dim=1))
    coords = torch.unique(torch.cat(rows), dim=0)
    coords = coords[torch.randperm(coords.shape[0], generator=g)]
    values = torch.randn(coords.shape[0], channels, generator=g) if feats is None else feats
    return coords, values

"""Pre-training decoders (docs/method.md §7): mask tokens at masked voxels, visible voxels carry their
encoder ancestor's token; a one-stage stock DSVT (default) or a sparse-conv stack (Table D.6).

Both read ``voxel_coords`` (N_v, 4), ``mae_mask`` (N_v,), the encoder's ``encoder_features``
(N_e, C) at ``encoder_coords`` (N_e, 4), and write ``decoder_features`` (N_m, C) for the masked
voxels in the order of ``torch.nonzero(mae_mask)``.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from easydict import EasyDict
from pcdet.models.backbones_3d.dsvt import DSVT
from torch import nn

from pcdet_seal.geometry import join_by_coords

DECODER_MODES = ("z_resolved", "reference_tokens")


class MaskToken(nn.Module):
    """A learned (1, C) token, zero-initialised (a module of its own, so DSVT's Xavier reset of the
    decoder does not touch it)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels))

    def forward(self, n: int) -> torch.Tensor:
        return self.weight.expand(n, -1)


def ancestor_coords(voxel_coords: torch.Tensor, encoder_stride: Sequence[int]) -> torch.Tensor:
    """(N, 4) ``(b, z, y, x)`` → the coordinate of the encoder's last-stage token covering each voxel.

    ``encoder_stride`` is the total DSVT downsampling (x, y, z), the product of ``downsample_stride``.
    """
    sx, sy, sz = (int(s) for s in encoder_stride)
    c = voxel_coords.long()
    return torch.stack([c[:, 0], torch.div(c[:, 1], sz, rounding_mode="floor"),
                        torch.div(c[:, 2], sy, rounding_mode="floor"),
                        torch.div(c[:, 3], sx, rounding_mode="floor")], dim=1)


def assemble_tokens(batch_dict: dict, mask_token: MaskToken, encoder_stride: Sequence[int]) -> torch.Tensor:
    """(N_v, C) decoder input: ancestor encoder token for visible voxels, mask token for masked ones."""
    coords, mask = batch_dict["voxel_coords"], batch_dict["mae_mask"]
    enc_feats, enc_coords = batch_dict["encoder_features"], batch_dict["encoder_coords"]
    visible = torch.nonzero(~mask, as_tuple=True)[0]
    index, found = join_by_coords(ancestor_coords(coords[visible], encoder_stride), enc_coords.long())
    if not bool(found.all()):
        missing = coords[visible][~found][0].tolist()
        raise RuntimeError(f"{int((~found).sum())} visible voxels have no encoder token (e.g. voxel {missing}); "
                           f"the encoder stride {list(encoder_stride)} does not match its output coordinates")
    tokens = mask_token(coords.shape[0])
    return tokens.index_put((visible,), enc_feats[index])


def check_row_order(out_coords: torch.Tensor, in_coords: torch.Tensor, name: str) -> None:
    """The decoders select the masked rows of their output with ``out[mask]``, which is right only
    when output row i is input token i: raise if the output coordinates are not the input's."""
    if out_coords.shape != in_coords.shape or not torch.equal(out_coords.long(), in_coords.long()):
        raise RuntimeError(f"{name}: output rows are not in the order of its input tokens "
                           f"({tuple(out_coords.shape)} vs {tuple(in_coords.shape)} coordinates), so the "
                           "masked rows cannot be selected by position")


def _dsvt_config(model_cfg: Any, channels: int) -> EasyDict:
    """A one-stage DSVT config from the decoder block, with the keys DSVT needs but ignores filled in."""
    cfg = EasyDict(copy.deepcopy(dict(model_cfg)))
    if len(cfg.block_name) != 1 or len(cfg.INPUT_LAYER.downsample_stride) != 0:
        raise ValueError("MODEL.DECODER (DSVTMaskDecoder) must describe one DSVT stage: one block_name and "
                         f"INPUT_LAYER.downsample_stride [], got {cfg.block_name} and "
                         f"{cfg.INPUT_LAYER.downsample_stride}")
    if cfg.d_model[0] != channels:
        raise ValueError(f"MODEL.DECODER.d_model {cfg.d_model[0]} must equal the encoder width {channels}")
    cfg.setdefault("output_shape", list(cfg.INPUT_LAYER.sparse_shape[:2]))
    cfg.setdefault("conv_out_channel", channels)
    return cfg


class DSVTMaskDecoder(nn.Module):
    """One stock DSVT stage over all voxels at full 3-D resolution (``DECODER_MODE: z_resolved``),
    or over the encoder tokens at their coarse coordinates plus mask tokens at the masked voxels
    (``reference_tokens``, the reference's token set; DSVT accepts duplicate coordinates, but a
    window holding more tokens than its volume would overflow DSVT's set indexing — not guarded).

    ``MODEL.DECODER`` holds a DSVT block (``INPUT_LAYER``, ``block_name``, ``set_info``,
    ``d_model``, ``nhead``, ``dim_feedforward``, ``dropout``, ``activation``, ``USE_CHECKPOINT``)
    with one stage; default [[48, 2]] = 4 set-attention layers, own positional embeddings.
    The mask token lives outside the DSVT module, so DSVT's Xavier reset leaves it at zero.
    """

    def __init__(self, model_cfg: Any, input_channels: int, encoder_stride: Sequence[int], **kwargs: Any) -> None:
        super().__init__()
        self.model_cfg = model_cfg
        self.mode = model_cfg.get("DECODER_MODE", "z_resolved")
        if self.mode not in DECODER_MODES:
            raise ValueError(f"MODEL.DECODER.DECODER_MODE must be one of {DECODER_MODES}, got {self.mode!r}")
        self.encoder_stride = [int(s) for s in encoder_stride]
        self.decoder = DSVT(_dsvt_config(model_cfg, input_channels))
        self.mask_token = MaskToken(input_channels)
        self.num_point_features = input_channels

    def forward(self, batch_dict: dict) -> dict:
        coords, mask = batch_dict["voxel_coords"], batch_dict["mae_mask"]
        if self.mode == "z_resolved":
            tokens = assemble_tokens(batch_dict, self.mask_token, self.encoder_stride)
            token_coords = coords
        else:
            masked = torch.nonzero(mask, as_tuple=True)[0]
            tokens = torch.cat([batch_dict["encoder_features"], self.mask_token(masked.numel())])
            token_coords = torch.cat([batch_dict["encoder_coords"].to(coords.dtype), coords[masked]])
        ret = self.decoder({"voxel_features": tokens, "voxel_coords": token_coords,
                            "batch_size": batch_dict["batch_size"]})
        check_row_order(ret["voxel_coords"], token_coords, "DSVTMaskDecoder")
        out = ret["voxel_features"]
        if self.mode == "z_resolved":
            batch_dict["decoder_features"] = out[mask]
        else:
            batch_dict["decoder_features"] = out[batch_dict["encoder_features"].shape[0]:]
        return batch_dict


class SparseConvDecoder(nn.Module):
    """Table D.6's sparse-convolution decoder: the same token set as ``z_resolved``, then
    ``NUM_LAYERS`` × (SubMConv3d 3³ → BatchNorm → ReLU) on the full grid (spconv; the
    algorithm per device is chosen by :mod:`pcdet_seal.seal.spconv_utils`).

    Config: ``NUM_LAYERS`` (4), ``sparse_shape`` (x, y, z grid; default the dataset grid).
    """

    def __init__(self, model_cfg: Any, input_channels: int, encoder_stride: Sequence[int],
                 grid_size: Sequence[int], **kwargs: Any) -> None:
        super().__init__()
        from pcdet_seal.seal import spconv_utils

        self.model_cfg = model_cfg
        self.encoder_stride = [int(s) for s in encoder_stride]
        shape = model_cfg.get("sparse_shape", None) or [int(g) for g in grid_size]
        self.spatial_shape = [int(shape[2]), int(shape[1]), int(shape[0])]  # (z, y, x) as the indices
        num_layers = int(model_cfg.get("NUM_LAYERS", 4))
        self.convs = nn.ModuleList(spconv_utils.subm_conv3(input_channels, input_channels, "mae_decoder")
                                   for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(input_channels, eps=1e-3, momentum=0.01)
                                   for _ in range(num_layers))
        self.mask_token = MaskToken(input_channels)
        self.num_point_features = input_channels

    def forward(self, batch_dict: dict) -> dict:
        from pcdet_seal.seal import spconv_utils

        coords, mask = batch_dict["voxel_coords"], batch_dict["mae_mask"]
        tokens = assemble_tokens(batch_dict, self.mask_token, self.encoder_stride)
        spconv_utils.set_conv_algo(self, tokens.device)
        with spconv_utils.safe_cpu_threads(tokens.device):
            x = spconv_utils.sparse_tensor(tokens, coords.int().contiguous(), self.spatial_shape,
                                           int(batch_dict["batch_size"]))
            for conv, norm in zip(self.convs, self.norms):
                x = conv(x)
                x = x.replace_feature(torch.relu(norm(x.features)))
        check_row_order(x.indices, coords, "SparseConvDecoder")
        batch_dict["decoder_features"] = x.features[mask]
        return batch_dict

"""Decoder token assembly (docs/method.md §7) on hand-made coordinates."""
import pytest
import torch

pytest.importorskip("pcdet", reason="needs OpenPCDet (pcdet) for the decoder module")
pytestmark = pytest.mark.pcdet


def test_visible_voxels_take_their_own_pillar_token_and_masked_the_mask_token():
    from pcdet_seal.models.decoders import MaskToken, ancestor_coords, assemble_tokens

    # Encoder output: pillar tokens at (b, 0, y, x); same (y, x) in two frames must not mix.
    enc_coords = torch.tensor([[0, 0, 5, 7], [1, 0, 5, 7], [0, 0, 2, 3]])
    enc_feats = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    voxel_coords = torch.tensor([
        [0, 0, 5, 7],    # frame 0 pillar (5, 7), z 0
        [0, 31, 5, 7],   # frame 0 pillar (5, 7), z 31 -> same pillar
        [1, 17, 5, 7],   # frame 1 pillar (5, 7)
        [0, 4, 2, 3],    # frame 0 pillar (2, 3) but masked
        [0, 9, 2, 3],    # frame 0 pillar (2, 3)
    ])
    mask = torch.tensor([False, False, False, True, False])
    token = MaskToken(2)
    with torch.no_grad():
        token.weight.fill_(-1.0)
    batch = {"voxel_coords": voxel_coords, "mae_mask": mask, "encoder_features": enc_feats,
             "encoder_coords": enc_coords}
    out = assemble_tokens(batch, token, encoder_stride=(1, 1, 32))
    assert out.tolist() == [[1.0, 1.0], [1.0, 1.0], [2.0, 2.0], [-1.0, -1.0], [3.0, 3.0]]
    assert ancestor_coords(torch.tensor([[1, 31, 9, 8]]), (2, 2, 8)).tolist() == [[1, 3, 4, 4]]


def test_visible_voxel_without_encoder_token_is_an_error():
    from pcdet_seal.models.decoders import MaskToken, assemble_tokens

    batch = {"voxel_coords": torch.tensor([[0, 3, 1, 1]]), "mae_mask": torch.tensor([False]),
             "encoder_features": torch.ones(1, 2), "encoder_coords": torch.tensor([[0, 0, 9, 9]])}
    with pytest.raises(RuntimeError, match="no encoder token"):
        assemble_tokens(batch, MaskToken(2), encoder_stride=(1, 1, 32))

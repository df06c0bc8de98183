"""ingroup_inds of pcdet_seal.ops against its definition."""
from collections import Counter

import pytest
import torch

from pcdet_seal.ops import ingroup_inds


def test_ingroup_inds_is_a_numbering_of_every_group():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(-50, 50, (5000,), generator=generator) * 1_000_003  # sparse, negative, large
    out = ingroup_inds(ids)
    assert out.dtype == torch.int64 and out.shape == ids.shape
    # Definition: within each group the indices are 0 .. size - 1, each exactly once.
    for group in ids.unique().tolist():
        members = out[ids == group]
        assert sorted(members.tolist()) == list(range(len(members)))


def test_ingroup_inds_numbers_in_input_order():
    ids = torch.tensor([7, 3, 7, 7, 3, 9, 3, 7])
    seen = Counter()
    expected = []
    for g in ids.tolist():
        expected.append(seen[g])
        seen[g] += 1
    assert ingroup_inds(ids).tolist() == expected == [0, 0, 1, 2, 1, 0, 2, 3]


def test_ingroup_inds_edge_cases():
    assert ingroup_inds(torch.zeros(0, dtype=torch.int64)).shape == (0,)
    assert ingroup_inds(torch.full((4,), 5)).tolist() == [0, 1, 2, 3]
    assert ingroup_inds(torch.arange(6)).tolist() == [0] * 6
    with pytest.raises(ValueError, match="1-D"):
        ingroup_inds(torch.zeros(2, 2, dtype=torch.int64))

"""Fixtures of the SealMAE tests (tests/models/): the tiny pre-training config on small frames and
its synthetic dataset, built once per test module."""
from __future__ import annotations

import pytest

from helpers_models import dataset, tiny_pretrain


@pytest.fixture(scope="module")
def cfg():
    return tiny_pretrain()


@pytest.fixture(scope="module")
def ds(cfg):
    return dataset(cfg)

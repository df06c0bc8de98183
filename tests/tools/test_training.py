"""pcdet_seal.tools.training: on CPU a seed fixes a training run bit for bit (on one machine)."""
from __future__ import annotations

import pytest
import torch

from pcdet_seal.tools import training


def _determinism() -> tuple[bool, bool]:
    return torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()


def test_reproducible_kernels_is_scoped_and_cpu_only():
    before = _determinism()
    with training.reproducible_kernels(torch.device("cpu")) as on:
        assert on and torch.are_deterministic_algorithms_enabled()
    assert _determinism() == before
    with pytest.raises(RuntimeError, match="inside"):
        with training.reproducible_kernels(torch.device("cpu")):
            raise RuntimeError("inside")
    assert torch.are_deterministic_algorithms_enabled() == before[0]
    with training.reproducible_kernels(torch.device("cuda")) as on:  # a device object; CUDA itself is not touched
        assert not on and torch.are_deterministic_algorithms_enabled() == before[0]


@pytest.mark.pcdet
@pytest.mark.spconv
def test_same_seed_gives_bit_identical_weights_with_two_threads():
    """Two threads: torch's CPU index_put_(accumulate=True), the backward of the dynamic VFE's
    ``x_max[unq_inv]``, adds in thread order unless deterministic kernels are on."""
    pytest.importorskip("pcdet", reason="trains through OpenPCDet: needs an importable pcdet checkout")
    pytest.importorskip("spconv", reason="the tiny DSVT config needs spconv")
    from pcdet_seal.tools.study import Grid, finetune_config, load_base_configs

    _, fine = load_base_configs("all")
    cfg = finetune_config(fine, Grid(), "full")
    cfg.DATA_CONFIG.NUM_FRAMES.train = 8
    cfg.OPTIMIZATION.NUM_EPOCHS = 2
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = [training.train_model(cfg, torch.device("cpu"), 0, f"run {i}", 2, progress=False) for i in range(2)]
    finally:
        torch.set_num_threads(threads)
    (first, first_info), (second, second_info) = runs
    assert first_info["iterations"] == 8
    assert first_info["history"]["loss"] == second_info["history"]["loss"]
    a, b = first.state_dict(), second.state_dict()
    differing = [key for key in a if not torch.equal(a[key], b[key])]
    assert not differing, f"same seed, different weights: {differing[:5]}"

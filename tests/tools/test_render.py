"""scripts/render.py without pcdet: stand-in targets of a synthetic frame → I2Mask decisions →
PNGs (targets PCA, clusters, partition, mask); what the pictures are drawn from is consistent."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pcdet_seal_autoload import CPU_ENV

pytest.importorskip("matplotlib", reason="pictures need matplotlib (pip install matplotlib)")

from pcdet_seal.tools.cli import render  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_pictures_data_is_consistent_with_i2mask():
    from pcdet_seal.seal.standin import StandInTeacher
    from pcdet_seal.synthetic import SyntheticConfig, generate_frame

    frame = generate_frame(1, 0, SyntheticConfig.from_dict({"SENSOR": {"NUM_BEAMS": 8, "AZIMUTH_STEPS": 256}}))
    data = render.standin_pictures(frame, StandInTeacher(), [0.4, 0.4, 0.375], [-25.6, -25.6, -2, 25.6, 25.6, 4],
                                   {"NAME": "I2Mask"})
    n = len(data.xy)
    assert n > 100 and data.targets.shape == (n, 64) and data.mask.shape == (n,)
    assert np.abs(data.xy).max() <= 25.6
    assert set(np.unique(data.cluster_set)) <= {0, 1, 2}
    assert not data.mask[data.cluster_set == 2].any()  # K3 is never masked
    for c in range(len(data.cluster_ratio)):  # n_k * r_k rounded stochastically: floor or floor + 1
        members = data.cluster == c
        assert data.mask[members].sum() - int(np.floor(members.sum() * data.cluster_ratio[c])) in (0, 1)
    assert 0.0 < data.mask.mean() < 1.0


def test_render_cli_writes_titled_pngs(tmp_path, capsys):
    assert render.main(["--out", str(tmp_path), "--prefix", "f0_"]) == 0
    out = capsys.readouterr().out
    names = ["targets_pca", "kmeans_clusters", "i2mask_partition", "i2mask_mask"]
    for name in names:
        path = tmp_path / f"f0_{name}.png"
        assert f"{name}: {path}" in out
        head = path.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        assert width >= 600 and height >= 500
        assert path.stat().st_size > 20_000  # thousands of drawn voxels, not an empty canvas
    assert not (tmp_path / "f0_recon_error.png").exists()  # needs a checkpoint


def _readme_render_command() -> list[str]:
    """README's render command with the demo's checkpoint and cache, exactly as written there."""
    text = " ".join((ROOT / "README.md").read_text().split())
    match = re.search(r"`(python scripts/render\.py [^`]*)` \(add `(--ckpt [^`]*)`", text)
    assert match, "README no longer documents the render command this test runs"
    return shlex.split(match.group(1)) + shlex.split(match.group(2))


@pytest.mark.pcdet
@pytest.mark.spconv
def test_the_readme_render_command_works_as_written_on_a_demo_output(tmp_path):
    """The demo writes ./pcdet_seal_demo/ (stand-in cache of the pre-training scenes, checkpoint);
    README's command, run verbatim next to it, must find its frame in that cache."""
    pytest.importorskip("pcdet", reason="needs an importable OpenPCDet (pcdet) checkout")
    pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")
    import torch

    from helpers_models import TINY_PRETRAIN, dataset, load, network, small_frames
    from pcdet_seal import registry
    from pcdet_seal.tools.study import ARMS, QUICK_GRID, load_base_configs, pretrain_config
    from pcdet_seal.tools.synthetic_targets import write_targets

    registry.register()
    out = tmp_path / "pcdet_seal_demo"
    cache = out / "seal_cache_standin"
    pre_cfg = pretrain_config(load_base_configs()[0], QUICK_GRID, ARMS["picture"], cache, None)
    write_targets(pre_cfg, cache, None, torch.device("cpu"))  # as the demo does (through the study)
    cfg = small_frames(load(TINY_PRETRAIN))
    ckpt = out / "pretrain" / "picture_seed0.pth"
    ckpt.parent.mkdir()
    torch.save({"model_state": network(cfg, dataset(cfg)).state_dict(), "epoch": 1}, ckpt)
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")  # the command is run from the repository root
    command = _readme_render_command()
    assert command[:2] == ["python", "scripts/render.py"]
    env = {**os.environ, CPU_ENV: "1"}
    run = subprocess.run([sys.executable, *command[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "MissingFrameError" not in run.stderr
    pictures = tmp_path / "pics"
    assert (pictures / "recon_error.png").is_file() and (pictures / "i2mask_mask.png").is_file()

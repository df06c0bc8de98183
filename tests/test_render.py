"""scripts/render.py without pcdet: stand-in targets of a synthetic frame → I2Mask decisions →
PNGs (targets PCA, clusters, partition, mask); what the pictures are drawn from is consistent."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="pictures need matplotlib (pip install matplotlib)")

ROOT = Path(__file__).resolve().parents[1]


def _render():
    spec = importlib.util.spec_from_file_location("render_script", ROOT / "scripts" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pictures_data_is_consistent_with_i2mask():
    render = _render()
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
    render = _render()
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

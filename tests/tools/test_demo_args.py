"""scripts/demo.py's guards, checked before any work: a non-empty --out needs --overwrite, and a
Seal teacher whose feature width differs from the config's is refused before the cache is written."""
from __future__ import annotations

import pytest

from pcdet_seal.tools.cli import demo


def test_a_non_empty_out_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "demo_results.json").write_text('{"first run": true}')
    assert demo.main(["--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out} is not empty" in err and "--overwrite" in err
    assert (out / "demo_results.json").read_text() == '{"first run": true}'  # nothing replaced
    assert sorted(p.name for p in out.iterdir()) == ["demo_results.json"]
    assert demo.build_parser().parse_args(["--out", str(out), "--overwrite"]).overwrite


@pytest.mark.pcdet
@pytest.mark.spconv
def test_a_teacher_of_the_wrong_width_is_refused_before_the_cache_is_written(tmp_path, capsys):
    pytest.importorskip("pcdet", reason="the demo needs an importable OpenPCDet (pcdet) checkout")
    pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")
    from helpers_models import random_teacher_file
    from pcdet_seal.seal.minkunet import Res16UNetArch

    arch = Res16UNetArch(out_channels=16, init_dim=8, planes=(8, 16, 16, 24, 16, 16, 8, 8))
    random_teacher_file(tmp_path / "seal16.pth", arch, seed=1)
    out = tmp_path / "demo"
    assert demo.main(["--quick", "--out", str(out), "--seal-ckpt", str(tmp_path / "seal16.pth")]) == 2
    err = capsys.readouterr().err
    assert "seal16.pth: the teacher outputs 16 channels per cell but MODEL.SEAL_TARGET.NUM_FEATURES of " \
           "seal_pretrain_tiny.yaml is 64" in err
    assert not list(out.rglob("*.npz")) and not list(out.rglob("meta.json"))

"""MinkowskiEngine checkpoint loading: the 374-tensor key set, three file formats, prefix
stripping, strict failures, kernel layout, the converter script and `load_teacher`."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from me_reference import me_offsets, me_state_dict_spec, random_me_state_dict
from pcdet_seal.seal.checkpoint import (CONVERTED_FORMAT, SealCheckpointError, convert_checkpoint,
                                        convert_kernel, convert_me_state_dict, file_sha256,
                                        is_learnable_me_key, me_state_dict_shapes,
                                        read_teacher_checkpoint, split_source_checkpoint)
from pcdet_seal.seal.minkunet import Res16UNetArch
from pcdet_seal.tools.cli import convert_seal_checkpoint

SMALL = Res16UNetArch(in_channels=1, out_channels=16, init_dim=8, planes=(8, 16, 16, 24, 16, 16, 8, 8))


def _small_state(seed: int = 0) -> dict[str, torch.Tensor]:
    return random_me_state_dict(me_state_dict_spec(1, 16, 8, SMALL.planes, SMALL.layers), seed)


def test_res16unet34c_has_374_tensors_and_37849184_learnable_parameters():
    spec = me_state_dict_spec()
    assert me_state_dict_shapes() == spec
    assert len(spec) == 374
    assert sum(math.prod(s) for k, s in spec.items() if is_learnable_me_key(k)) == 37_849_184
    assert spec["conv0p1s1.kernel"] == (27, 1, 32)
    assert spec["block2.0.downsample.0.kernel"] == (32, 64)
    assert spec["convtr4p16s2.kernel"] == (8, 256, 256)
    assert spec["block5.0.conv1.kernel"] == (27, 384, 256)
    assert spec["final.kernel"] == (96, 64) and spec["final.bias"] == (1, 64)
    assert "block1.0.downsample.0.kernel" not in spec  # 32 → 32: no shortcut conv
    assert sum(k.endswith(".bn.num_batches_tracked") for k in spec) == 9 + 2 * 23 + 7


def test_kernel_conversion_follows_me_offset_order():
    # ME kernel index k has offset me_offsets(k); spconv weight [Cout, kx, ky, kz, Cin] at
    # (ix, iy, iz) must hold the same Cin×Cout matrix, transposed.
    for k in (2, 3):
        kernel = torch.randn(k ** 3, 4, 5)
        converted = convert_kernel(kernel)
        assert converted.shape == (5, k, k, k, 4)
        centre = k // 2 if k % 2 else 0
        for index, (dx, dy, dz) in enumerate(me_offsets(k, 1).tolist()):
            assert torch.equal(converted[:, dx + centre, dy + centre, dz + centre, :], kernel[index].t())


@pytest.mark.parametrize("fmt", ["slidr", "lightning", "bare"])
def test_three_formats_and_prefixes_load(tmp_path, fmt):
    state = _small_state()
    if fmt == "slidr":
        obj = {"model_points": {f"module.{k}": v for k, v in state.items()},
               "model_images": {"encoder.conv.weight": torch.zeros(2)}, "epoch": 50,
               "config": {"cylindrical_coordinates": True, "voxel_size": 0.1}}
    elif fmt == "lightning":
        obj = {"state_dict": {**{f"model_points.{k}": v for k, v in state.items()},
                              "model_images.encoder.conv.weight": torch.zeros(2)},
               "epoch": 3, "hyper_parameters": {"lr": 0.5}}
    else:
        obj = {f"model.encoder.{k}": v for k, v in state.items()}
    torch.save(obj, tmp_path / "src.pt")
    found, detected, _ = split_source_checkpoint(torch.load(tmp_path / "src.pt", weights_only=True), "src")
    assert detected == fmt
    assert set(found) == set(state)
    meta = convert_checkpoint(tmp_path / "src.pt", tmp_path / "dst.pth", SMALL)
    assert meta["source_format"] == fmt and meta["num_tensors"] == len(state) == 368
    assert meta["source_sha256"] == file_sha256(tmp_path / "src.pt")
    converted, read_meta = read_teacher_checkpoint(tmp_path / "dst.pth")
    assert read_meta["format"] == CONVERTED_FORMAT and read_meta["arch"] == SMALL.to_dict()
    assert torch.equal(converted["bn0.running_var"], state["bn0.bn.running_var"])
    assert torch.equal(converted["final.bias"], state["final.bias"].reshape(-1))
    assert torch.equal(converted["conv1p1s2.weight"], convert_kernel(state["conv1p1s2.kernel"]))
    if fmt == "slidr":
        assert meta["source_config"] == {"cylindrical_coordinates": True, "voxel_size": 0.1}
    assert not list(tmp_path.glob("*.tmp"))


def test_strict_failure_lists_missing_unexpected_and_misshapen_keys():
    state = _small_state()
    del state["block4.5.conv2.kernel"]
    state["block9.0.conv1.kernel"] = torch.zeros(27, 1, 1)
    state["final.kernel"] = torch.zeros(8, 17)
    with pytest.raises(SealCheckpointError) as err:
        convert_me_state_dict(state, SMALL, "seal.pt")
    text = str(err.value)
    assert "seal.pt" in text
    assert "missing (1): block4.5.conv2.kernel (27, 24, 24)" in text
    assert "unexpected (1): block9.0.conv1.kernel (27, 1, 1)" in text
    assert "misshapen (1): final.kernel: expected (8, 16), got (8, 17)" in text


def test_full_width_checkpoint_fails_against_default_arch_when_reduced(tmp_path):
    torch.save(_small_state(), tmp_path / "small.pt")
    with pytest.raises(SealCheckpointError, match=r"misshapen \(\d+\): conv0p1s1.kernel: expected \(27, 1, 32\)"):
        convert_checkpoint(tmp_path / "small.pt", tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()


def test_pickled_objects_are_refused_without_trust(tmp_path):
    obj = {"state_dict": {f"model_points.{k}": v for k, v in _small_state().items()},
           "hyper_parameters": {"path": Path("/x")}}
    torch.save(obj, tmp_path / "pickled.ckpt")
    with pytest.raises(SealCheckpointError, match="weights_only=True"):
        convert_checkpoint(tmp_path / "pickled.ckpt", tmp_path / "out.pth", SMALL)
    meta = convert_checkpoint(tmp_path / "pickled.ckpt", tmp_path / "out.pth", SMALL, trust_pickle=True)
    assert meta["source_config"] == {"path": repr(Path("/x"))}


def test_corrupt_or_missing_source_names_the_file(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SealCheckpointError, match="bad.pt: unreadable: not a zip-format torch file"):
        convert_checkpoint(tmp_path / "bad.pt", tmp_path / "out.pth")
    with pytest.raises(SealCheckpointError, match="nope.pt: no such file"):
        convert_checkpoint(tmp_path / "nope.pt", tmp_path / "out.pth")
    torch.save({"weights": [1, 2]}, tmp_path / "odd.pt")
    with pytest.raises(SealCheckpointError, match=r"top-level keys: \['weights'\]"):
        convert_checkpoint(tmp_path / "odd.pt", tmp_path / "out.pth")


def test_convert_script_on_a_full_width_checkpoint(tmp_path, capsys):
    spec = me_state_dict_spec()
    torch.save({"model_points": {k: torch.zeros(s, dtype=torch.long if not s else torch.float32)
                                 for k, s in spec.items()}}, tmp_path / "seal.pt")
    assert convert_seal_checkpoint.main([str(tmp_path / "seal.pt"), str(tmp_path / "t.pth")]) == 0
    assert "374 tensors from slidr checkpoint seal.pt" in capsys.readouterr().out
    converted, meta = read_teacher_checkpoint(tmp_path / "t.pth")
    assert len(converted) == 374 and meta["arch"] == Res16UNetArch().to_dict()
    assert converted["convtr4p16s2.weight"].shape == (256, 2, 2, 2, 256)
    assert converted["block2.0.downsample.0.weight"].shape == (64, 32)
    assert convert_seal_checkpoint.main([str(tmp_path / "missing.pt"), str(tmp_path / "x.pth")]) == 1
    assert "missing.pt: no such file" in capsys.readouterr().err


@pytest.mark.spconv
def test_converted_keys_match_the_spconv_network_and_load_teacher(tmp_path):
    pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")
    from pcdet_seal.seal.checkpoint import load_teacher
    from pcdet_seal.seal.minkunet import Res16UNet, SealTeacher

    full = {k: torch.zeros(s) for k, s in me_state_dict_spec().items()}
    net_shapes = {k: tuple(v.shape) for k, v in Res16UNet().state_dict().items()}
    assert {k: tuple(v.shape) for k, v in convert_me_state_dict(full).items()} == net_shapes
    state = _small_state(3)
    torch.save({"state_dict": {f"model_points.{k}": v for k, v in state.items()}}, tmp_path / "s.ckpt")
    convert_checkpoint(tmp_path / "s.ckpt", tmp_path / "t.pth", SMALL)
    teacher, meta = load_teacher(tmp_path / "t.pth")
    assert isinstance(teacher, SealTeacher) and teacher.arch == SMALL
    assert torch.equal(teacher.net.block3[1].conv1.weight,
                       convert_kernel(state["block3.1.conv1.kernel"]))
    with pytest.raises(SealCheckpointError, match=r"t\.pth: holds a Res16UNet .* but .* was requested"):
        load_teacher(tmp_path / "t.pth", arch=Res16UNetArch())
    direct, direct_meta = load_teacher(tmp_path / "s.ckpt", arch=SMALL)  # ME file, converted in memory
    assert direct_meta["source_sha256"] == meta["source_sha256"]
    assert torch.equal(direct.net.final.weight, teacher.net.final.weight)


# --- issue 13: nothing wrong in silence -------------------------------------------------------

def test_a_teacher_with_one_nan_is_refused_naming_the_tensor(tmp_path, capsys):
    state = _small_state(4)
    state["block2.0.conv1.kernel"][0, 0, 0] = float("nan")
    state["bn0.bn.running_var"][1] = float("inf")
    torch.save({"model_points": state}, tmp_path / "nan.pt")
    match = r"nan\.pt: 2 tensors hold NaN/inf.*bn0\.bn\.running_var \(1 of 8 values\).*block2\.0\.conv1\.kernel"
    with pytest.raises(SealCheckpointError, match=match):
        convert_checkpoint(tmp_path / "nan.pt", tmp_path / "out.pth", SMALL)
    assert not (tmp_path / "out.pth").exists()
    with pytest.raises(SealCheckpointError, match=match):  # an ME file converted in memory
        read_teacher_checkpoint(tmp_path / "nan.pt", SMALL)
    # A converted file that went bad afterwards is refused on loading too.
    torch.save({"model_points": _small_state(4)}, tmp_path / "ok.pt")
    convert_checkpoint(tmp_path / "ok.pt", tmp_path / "t.pth", SMALL)
    obj = torch.load(tmp_path / "t.pth")
    obj["state_dict"]["final.weight"][0, 0] = float("nan")
    torch.save(obj, tmp_path / "t.pth")
    with pytest.raises(SealCheckpointError, match=r"t\.pth: 1 tensors hold NaN/inf.*final\.weight \(1 of 128"):
        read_teacher_checkpoint(tmp_path / "t.pth")


@pytest.mark.parametrize("kind,match", [
    ("text", r"text\.pth: unreadable or corrupt \(.*\); expected a torch file"),
    ("empty", r"empty\.pth: unreadable or corrupt \(EOFError.*expected a torch file"),
    ("list", r"list\.pth: expected a MinkUNet checkpoint, a dict .*got a list"),
    ("no_arch", r"no_arch\.pth: a converted teacher file needs meta keys \['arch'\]"),
    ("bad_arch", r"bad_arch\.pth: meta\['arch'\] is not a Res16UNet architecture"),
    ("bad_state", r"bad_state\.pth: a converted teacher file needs 'state_dict', a dict of tensors; got list"),
])
def test_files_that_are_not_teachers_get_one_clear_message(tmp_path, capsys, kind, match):
    path = tmp_path / f"{kind}.pth"
    meta = {"format": CONVERTED_FORMAT, "conversion_version": 1, "arch": SMALL.to_dict(), "source_file": "x",
            "source_sha256": "00"}
    if kind == "text":
        path.write_text("hello, this is not a checkpoint\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "list":
        torch.save([1, 2], path)
    elif kind == "no_arch":
        torch.save({"state_dict": {}, "meta": {k: v for k, v in meta.items() if k != "arch"}}, path)
    elif kind == "bad_arch":
        torch.save({"state_dict": {}, "meta": {**meta, "arch": {"depth": 3}}}, path)
    else:
        torch.save({"state_dict": [1], "meta": meta}, path)
    with pytest.raises(SealCheckpointError, match=match):
        read_teacher_checkpoint(path)
    assert convert_seal_checkpoint.main([str(path), str(tmp_path / "out.pth")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err and "Traceback" not in err


class _Payload:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['PWNED_FILE'], 'w').write('pwned')",))


def test_a_malicious_checkpoint_is_refused_and_its_payload_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("PWNED_FILE", str(marker))
    torch.save({"model_points": _small_state(), "config": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(SealCheckpointError, match=r"evil\.pt: cannot be read with torch\.load\(weights_only=True\)"):
        convert_checkpoint(tmp_path / "evil.pt", tmp_path / "out.pth", SMALL)
    with pytest.raises(SealCheckpointError, match="weights_only=True"):
        read_teacher_checkpoint(tmp_path / "evil.pt", SMALL)
    assert not marker.exists() and not (tmp_path / "out.pth").exists()


def test_teacher_width_is_checked_against_the_config():
    from pcdet_seal.seal.checkpoint import check_teacher_width

    check_teacher_width(64, 64, "t.pth", "MODEL.SEAL_TARGET.NUM_FEATURES")
    with pytest.raises(SealCheckpointError, match=r"t\.pth: the teacher outputs 16 channels per cell but "
                                                  r"MODEL\.SEAL_TARGET\.NUM_FEATURES is 64"):
        check_teacher_width(16, 64, "t.pth", "MODEL.SEAL_TARGET.NUM_FEATURES")


def test_a_full_disk_while_converting_names_the_output_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import os

    torch.save({"model_points": _small_state(2)}, tmp_path / "ok.pt")

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(SealCheckpointError, match=r"out\.pth: cannot write the converted teacher \(OSError: .*No space"):
        convert_checkpoint(tmp_path / "ok.pt", tmp_path / "out.pth", SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.pt"]

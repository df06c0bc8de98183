"""Fixtures of the Waymo / nuScenes pre-training tests (tests/datasets/): a random Seal teacher file,
and each dataset's tree on disk with the feature cache scripts/seal_features.py --cfg wrote over
it, both built once per session and shared by the test modules (read only: a test that changes a
cache works on a copy)."""
from __future__ import annotations

import contextlib
import io

import pytest

from helpers_datasets import DATASETS, config
from helpers_models import CFGS, random_teacher_file


@pytest.fixture(scope="session")
def teacher_file(tmp_path_factory):
    """A randomly initialised, reduced-width Res16UNet with 64 outputs, converted like a Seal file."""
    from pcdet_seal.seal.minkunet import Res16UNetArch

    arch = Res16UNetArch(out_channels=64, init_dim=8, planes=(8, 16, 16, 16, 16, 16, 8, 8),
                         layers=(1, 1, 1, 1, 1, 1, 1, 1))
    return random_teacher_file(tmp_path_factory.mktemp("teacher") / "teacher.pth", arch, seed=3)


@pytest.fixture(scope="session")
def teacher(teacher_file):
    from pcdet_seal.seal.checkpoint import load_teacher

    return load_teacher(teacher_file)[0]


#: name → what _write returns; the trees and caches live in the session's temporary folder.
_WRITTEN: dict = {}


def _write(name: str, tmp_path_factory, teacher_file):
    """Data on disk, and the cache written by scripts/seal_features.py --cfg in two shards plus a
    resume run: (name, cfg, expected clouds, cache dir, [(exit code, stdout)] per run)."""
    from pcdet_seal.tools.cli import seal_features

    if name not in _WRITTEN:
        cfg_name, make, data_keys, set_prefix = DATASETS[name]
        root = tmp_path_factory.mktemp(name)
        expected = make(root / "data")
        out = root / "cache"
        script = seal_features
        argv = ["--cfg", str(CFGS / cfg_name), *set_prefix, str(root / "data"), "--ckpt", str(teacher_file),
                "--out", str(out), "--no-progress"]
        runs = []
        for shard in ("1/2", "0/2", "0/1"):
            text = io.StringIO()
            with contextlib.redirect_stdout(text):
                code = script.main(argv + ["--shard", shard])
            runs.append((code, text.getvalue()))
        _WRITTEN[name] = (name, config(cfg_name, root / "data", **data_keys), expected, out, runs)
    return _WRITTEN[name]


@pytest.fixture(scope="module", params=sorted(DATASETS))
def written(request, tmp_path_factory, teacher_file):
    return _write(request.param, tmp_path_factory, teacher_file)


@pytest.fixture(scope="module")
def nuscenes(tmp_path_factory, teacher_file):
    return _write("nuscenes", tmp_path_factory, teacher_file)

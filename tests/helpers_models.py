"""Shared set-up for the pcdet-marked model, config and transfer tests: tiny configs on small
synthetic frames, so one pre-training step takes about a second on a CPU.

The Seal teacher stand-in is a randomly initialised, reduced-width spconv Res16UNet
(``RANDOM_TEACHER`` + ``TEACHER_ARCH`` of cfgs/demo/seal_pretrain_tiny.yaml), or an offline
cache written with ``pcdet_seal.seal.cache`` from random unit features (cache-mode tests), or a
teacher file (:func:`random_teacher_file`) where a test needs a checkpoint on disk.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CFGS = ROOT / "cfgs"
TINY_PRETRAIN = CFGS / "demo" / "seal_pretrain_tiny.yaml"
TINY_FINETUNE = CFGS / "demo" / "finetune_tiny.yaml"
#: A small teacher for the real-size configs' build tests (the 37.8 M-parameter one builds slowly).
SMALL_TEACHER = {"planes": [8, 8, 8, 8, 8, 8, 8, 8], "layers": [1, 1, 1, 1, 1, 1, 1, 1], "init_dim": 8}


def load(path):
    from pcdet_seal.tools.config_network import load_config

    return load_config(path)


def small_frames(cfg):
    """Fewer beams and azimuth steps: ~1-2k voxels per frame instead of ~3k."""
    cfg = copy.deepcopy(cfg)
    cfg.DATA_CONFIG.SYNTHETIC.SENSOR.NUM_BEAMS = 8
    cfg.DATA_CONFIG.SYNTHETIC.SENSOR.AZIMUTH_STEPS = 256
    return cfg


def dataset(cfg, training=True):
    from pcdet.datasets import build_dataloader

    ds, _, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=2, dist=False, workers=0,
                                logger=logging.getLogger("tests"), training=training)
    return ds


def batch(ds, indices=(0, 1)):
    from pcdet.models import load_data_to_gpu

    out = ds.collate_batch([ds[i] for i in indices])
    load_data_to_gpu(out)
    return out


def network(cfg, ds):
    from pcdet.models import build_network

    return build_network(model_cfg=cfg.MODEL, num_class=len(cfg.CLASS_NAMES), dataset=ds)


def tiny_pretrain():
    """The tiny pre-training config on small frames, with the plugin registered."""
    from pcdet_seal import registry

    registry.register()
    return small_frames(load(TINY_PRETRAIN))


def random_teacher_file(path: Path, arch, seed: int = 0) -> Path:
    """A random MinkowskiEngine-layout Res16UNet of ``arch`` (tests/me_reference.py) saved as a Seal
    file next to ``path`` (same name, ``.pt``) and converted into ``path`` as a real one would be."""
    import torch

    from me_reference import me_state_dict_spec, random_me_state_dict
    from pcdet_seal.seal.checkpoint import convert_checkpoint

    spec = me_state_dict_spec(arch.in_channels, arch.out_channels, arch.init_dim, arch.planes, arch.layers)
    source = path.with_suffix(".pt")
    torch.save({"model_points": random_me_state_dict(spec, seed)}, source)
    convert_checkpoint(source, path, arch)
    return path

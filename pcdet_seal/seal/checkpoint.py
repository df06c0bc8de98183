"""MinkowskiEngine MinkUNet checkpoints (SLidR, Lightning or bare state dict) → spconv teacher:
strict key/shape validation, kernel layout conversion (docs/method.md §2.2), converted-file I/O.
Needs torch only; spconv is imported when a teacher is built (`load_teacher`).
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Optional, Union

import torch

from .cache import atomic_write
from .minkunet import Res16UNetArch

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

#: Bump when the converted layout changes; stored in every converted file.
CONVERSION_VERSION = 1
CONVERTED_FORMAT = "pcdet_seal.seal_teacher"
#: Prefixes stripped key by key (Lightning / DataParallel / SLidR wrappers).
KNOWN_PREFIXES = ("model.", "model_points.", "module.", "encoder.")
_BN_BUFFERS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_MAX_LISTED = 25


class SealCheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not hold a complete Res16UNet."""


def _conv_shape(k: int, cin: int, cout: int) -> tuple[int, ...]:
    # ME stores a k³ kernel as (k³, Cin, Cout) and a 1³ kernel as (Cin, Cout).
    return (cin, cout) if k == 1 else (k ** 3, cin, cout)


def me_state_dict_shapes(arch: Res16UNetArch = Res16UNetArch()) -> dict[str, tuple[int, ...]]:
    """Every key of a MinkowskiEngine Res16UNet state dict with its shape.

    For Res16UNet34C: 374 tensors, 37,849,184 learnable parameters.
    """
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, k: int, cin: int, cout: int) -> None:
        shapes[f"{name}.kernel"] = _conv_shape(k, cin, cout)

    def bn(name: str, c: int) -> None:
        for buf in _BN_BUFFERS:
            shapes[f"{name}.bn.{buf}"] = () if buf == "num_batches_tracked" else (c,)

    def layer(name: str, cin: int, cout: int, blocks: int) -> None:
        for i in range(blocks):
            bin_ = cin if i == 0 else cout
            conv(f"{name}.{i}.conv1", 3, bin_, cout)
            bn(f"{name}.{i}.norm1", cout)
            conv(f"{name}.{i}.conv2", 3, cout, cout)
            bn(f"{name}.{i}.norm2", cout)
            if bin_ != cout:
                conv(f"{name}.{i}.downsample.0", 1, bin_, cout)
                bn(f"{name}.{i}.downsample.1", cout)

    p, n, d = arch.planes, arch.layers, arch.init_dim
    conv("conv0p1s1", 3, arch.in_channels, d)
    bn("bn0", d)
    conv("conv1p1s2", 2, d, d)
    bn("bn1", d)
    layer("block1", d, p[0], n[0])
    downs = [(p[0], p[1]), (p[1], p[2]), (p[2], p[3])]
    for i, (cin, cout) in enumerate(downs, start=2):
        conv(f"conv{i}p{2 ** (i - 1)}s2", 2, cin, cin)
        bn(f"bn{i}", cin)
        layer(f"block{i}", cin, cout, n[i - 1])
    ups = [(p[3], p[4], p[2]), (p[4], p[5], p[1]), (p[5], p[6], p[0]), (p[6], p[7], d)]
    for j, (cin, cout, skip) in enumerate(ups):
        i = 4 + j
        conv(f"convtr{i}p{2 ** (8 - i)}s2", 2, cin, cout)
        bn(f"bntr{i}", cout)
        layer(f"block{i + 1}", cout + skip, cout, n[i])
    conv("final", 1, p[7], arch.out_channels)
    shapes["final.bias"] = (1, arch.out_channels)
    return shapes


def is_learnable_me_key(key: str) -> bool:
    """Kernels, BN affine parameters and the final bias (not BN running statistics)."""
    return key.endswith((".kernel", ".bn.weight", ".bn.bias")) or key == "final.bias"


def file_sha256(path: PathLike) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _torch_load(path: PathLike, trust_pickle: bool) -> Any:
    path = Path(path)
    if not path.is_file():
        raise SealCheckpointError(f"Seal checkpoint {path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        detail = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        if not zipfile.is_zipfile(path):
            raise SealCheckpointError(
                f"Seal checkpoint {path}: unreadable: not a zip-format torch file (corrupt, "
                f"truncated, or saved by torch < 1.6, which loads only with --trust-pickle): {detail}"
            ) from err
        raise SealCheckpointError(
            f"Seal checkpoint {path}: cannot be read with torch.load(weights_only=True) because it "
            f"holds objects other than tensors and plain containers ({detail}). Re-save only its "
            f"state dict, or, if you trust the file, pass trust_pickle=True (--trust-pickle)."
        ) from err
    except Exception as err:  # noqa: BLE001 - torch.load raises anything on foreign bytes (KeyError for text)
        raise SealCheckpointError(
            f"Seal checkpoint {path}: unreadable or corrupt ({type(err).__name__}: {err}); expected a torch file "
            f"holding a MinkowskiEngine MinkUNet checkpoint or a file written by convert_seal_checkpoint.py"
        ) from err


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Raise `SealCheckpointError` naming every tensor of ``state`` that holds NaN/inf."""
    bad = []
    for key, value in state.items():
        if value.is_floating_point() or value.is_complex():
            count = int((~torch.isfinite(value)).sum())
            if count:
                bad.append(f"{key} ({count} of {value.numel()} values)")
    if bad:
        raise SealCheckpointError(f"{source}: {len(bad)} tensors hold NaN/inf, a diverged or corrupt teacher: "
                                  f"{_listing(bad)}")


def check_teacher_width(out_channels: int, expected: int, source: PathLike, key: str) -> None:
    """Raise `SealCheckpointError` unless the teacher's feature width matches the config's."""
    if int(out_channels) != int(expected):
        raise SealCheckpointError(
            f"{source}: the teacher outputs {out_channels} channels per cell but {key} is {expected}; use the "
            f"teacher the config was written for, or set {key.split()[0]} to {out_channels}"
        )


def _strip_prefixes(key: str) -> tuple[str, list[str]]:
    """Strip known prefixes from the front of ``key``; return it and the prefixes removed."""
    removed: list[str] = []
    while True:
        prefix = next((p for p in KNOWN_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            return key, removed
        key = key[len(prefix):]
        removed.append(prefix)


def split_source_checkpoint(obj: Any, source: str) -> tuple[dict[str, torch.Tensor], str, dict]:
    """Find the point-network state dict in a loaded checkpoint and strip its prefixes.

    Returns ``(state_dict, format, config)`` where format is ``"slidr"`` (``model_points``),
    ``"lightning"`` (``state_dict``) or ``"bare"``; config is the stored config/hyper-parameters
    (or ``{}``). Keys of other sub-models (e.g. Lightning's ``model_images.*``) are dropped.
    """
    if not isinstance(obj, dict):
        raise SealCheckpointError(f"{source}: expected a MinkUNet checkpoint, a dict (SLidR 'model_points', "
                                  f"Lightning 'state_dict' or a bare state dict), got a {type(obj).__name__}")
    if "model_points" in obj and isinstance(obj["model_points"], dict):
        raw, fmt, config = obj["model_points"], "slidr", obj.get("config", {})
    elif "state_dict" in obj and isinstance(obj["state_dict"], dict):
        raw, fmt, config = obj["state_dict"], "lightning", obj.get("hyper_parameters", {})
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        raw, fmt, config = obj, "bare", {}
    else:
        raise SealCheckpointError(
            f"{source}: not a MinkUNet checkpoint in SLidR ('model_points'), Lightning "
            f"('state_dict') or bare state-dict format; top-level keys: {sorted(map(str, obj))[:20]}"
        )
    stripped = {key: _strip_prefixes(str(key)) for key in raw}
    keys = list(raw)
    if any("model_points." in removed for _, removed in stripped.values()):
        kept = [k for k in keys if "model_points." in stripped[k][1]]
        dropped = sorted({str(k).split(".", 1)[0] for k in keys if k not in kept})
        if dropped:
            logger.info("%s: ignoring %d keys of other sub-models %s", source,
                        len(keys) - len(kept), dropped)
        keys = kept
    state: dict[str, torch.Tensor] = {}
    for key in keys:
        value = raw[key]
        if not isinstance(value, torch.Tensor):
            raise SealCheckpointError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
        new_key = stripped[key][0]
        if new_key in state:
            raise SealCheckpointError(f"{source}: keys collide after prefix stripping: {new_key!r}")
        state[new_key] = value
    return state, fmt, config if isinstance(config, dict) else {}


def _listing(items: list[str]) -> str:
    more = f", ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return ", ".join(items[:_MAX_LISTED]) + more


def validate_me_state_dict(state: dict[str, torch.Tensor], arch: Res16UNetArch, source: str) -> None:
    """Raise `SealCheckpointError` listing missing, unexpected and misshapen keys, if any."""
    expected = me_state_dict_shapes(arch)
    missing = [f"{k} {expected[k]}" for k in expected if k not in state]
    unexpected = [f"{k} {tuple(state[k].shape)}" for k in state if k not in expected]
    misshapen = [f"{k}: expected {expected[k]}, got {tuple(state[k].shape)}"
                 for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if missing or unexpected or misshapen:
        lines = [f"{source}: not a complete {arch} MinkUNet state dict "
                 f"({len(state)} tensors, {len(expected)} expected)"]
        if missing:
            lines.append(f"  missing ({len(missing)}): {_listing(missing)}")
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): {_listing(unexpected)}")
        if misshapen:
            lines.append(f"  misshapen ({len(misshapen)}): {_listing(misshapen)}")
        raise SealCheckpointError("\n".join(lines))


def convert_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """One ME kernel → spconv layout, for ``(b, x, y, z)`` index columns.

    (k³, Cin, Cout) with ME's first-axis-fastest offsets → [Cout, kx, ky, kz, Cin] (row-major);
    a 1³ kernel (Cin, Cout) → an ``nn.Linear`` weight (Cout, Cin).
    """
    if kernel.ndim == 2:
        return kernel.t().contiguous()
    volume, cin, cout = kernel.shape
    k = round(volume ** (1 / 3))
    if k ** 3 != volume:
        raise ValueError(f"kernel volume {volume} is not a cube (shape {tuple(kernel.shape)})")
    # view(k, k, k, ...) indexes (i_z, i_y, i_x) since ME's offset index is i_x + k·(i_y + k·i_z).
    return kernel.reshape(k, k, k, cin, cout).permute(4, 2, 1, 0, 3).contiguous()


def convert_me_state_dict(state: dict[str, torch.Tensor], arch: Res16UNetArch = Res16UNetArch(),
                          source: str = "state dict") -> dict[str, torch.Tensor]:
    """Validate strictly (keys, shapes, finite values), then map every ME tensor to the `Res16UNet`
    (spconv) key and layout."""
    validate_me_state_dict(state, arch, source)
    check_finite(state, source)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(".kernel"):
            out[key[: -len(".kernel")] + ".weight"] = convert_kernel(value.float())
        elif key == "final.bias":
            out[key] = value.float().reshape(-1).contiguous()
        else:
            name, buf = key.rsplit(".bn.", 1)
            out[f"{name}.{buf}"] = value.clone() if buf == "num_batches_tracked" else value.float().clone()
    return out


def _json_safe(value: Any, depth: int = 0) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if depth < 4 and isinstance(value, (list, tuple)):
        return [_json_safe(v, depth + 1) for v in value]
    if depth < 4 and isinstance(value, dict):
        return {str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    return repr(value)


def convert_checkpoint(src: PathLike, dst: PathLike, arch: Res16UNetArch = Res16UNetArch(),
                       trust_pickle: bool = False) -> dict[str, Any]:
    """Convert an ME MinkUNet checkpoint file into a spconv teacher file, atomically.

    Returns the metadata stored with it (source name and sha256, format, conversion version,
    architecture, the source's config if any).
    """
    src, dst = Path(src), Path(dst)
    state, fmt, config = split_source_checkpoint(_torch_load(src, trust_pickle), str(src))
    converted = convert_me_state_dict(state, arch, str(src))
    config = _json_safe(config)
    hints = {k: v for k, v in config.items()
             if any(s in k.lower() for s in ("cylind", "voxel_size", "normalize"))}
    if hints:
        logger.info("%s: training config of the teacher: %s (see docs/method.md §2.3)", src, hints)
    meta = {
        "format": CONVERTED_FORMAT,
        "conversion_version": CONVERSION_VERSION,
        "source_file": src.name,
        "source_sha256": file_sha256(src),
        "source_format": fmt,
        "arch": arch.to_dict(),
        "index_order": "b,x,y,z",
        "num_tensors": len(converted),
        "source_config": config,
    }
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dst, lambda f: torch.save({"state_dict": converted, "meta": meta}, f))
    except OSError as err:
        raise SealCheckpointError(f"{dst}: cannot write the converted teacher ({type(err).__name__}: {err}); "
                                  f"nothing was left behind") from err
    logger.info("converted %s (%s format, %d tensors) → %s", src, fmt, len(converted), dst)
    return meta


def read_teacher_checkpoint(path: PathLike, arch: Optional[Res16UNetArch] = None,
                            trust_pickle: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return ``(spconv state dict, meta)`` from a converted file, or convert an ME file in memory.

    ``arch`` is needed only for ME files of a non-default architecture.
    """
    path = Path(path)
    obj = _torch_load(path, trust_pickle)
    if isinstance(obj, dict) and isinstance(obj.get("meta"), dict) \
            and obj["meta"].get("format") == CONVERTED_FORMAT:
        meta = obj["meta"]
        if meta.get("conversion_version") != CONVERSION_VERSION:
            raise SealCheckpointError(
                f"{path}: converted with conversion version {meta.get('conversion_version')}, this "
                f"version reads {CONVERSION_VERSION}; convert the source checkpoint again"
            )
        state = obj.get("state_dict")
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise SealCheckpointError(f"{path}: a converted teacher file needs 'state_dict', a dict of tensors; got "
                                      f"{type(state).__name__}; convert the source checkpoint again")
        missing = [k for k in ("arch", "source_file", "source_sha256") if k not in meta]
        if missing:
            raise SealCheckpointError(f"{path}: a converted teacher file needs meta keys {missing} (has "
                                      f"{sorted(map(str, meta))}); convert the source checkpoint again")
        try:
            Res16UNetArch.from_dict(dict(meta["arch"]))
        except (TypeError, ValueError) as err:
            raise SealCheckpointError(f"{path}: meta['arch'] is not a Res16UNet architecture ({err})") from err
        check_finite(state, str(path))
        return state, meta
    arch = arch or Res16UNetArch()
    state, fmt, _ = split_source_checkpoint(obj, str(path))
    logger.info("%s: MinkowskiEngine %s checkpoint, converting in memory", path, fmt)
    meta = {"format": CONVERTED_FORMAT, "conversion_version": CONVERSION_VERSION,
            "source_file": path.name, "source_sha256": file_sha256(path), "source_format": fmt,
            "arch": arch.to_dict(), "index_order": "b,x,y,z"}
    return convert_me_state_dict(state, arch, str(path)), meta


def load_teacher(path: PathLike, device: Union[str, torch.device] = "cpu",
                 arch: Optional[Res16UNetArch] = None, trust_pickle: bool = False):
    """Build the frozen `SealTeacher` from a converted (or ME) checkpoint; needs spconv.

    Returns ``(teacher, meta)``; ``meta["source_sha256"]`` identifies the teacher's weights.
    """
    from .minkunet import Res16UNet, SealTeacher

    state, meta = read_teacher_checkpoint(path, arch, trust_pickle)
    stored = Res16UNetArch.from_dict(meta["arch"])
    if arch is not None and arch != stored:
        raise SealCheckpointError(f"{path}: holds a Res16UNet {stored}, but {arch} was requested")
    net = Res16UNet(stored)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise SealCheckpointError(f"{path}: does not match Res16UNet {net.arch}: {err}") from err
    return SealTeacher(net).to(device), meta

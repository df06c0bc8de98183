"""Weight-transfer report (docs/method.md §10): load a pre-training checkpoint into a fine-tuning network
exactly as ``--pretrained_model`` does (``Detector3DTemplate._load_state_dict``, key and shape must
match) and count what loaded per top-level prefix."""
from __future__ import annotations

import dataclasses
import difflib
from collections import Counter
from typing import Any, Sequence

import torch

REQUIRED_PREFIXES = ("vfe", "backbone_3d")


@dataclasses.dataclass
class TransferReport:
    """Per prefix: ``loaded[p]`` / ``total[p]`` tensors of the fine-tuning network; unmatched keys."""

    loaded: Counter
    total: Counter
    missing: dict[str, list[str]]      # prefix -> network keys not loaded
    unused: dict[str, list[str]]       # prefix -> checkpoint keys not used
    shape_mismatch: list[str]          # keys present in both with different shapes
    #: key -> (checkpoint shape, network shape) of every key in ``shape_mismatch``
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = dataclasses.field(default_factory=dict)
    #: checkpoint tensors holding NaN/inf, as "key (n of m values)"
    non_finite: list[str] = dataclasses.field(default_factory=list)

    def complete(self, prefixes: Sequence[str] = REQUIRED_PREFIXES) -> bool:
        """Every tensor of ``prefixes`` loads, and no checkpoint tensor holds NaN/inf."""
        return not self.non_finite and all(self.total[p] > 0 and self.loaded[p] == self.total[p] for p in prefixes)

    def lines(self, prefixes: Sequence[str] = REQUIRED_PREFIXES) -> list[str]:
        out = []
        for p in sorted(set(self.total) | set(prefixes)):
            mark = " (required)" if p in prefixes else ""
            pct = 100.0 * self.loaded[p] / self.total[p] if self.total[p] else 0.0
            out.append(f"{p + '.*':<22} {self.loaded[p]:>5}/{self.total[p]:<5} {pct:6.1f} %{mark}")
        return out

    def problems(self, prefixes: Sequence[str] = REQUIRED_PREFIXES, limit: int = 10) -> list[str]:
        out = [f"{entry}: NaN/inf in the checkpoint (pre-training diverged?)" for entry in self.non_finite[:limit]]
        if len(self.non_finite) > limit:
            out.append(f"... and {len(self.non_finite) - limit} more tensors with NaN/inf")
        for p in prefixes:
            if self.total[p] == 0:
                out.append(f"the fine-tuning network has no '{p}.*' tensors (wrong config?)")
                continue
            for key in self.missing.get(p, [])[:limit]:
                if key in self.shape_mismatch:
                    ckpt, net = self.shapes[key]
                    out.append(f"{key}: shape {list(ckpt)} in the checkpoint, {list(net)} in the network")
                    continue
                near = difflib.get_close_matches(key, self.unused.get(p, []) + sum(self.unused.values(), []), n=1)
                hint = f" (checkpoint has '{near[0]}': renamed?)" if near else " (absent from the checkpoint)"
                out.append(f"{key} not loaded{hint}")
            extra = len(self.missing.get(p, [])) - limit
            if extra > 0:
                out.append(f"... and {extra} more '{p}.*' tensors not loaded")
        return out


def transfer_report(model: Any, model_state_disk: dict[str, torch.Tensor]) -> TransferReport:
    """Load ``model_state_disk`` into ``model`` as ``load_params_from_file`` does; report per prefix."""
    state_dict, update = model._load_state_dict(model_state_disk, strict=False)
    prefix = lambda key: key.split(".", 1)[0]  # noqa: E731
    total = Counter(prefix(k) for k in state_dict)
    loaded = Counter(prefix(k) for k in update)
    missing: dict[str, list[str]] = {}
    for k in state_dict:
        if k not in update:
            missing.setdefault(prefix(k), []).append(k)
    unused: dict[str, list[str]] = {}
    for k in model_state_disk:
        if k not in update:
            unused.setdefault(prefix(k), []).append(k)
    mismatch = [k for k in model_state_disk if k in state_dict and k not in update]
    shapes = {k: (tuple(model_state_disk[k].shape), tuple(state_dict[k].shape)) for k in mismatch}
    non_finite = []
    for k, v in model_state_disk.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            non_finite.append(f"{k} ({int((~torch.isfinite(v)).sum())} of {v.numel()} values)")
    return TransferReport(loaded, total, missing, unused, mismatch, shapes, non_finite)


class CheckpointFormatError(ValueError):
    """A file is not an OpenPCDet checkpoint with a ``model_state`` dict of tensors."""


def read_model_state(path: str) -> dict[str, torch.Tensor]:
    """``checkpoint['model_state']`` of an OpenPCDet checkpoint (loaded as OpenPCDet loads it).

    Raises `CheckpointFormatError` naming the file and what was expected for anything else
    (text, an empty file, a list, a dict without ``model_state``, non-tensor entries).
    """
    expected = "expected an OpenPCDet checkpoint: a torch file holding a dict with 'model_state' (a state dict)"
    try:
        checkpoint = torch.load(path, map_location=torch.device("cpu"))
    except FileNotFoundError:
        raise CheckpointFormatError(f"{path}: no such file") from None
    except Exception as err:  # noqa: BLE001 - torch.load raises anything on foreign bytes (KeyError for text)
        raise CheckpointFormatError(f"{path}: unreadable ({type(err).__name__}: {err}); {expected}") from err
    if not isinstance(checkpoint, dict) or "model_state" not in checkpoint:
        has = f"a dict with keys {sorted(map(str, checkpoint))[:8]}" if isinstance(checkpoint, dict) \
            else f"a {type(checkpoint).__name__}"
        raise CheckpointFormatError(f"{path}: holds {has}; {expected}")
    state = checkpoint["model_state"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointFormatError(f"{path}: 'model_state' is a {type(state).__name__} that is not a dict of "
                                    f"tensors; {expected}")
    return state

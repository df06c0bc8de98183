"""Stop (or skip) at the first non-finite training loss, on every rank at once.

Every training step all-reduces one flag (MAX) when ``torch.distributed`` runs more than one
process, so a NaN on one rank stops all of them in the same step: none is left waiting in the
next collective. The error names the iteration, each bad rank's frame ids and its loss terms.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

import torch

logger = logging.getLogger(__name__)

#: ``MODEL.ON_NONFINITE_LOSS``: stop with :class:`NonFiniteLossError` (default), or skip the batch.
POLICIES = ("error", "skip")
CONFIG_KEY = "MODEL.ON_NONFINITE_LOSS"


class NonFiniteLossError(FloatingPointError):
    """A training loss was NaN or infinite (on this rank or another one)."""


def _world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def any_rank(flag: bool, device: torch.device) -> bool:
    """``flag`` OR-ed over all ranks (one all-reduce when more than one process runs)."""
    _, world = _world()
    if world == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item() > 0)


def _reports(own: dict) -> list[dict]:
    """Every rank's report (all ranks call this together, after :func:`any_rank` said so)."""
    _, world = _world()
    if world == 1:
        return [own]
    out: list = [None] * world
    torch.distributed.all_gather_object(out, own)
    return out


def frame_ids(batch_dict: dict) -> list[str]:
    """The batch's frame ids as strings (``[]`` when the batch carries none)."""
    ids = batch_dict.get("frame_id", None)
    if ids is None:
        return []
    return [str(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]


def describe(iteration: int, reports: Sequence[dict]) -> str:
    """One message naming the iteration and, per bad rank, its frames and loss terms."""
    bad = [r for r in reports if not r["finite"]]
    parts = [f"rank {r['rank']}: frames {r['frames']}, loss terms "
             + ", ".join(f"{k}={v:.6g}" for k, v in r["terms"].items()) for r in bad]
    return f"non-finite training loss at iteration {iteration} (" + "; ".join(parts) + ")"


def check_loss(loss: torch.Tensor, terms: dict, batch_dict: dict, iteration: int, policy: str) -> bool:
    """Whether to skip this batch: False when the loss is finite on every rank; True when it is not
    and ``policy`` is ``skip`` (logged); raises :class:`NonFiniteLossError` when ``policy`` is ``error``."""
    finite = bool(torch.isfinite(loss.detach()).all())
    if not any_rank(not finite, loss.device):
        return False
    rank, _ = _world()
    own = {"rank": rank, "finite": finite, "frames": frame_ids(batch_dict),
           "terms": {k: float(v) for k, v in terms.items() if isinstance(v, (int, float)) and k.startswith("loss")}}
    message = describe(iteration, _reports(own))
    if policy == "skip":
        logger.warning("%s: batch skipped on every rank (%s skip)", message, CONFIG_KEY)
        return True
    raise NonFiniteLossError(f"{message}; stopped on every rank (rank {rank} raising). Set {CONFIG_KEY} skip to "
                             "skip such batches instead")


def zero_loss(parameters: Iterable[torch.nn.Parameter], like: torch.Tensor) -> torch.Tensor:
    """A zero loss that depends on every trainable parameter (so each gets a zero gradient)."""
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return like.new_zeros(())
    return torch.stack([p.sum() for p in params]).sum() * 0.0


def check_policy(value: Any) -> str:
    """``MODEL.ON_NONFINITE_LOSS`` validated (``error`` when unset)."""
    policy = "error" if value is None else str(value)
    if policy not in POLICIES:
        raise ValueError(f"{CONFIG_KEY} must be one of {POLICIES}, got {value!r}")
    return policy

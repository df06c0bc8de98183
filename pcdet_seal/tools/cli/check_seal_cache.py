"""Check a Seal feature cache: load every frame file (or the frames named) and list the bad ones.

    python scripts/check_seal_cache.py <cache_dir>            # every <frame_id>.npz in the folder
    python scripts/check_seal_cache.py <cache_dir> --frames seq_000 seq_001

A frame is bad when it cannot be read (truncated, corrupt), fails validation (shape, dtype,
NaN/inf) or was written by another teacher than ``meta.json`` names. Repair with
``scripts/seal_features.py ... --verify``, which writes the bad frames again. Exit status: 0 all
good, 1 bad frames (listed on stdout), 2 no readable cache (missing or foreign ``meta.json``).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from pcdet_seal.seal.cache import FeatureCache, SealCacheError


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache_dir", type=Path, help="the folder holding meta.json")
    parser.add_argument("--frames", nargs="+", default=None, metavar="FRAME_ID",
                        help="check only these frames (default: every frame file in the folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cache = FeatureCache(args.cache_dir)
    except SealCacheError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    frame_ids = cache.frame_ids() if args.frames is None else args.frames
    bad = cache.check(frame_ids)
    for frame_id, reason in bad.items():
        print(f"BAD {frame_id}: {reason}")
    print(f"{args.cache_dir}: {len(frame_ids) - len(bad)} of {len(frame_ids)} frames good, {len(bad)} bad")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

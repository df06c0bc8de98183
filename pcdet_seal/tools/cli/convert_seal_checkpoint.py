"""Convert a MinkowskiEngine MinkUNet (Res16UNet34C) checkpoint — SLidR ``model_points``,
Lightning ``state_dict`` or a bare state dict — into the plugin's spconv teacher file.

    python scripts/convert_seal_checkpoint.py seal_minkunet.pt seal_teacher_spconv.pth
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from pcdet_seal.seal.checkpoint import SealCheckpointError, convert_checkpoint


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="MinkowskiEngine checkpoint (.pt/.pth/.ckpt)")
    parser.add_argument("dst", help="output file for the spconv teacher")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="load with torch.load(weights_only=False): only for files you trust")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        meta = convert_checkpoint(args.src, args.dst, trust_pickle=args.trust_pickle)
    except SealCheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{args.dst}: {meta['num_tensors']} tensors from {meta['source_format']} checkpoint "
          f"{meta['source_file']} (sha256 {meta['source_sha256']}), conversion version "
          f"{meta['conversion_version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""``pcdet-seal-convert-checkpoint`` from a source checkout: see :mod:`pcdet_seal.tools.cli.convert_seal_checkpoint`."""
import sys

from pcdet_seal.tools.cli.convert_seal_checkpoint import main

if __name__ == "__main__":
    sys.exit(main())

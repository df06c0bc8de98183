#!/usr/bin/env python
"""``pcdet-seal-demo`` from a source checkout: see :mod:`pcdet_seal.tools.cli.demo`."""
import sys

from pcdet_seal.tools.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""``pcdet-seal-features`` from a source checkout: see :mod:`pcdet_seal.tools.cli.seal_features`."""
import sys

from pcdet_seal.tools.cli.seal_features import main

if __name__ == "__main__":
    sys.exit(main())

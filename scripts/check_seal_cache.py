#!/usr/bin/env python
"""``pcdet-seal-check-cache`` from a source checkout: see :mod:`pcdet_seal.tools.cli.check_seal_cache`."""
import sys

from pcdet_seal.tools.cli.check_seal_cache import main

if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""``pcdet-seal-check-transfer`` from a source checkout: see :mod:`pcdet_seal.tools.cli.check_transfer`."""
import sys

from pcdet_seal.tools.cli.check_transfer import console_main

if __name__ == "__main__":
    sys.exit(console_main())

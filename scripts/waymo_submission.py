#!/usr/bin/env python
"""``pcdet-seal-waymo-submission`` from a source checkout: see :mod:`pcdet_seal.tools.cli.waymo_submission`."""
import sys

from pcdet_seal.tools.cli.waymo_submission import main

if __name__ == "__main__":
    sys.exit(main())

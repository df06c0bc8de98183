#!/usr/bin/env python
"""``pcdet-seal-render`` from a source checkout: see :mod:`pcdet_seal.tools.cli.render`."""
import sys

from pcdet_seal.tools.cli.render import main

if __name__ == "__main__":
    sys.exit(main())

"""The command-line tools, one module each with its ``main(argv=None) -> int``: what the console
commands of ``setup.py`` (``pcdet-seal-demo``, ``pcdet-seal-features``, ...) and the equivalent
``scripts/*.py`` run. Importing this package imports neither pcdet nor spconv; each tool imports
them when it runs."""

"""Library side of the command-line tools: in-process training and evaluation, the linear probe
and the pre-training study. Scripts under ``scripts/`` and ``bench/`` are thin wrappers of these."""

"""Library side of the command-line tools: in-process training and evaluation, the linear probe,
the pre-training study, config loading and network building without the dataset on disk
(``config_network``) and the weight-transfer report (``transfer``). Scripts under ``scripts/`` and
``bench/`` are thin wrappers of these."""

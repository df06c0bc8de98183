"""Start-up shared by the command-line entry points that train in process: pick the device, turn
on CPU mode before OpenPCDet is imported when running on the CPU, register the plugin."""
from __future__ import annotations

import torch


class NoCudaDevice(SystemExit):
    """``--gpu`` was asked for but torch sees no CUDA device."""


def prepare_device(gpu: bool) -> torch.device:
    """``cuda`` with ``gpu`` (an error without a device); else ``cpu`` with the plugin's CPU mode on.

    Must run before the first ``import pcdet`` of the process (CPU mode patches it at import).
    """
    if gpu and not torch.cuda.is_available():
        raise NoCudaDevice("error: --gpu given but torch sees no CUDA device")
    if not gpu:
        from pcdet_seal.compat import enable_cpu_mode

        enable_cpu_mode()
    from pcdet_seal import registry

    registry.register()
    return torch.device("cuda" if gpu else "cpu")

"""Torch devices named on the command line: checked before any work, in one clear line.

``resolve_device("cuda")`` on a machine without CUDA, or ``resolve_device("bogus")``, raises a
:class:`DeviceError` that names the device and what this machine has, so that ``train``,
``evaluate`` and ``stream`` refuse a bad ``--device`` at once rather than with a traceback after
minutes of data loading.
"""

from __future__ import annotations

import torch

from hybridpose.errors import HybridPoseError


class DeviceError(HybridPoseError, ValueError):
    """A device this machine does not have, or not a device name at all."""


def available_devices() -> list[str]:
    """The torch devices of this machine: ``cpu``, then ``cuda:0``... and ``mps`` if present."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def resolve_device(name: str | torch.device) -> torch.device:
    """The device called ``name``, checked against this machine.

    Raises:
        DeviceError: ``name`` is not a torch device, or this machine lacks it (the message
            lists the devices it has).
    """
    have = ", ".join(available_devices())
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise DeviceError(
            f"--device {name}: not a torch device (this machine has: {have})"
        ) from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = 0 if device.index is None else device.index
        if index < count:
            return device
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return device
    raise DeviceError(f"--device {name}: this machine has no such device (it has: {have})")


__all__ = ["DeviceError", "available_devices", "resolve_device"]

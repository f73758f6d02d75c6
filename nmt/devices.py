"""Checks that a torch device string names a device this machine has."""

from __future__ import annotations

import torch

__all__ = ["TORCH_DEVICE_TYPES", "check_torch_device", "parse_torch_device",
           "torch_device_problem"]

# torch device types that the native engine accepts, with the name of their backend.
TORCH_DEVICE_TYPES = {"cpu": "CPU", "cuda": "CUDA", "xpu": "XPU", "mps": "MPS"}


def torch_device_problem(device: str) -> str | None:
    """Return why torch cannot run on `device` here, or None when it can.

    `device` must be a valid torch device string of a type in TORCH_DEVICE_TYPES.
    """
    parsed = torch.device(device)
    if parsed.type == "cpu":
        return None
    name = TORCH_DEVICE_TYPES[parsed.type]
    # torch.backends.mps has is_available; torch.cuda and torch.xpu also have device_count.
    backend = torch.backends.mps if parsed.type == "mps" else getattr(torch, parsed.type)
    if not backend.is_available():
        return f"{name} is not available to torch {torch.__version__} on this machine"

    count_devices = getattr(backend, "device_count", None)
    if parsed.index is not None and count_devices is not None:
        count = count_devices()
        if parsed.index >= count:
            return f"torch finds {count} {name} device(s), so index {parsed.index} does not exist"
    return None


def parse_torch_device(device: str | torch.device, *, label: str = "",
                       user: str = "translation") -> torch.device:
    """Parse `device`, raising ValueError unless it is a torch device of a TORCH_DEVICE_TYPES type.

    `label` names where the value came from (such as an option) and `user` what runs on the
    device, both for the error messages.
    """
    named = f"device {device!r}" + (f" ({label})" if label else "")
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"{named} is not a valid torch device; use cpu, cuda or cuda:N") from error
    if parsed.type not in TORCH_DEVICE_TYPES:
        raise ValueError(f"{named} has type {parsed.type!r}, which {user} cannot run on; use one "
                         f"of: {', '.join(TORCH_DEVICE_TYPES)}")
    return parsed


def check_torch_device(device: str | torch.device) -> None:
    """Raise ValueError unless torch can run on `device` on this machine."""
    problem = torch_device_problem(str(parse_torch_device(device)))
    if problem:
        raise ValueError(f"device {device!r} cannot be used: {problem}; choose another device, "
                         "e.g. cpu")

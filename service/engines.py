"""Inference engines of the service and the devices and compute types each accepts.

The native engine runs the PyTorch model of `nmt.translator.Translator`, optionally with
int8 dynamic quantization of its linear layers (`nmt.quantize`). The ctranslate2 engine runs
a model folder written by `nmt export-ct2` with `nmt.ct2.CT2Translator`.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

NATIVE = "native"
CTRANSLATE2 = "ctranslate2"
ENGINES = (NATIVE, CTRANSLATE2)

NATIVE_COMPUTE_TYPES = ("float32", "int8")
# CTranslate2's compute types (ctranslate2.Translator's compute_type argument, version 4.x).
# "default" keeps the type stored in the export and "auto" picks the fastest type the device
# supports. `check_compute_type` checks the others against the types CTranslate2 reports for
# the device.
CT2_COMPUTE_TYPES = (
    "default",
    "auto",
    "float32",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
)
CT2_DEVICES = ("cpu", "cuda")
_DEVICE_SETTING = "--device or NMT_DEVICE"
_DEFAULT_COMPUTE_TYPES = {NATIVE: "float32", CTRANSLATE2: "default"}


def default_compute_type(engine: str) -> str:
    """Return the compute type that `engine` uses when none is set."""
    return _DEFAULT_COMPUTE_TYPES[engine]


def check_device(device: str) -> None:
    """Raise ValueError unless `device` is a torch device of a type the service accepts.

    The types are `nmt.devices.TORCH_DEVICE_TYPES`. This checks the spelling only.
    `device_unavailable_reason` checks that the machine has the device.
    """
    from nmt.devices import parse_torch_device  # imports torch

    parse_torch_device(device, label=_DEVICE_SETTING, user="the service")


def device_unavailable_reason(engine: str, device: str) -> str | None:
    """Return why `engine` cannot run on `device` on this machine, or None when it can.

    `device` must have passed `check_device`, and `check_engine` for `engine`.
    """
    from nmt.devices import torch_device_problem  # imports torch

    reason = _ct2_device_problem(device) if engine == CTRANSLATE2 else torch_device_problem(device)
    if reason is None:
        return None
    return (
        f"device {device!r} ({_DEVICE_SETTING}) cannot be used: {reason}; "
        f"choose another device, e.g. cpu"
    )


def _ct2_device_problem(device: str) -> str | None:
    if device != "cuda":
        return None
    import ctranslate2

    if ctranslate2.get_cuda_device_count() == 0:
        return "CTranslate2 finds no CUDA device on this machine"
    return None


def check_engine(engine: str, device: str) -> None:
    """Raise ValueError if `engine` cannot run on `device` in this installation."""
    if engine != CTRANSLATE2:
        return
    try:
        import ctranslate2  # noqa: F401
    except ImportError as error:
        raise ValueError(
            "engine 'ctranslate2' needs the ctranslate2 package, which is not installed: "
            "pip install 'hindi-nmt[ct2]', or set engine to 'native'"
        ) from error
    if device not in CT2_DEVICES:
        raise ValueError(
            f"device {device!r} is not valid for engine 'ctranslate2'; "
            f"use one of: {', '.join(CT2_DEVICES)}"
        )


def check_compute_type(engine: str, compute_type: str, device: str) -> None:
    """Raise ValueError unless `engine` can use `compute_type` on `device`.

    The message names the setting and lists the values that `engine` accepts.
    """
    if engine == NATIVE:
        _check_native_compute_type(compute_type, device)
    else:
        _check_ct2_compute_type(compute_type, device)


def _check_native_compute_type(compute_type: str, device: str) -> None:
    if compute_type not in NATIVE_COMPUTE_TYPES:
        raise ValueError(
            f"compute_type {compute_type!r} is not valid for engine 'native'; "
            f"use one of: {', '.join(NATIVE_COMPUTE_TYPES)}"
        )
    # torch's dynamic quantization (torch.ao.quantization.quantize_dynamic) has CPU kernels only.
    if compute_type == "int8" and device.split(":")[0] != "cpu":
        raise ValueError(
            f"compute_type 'int8' with engine 'native' runs on the CPU only, not on device "
            f"{device!r}; set device to 'cpu', use compute_type 'float32', or use engine "
            f"'ctranslate2'"
        )


def _check_ct2_compute_type(compute_type: str, device: str) -> None:
    if compute_type not in CT2_COMPUTE_TYPES:
        raise ValueError(
            f"compute_type {compute_type!r} is not valid for engine 'ctranslate2'; "
            f"use one of: {', '.join(CT2_COMPUTE_TYPES)}"
        )
    if compute_type in ("default", "auto"):
        return

    import ctranslate2

    try:
        supported = ctranslate2.get_supported_compute_types(device)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"CTranslate2 cannot use device {device!r}: {error}") from error
    if compute_type not in supported:
        usable = [
            name for name in CT2_COMPUTE_TYPES if name in supported or name in ("default", "auto")
        ]
        raise ValueError(
            f"compute_type {compute_type!r} is not supported by CTranslate2 on device "
            f"{device!r}; use one of: {', '.join(usable)}"
        )

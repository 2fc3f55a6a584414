"""Which device a job runs on, and whether it autocasts to bfloat16 there.

Training (productgen.train) and the text model (productgen.text) take the same `amp` setting:
true, false, or "auto" (bf16 only where the device computes it natively).
"""

from __future__ import annotations

import torch

__all__ = ["AMP_WORDS", "bf16_native", "check_amp", "pick_device", "uses_bf16"]

AMP_WORDS: dict[str, bool | str] = {"off": False, "auto": "auto", "on": True}  # a CLI's or a form's words


def pick_device(requested: str | None = None) -> torch.device:
    """The requested device, else CUDA when present, else Apple's MPS, else the CPU."""
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def bf16_native(device: torch.device) -> bool:
    """Whether DEVICE computes bfloat16 in hardware, so that autocast to it saves time: a CUDA GPU
    that supports it, or a CPU with AVX512-BF16 or AMX (elsewhere a CPU emulates bf16, slowly)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def check_amp(amp: object) -> bool | str:
    """AMP as a job takes it: true, false or "auto" (ValueError otherwise)."""
    if amp not in (True, False, "auto") or (isinstance(amp, int | float) and not isinstance(amp, bool)):
        raise ValueError(f'amp must be true, false or "auto", got {amp!r}')
    return amp


def uses_bf16(amp: bool | str, device: torch.device) -> bool:
    """Whether a job autocasts to bf16 on DEVICE: AMP, with "auto" read by bf16_native."""
    return bf16_native(device) if check_amp(amp) == "auto" else bool(amp)

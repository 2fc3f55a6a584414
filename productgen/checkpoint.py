"""Checkpoints as safetensors: tensors plus a JSON header. Nothing is ever unpickled.

A checkpoint is one `.safetensors` file whose metadata holds the JSON that rebuilds the run
(configs, step, optimiser hyper-parameters). Writes are atomic (temp file + rename), so a crash
mid-write leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from productgen.atomic import atomic_path

__all__ = [
    "CheckpointError",
    "flatten_optimizer",
    "load_checkpoint",
    "read_metadata",
    "save_checkpoint",
    "unflatten_optimizer",
]

_META_KEY = "productgen"
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+ / torch.save's zip container


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and what to do."""


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, object]) -> None:
    """Write tensors and JSON metadata to `path` atomically."""
    contiguous = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata={_META_KEY: json.dumps(metadata)})


def _check_format(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    with path.open("rb") as f:
        head = f.read(8)
    if head.startswith(_PICKLE_MAGIC):
        raise CheckpointError(
            f"{path}: this is a pickle file (torch.save); productgen loads only safetensors "
            "checkpoints and never unpickles files, which can run code"
        )


def read_metadata(path: Path) -> dict[str, object]:
    """The JSON metadata of a checkpoint, without reading its tensors."""
    _check_format(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    if raw is None:
        raise CheckpointError(f"{path}: a safetensors file, but not a productgen checkpoint (no metadata)")
    return json.loads(raw)


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """(tensors, metadata); CheckpointError naming the file when it is truncated, corrupt or a pickle."""
    metadata = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: the checkpoint is truncated or corrupt ({e})") from None
    return tensors, metadata


def flatten_optimizer(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    """Optimiser state -> flat tensors '{prefix}.{param}.{name}' and its param_groups (JSON-able)."""
    state = optimizer.state_dict()
    tensors = {
        f"{prefix}.{index}.{name}": value if torch.is_tensor(value) else torch.tensor(value)
        for index, slots in state["state"].items()
        for name, value in slots.items()
    }
    return tensors, state["param_groups"]


def unflatten_optimizer(
    prefix: str, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], param_groups: list
) -> None:
    """Load what `flatten_optimizer` wrote back into `optimizer`."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            index, name = key[len(prefix) + 1 :].split(".", 1)
            param = params[int(index)]
            if value.shape == param.shape:
                # same device, strides (channels-last) and layout as the parameter: fused Adam needs it
                value = torch.empty_like(param, dtype=value.dtype).copy_(value)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})

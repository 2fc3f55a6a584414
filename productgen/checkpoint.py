"""Checkpoints as safetensors: tensors plus a JSON header. Nothing is ever unpickled.

A checkpoint is one `.safetensors` file whose metadata holds the JSON that rebuilds the run
(configs, step, optimiser hyper-parameters). Writes are atomic (temp file + rename), so a crash
mid-write leaves the previous checkpoint as it was.

A file handed to us is untrusted: its format is decided by parsing the safetensors header (an
8-byte little-endian length, then that many bytes of JSON), bounded in size, before any tensor
is read. The header also gives every tensor's shape, so a loader can check them against the
network its metadata describes before allocating it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from productgen.atomic import atomic_path

__all__ = [
    "CheckpointError",
    "flatten_optimizer",
    "load_checkpoint",
    "read_header",
    "read_metadata",
    "save_checkpoint",
    "unflatten_optimizer",
]

_META_KEY = "productgen"
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+ / torch.save's zip container
_MAX_HEADER = 16 << 20  # bytes of header JSON; ours are a few KB (safetensors itself allows 100 MB)


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and what to do."""


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, object]) -> None:
    """Write tensors and JSON metadata to `path` atomically."""
    contiguous = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    try:
        with atomic_path(path) as tmp:
            save_file(contiguous, str(tmp), metadata={_META_KEY: json.dumps(metadata)})
    except (SafetensorError, OSError) as e:  # the temporary file is gone; the old one is intact
        raise CheckpointError(
            f"{path}: could not be written ({' '.join(str(e).split())}); is the disk full?"
        ) from None


def read_header(path: Path) -> tuple[dict[str, object], dict[str, tuple[int, ...]]]:
    """(metadata, tensor name -> shape) from the safetensors header, without reading a tensor.

    CheckpointError naming the file when it is missing, a pickle, not safetensors, or not ours.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else 0
        body = f.read(length) if 2 <= length <= min(size - 8, _MAX_HEADER) else b""
    header = _parse_header(body)
    if header is None:
        if head.startswith(_PICKLE_MAGIC):
            raise CheckpointError(
                f"{path}: this is a pickle file (torch.save); productgen loads only safetensors "
                "checkpoints and never unpickles files, which can run code"
            )
        raise CheckpointError(f"{path}: not a safetensors checkpoint (its header does not parse)")
    raw = (header.pop("__metadata__", None) or {}).get(_META_KEY)
    if not isinstance(raw, str):
        raise CheckpointError(f"{path}: a safetensors file, but not a productgen checkpoint (no metadata)")
    metadata = _parse_json(raw)
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: its metadata is not a JSON object; not a productgen checkpoint")
    shapes = {}
    for name, entry in header.items():
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise CheckpointError(f"{path}: tensor {name!r} has no valid shape in the header")
        shapes[name] = tuple(shape)
    return metadata, shapes


def _parse_json(text: bytes | str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        return None


def _parse_header(body: bytes) -> dict | None:
    """The header's JSON object, or None when these bytes are not one."""
    if not body.startswith(b"{"):
        return None
    header = _parse_json(body)
    return header if isinstance(header, dict) else None


def read_metadata(path: Path) -> dict[str, object]:
    """The JSON metadata of a checkpoint, without reading its tensors."""
    return read_header(path)[0]


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

"""Checkpoints are safetensors decided by their parsed header: never a pickle, never a false alarm."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from productgen.checkpoint import CheckpointError, load_checkpoint, read_header, save_checkpoint


def test_a_header_length_whose_low_byte_is_0x80_is_not_taken_for_a_pickle(tmp_path: Path) -> None:
    """A pickle starts with 0x80; so does 1 safetensors file in 32 (8-byte aligned header lengths)."""
    tensors = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    for pad in range(512):
        path = tmp_path / f"model-{pad}.safetensors"
        save_checkpoint(path, tensors, {"note": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length with low byte 0x80")
    metadata, shapes = read_header(path)
    assert metadata == {"note": "x" * pad} and shapes == {"w": (2, 3)}
    loaded, _ = load_checkpoint(path)
    assert torch.equal(loaded["w"], tensors["w"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a safetensors checkpoint"),
        (b"\x00" * 64, "not a safetensors checkpoint"),
        ((10**12).to_bytes(8, "little") + b"{}", "not a safetensors checkpoint"),  # length past the end
        (b"\x80\x04\x95" + b"\x00" * 40, "pickle file"),
        (b"PK\x03\x04" + b"\x00" * 40, "pickle file"),
    ],
)
def test_files_that_are_not_safetensors_are_named_errors(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_header(path)


def test_hostile_metadata_is_a_clear_error(tmp_path: Path) -> None:
    """Metadata that is not ours, not an object, or nested past the parser's depth: one error each."""
    path = tmp_path / "model.safetensors"
    tensors = {"w": torch.zeros(2)}
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match="no metadata"):
        read_header(path)
    save_file(tensors, str(path), metadata={"productgen": json.dumps([1, 2])})
    with pytest.raises(CheckpointError, match="not a JSON object"):
        read_header(path)
    save_file(tensors, str(path), metadata={"productgen": "[" * 200_000 + "]" * 200_000})
    with pytest.raises(CheckpointError, match="not a JSON object"):
        read_header(path)


def test_a_full_disk_is_one_named_error_and_leaves_no_partial_file(tmp_path: Path) -> None:
    """Writes past the file-size limit (as on a full disk) fail with the file named, nothing left."""
    code = f"""
import resource, signal, sys, torch
from pathlib import Path
from productgen.checkpoint import CheckpointError, save_checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))
try:
    save_checkpoint(Path({str(tmp_path / "model.safetensors")!r}), {{"w": torch.zeros(100_000)}}, {{}})
except CheckpointError as e:
    print(e)
    sys.exit(3)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "model.safetensors: could not be written" in result.stdout and "disk full" in result.stdout
    assert list(tmp_path.iterdir()) == []

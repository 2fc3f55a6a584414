"""The run folder: what training writes, and how renderers load the trained generator.

RUN/run.json                    config, step, text model, data fingerprint, metrics, files
RUN/model.safetensors           EMA generator + vocabulary (what renders use)
RUN/checkpoints/step-NNNNNNN.safetensors   everything needed to resume
RUN/samples/step-NNNNNNN.png    labelled sample sheets
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from productgen.catalog.tables import atomic_path
from productgen.checkpoint import CheckpointError, load_checkpoint
from productgen.conditioning import ConditionConfig, Vocabulary
from productgen.models.networks import Generator, ModelConfig

__all__ = ["TrainedGenerator", "load_generator", "read_run", "write_run_json"]


@dataclass
class TrainedGenerator:
    """An EMA generator ready to render, with what it was conditioned on."""

    generator: Generator
    conditioning: ConditionConfig
    vocabulary: Vocabulary
    text_model: str
    version: str  # content hash of the weights: the model version in keys and manifests
    metadata: dict[str, object]


def read_run(run_dir: Path) -> dict[str, object]:
    """RUN/run.json; a clear error when the folder is not a training run."""
    path = run_dir / "run.json"
    if not path.is_file():
        raise CheckpointError(
            f"{run_dir}: not a training run (no run.json); train one with `productgen train`"
        )
    return json.loads(path.read_text())


def write_run_json(run_dir: Path, content: dict[str, object]) -> None:
    with atomic_path(run_dir / "run.json") as tmp:
        tmp.write_text(json.dumps(content, indent=2, default=str) + "\n")


def load_generator(run_dir: Path, device: str | torch.device = "cpu") -> TrainedGenerator:
    """Load RUN/model.safetensors into an eval-mode generator."""
    read_run(run_dir)
    path = run_dir / "model.safetensors"
    tensors, meta = load_checkpoint(path)
    model_config = ModelConfig(**meta["model_config"])
    generator = Generator(model_config)
    weights = {k.removeprefix("G_ema."): v for k, v in tensors.items() if k.startswith("G_ema.")}
    generator.load_state_dict(weights)
    generator.to(device).eval()
    vocab = meta["vocabulary"]
    vocabulary = Vocabulary(
        vocab["categories"], vocab["colors"], tensors["vocab.category_embeddings"].numpy().astype(np.float32)
    )
    digest = hashlib.sha256()
    for key in sorted(weights):
        digest.update(key.encode())
        digest.update(weights[key].contiguous().numpy().tobytes())
    return TrainedGenerator(
        generator=generator,
        conditioning=ConditionConfig(parts=tuple(meta["conditioning"]), text_dim=meta["embedding_dim"]),
        vocabulary=vocabulary,
        text_model=meta["text_model"],
        version=digest.hexdigest()[:12],
        metadata=meta,
    )

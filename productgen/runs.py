"""The run folder: what training and evaluation write, and how renderers load the trained generator.

    RUN/run.json                               config, step, text model, data fingerprint, metrics
    RUN/model.safetensors                      EMA generator + vocabulary (what renders use)
    RUN/checkpoints/step-NNNNNNN.safetensors   everything needed to resume (the newest few kept)
    RUN/samples/step-NNNNNNN.png, latest.png   labelled sample sheets
    RUN/eval.json, eval.md, contact-sheet.png  the evaluation (productgen.report writes them here)

`RunFolder` knows these paths and reads and writes the files; train.py keeps the loop, report.py
the content of the evaluation. Nobody else spells a file name of this folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from productgen.atomic import write_text_atomic
from productgen.checkpoint import CheckpointError, load_checkpoint, read_header, save_checkpoint
from productgen.conditioning import ConditionConfig, Conditioner, Vocabulary
from productgen.models import FAMILY_NETWORKS, ModelConfig, build_generator

__all__ = ["PUBLISHED_FILES", "RunFolder", "TrainedGenerator", "load_generator", "read_run"]


@dataclass(frozen=True)
class RunFolder:
    """A training run's folder: its paths, and the files training and evaluation keep there."""

    root: Path

    # file names, for stores that keep a run's files under other roots (the registry)
    RUN_JSON: ClassVar[str] = "run.json"
    MODEL: ClassVar[str] = "model.safetensors"
    EVAL_JSON: ClassVar[str] = "eval.json"
    EVAL_MD: ClassVar[str] = "eval.md"
    CONTACT_SHEET: ClassVar[str] = "contact-sheet.png"

    @property
    def run_json(self) -> Path:
        return self.root / self.RUN_JSON

    @property
    def model(self) -> Path:
        return self.root / self.MODEL

    @property
    def eval_json(self) -> Path:
        return self.root / self.EVAL_JSON

    @property
    def eval_md(self) -> Path:
        return self.root / self.EVAL_MD

    @property
    def contact_sheet(self) -> Path:
        return self.root / self.CONTACT_SHEET

    @property
    def latest_sample(self) -> Path:
        return self.root / "samples" / "latest.png"

    def sample_sheet(self, step: int) -> Path:
        return self.root / "samples" / f"step-{step:07d}.png"

    def checkpoint(self, step: int) -> Path:
        return self.root / "checkpoints" / f"step-{step:07d}.safetensors"

    def checkpoints(self) -> list[Path]:
        """Resume checkpoints, oldest first."""
        return sorted((self.root / "checkpoints").glob("step-*.safetensors"))

    def file(self, name: str) -> Path:
        """One of PUBLISHED_FILES."""
        if name not in PUBLISHED_FILES:
            raise ValueError(f"{name!r} is not a file of a run folder")
        return self.root / name

    # -- run.json ------------------------------------------------------------------------------
    def read_run(self) -> dict[str, object]:
        """run.json; a clear error when the folder is not a training run."""
        if not self.run_json.is_file():
            raise CheckpointError(
                f"{self.root}: not a training run (no {self.RUN_JSON}); train one with `productgen train`"
            )
        return json.loads(self.run_json.read_text())

    def write_run(self, content: dict[str, object]) -> None:
        write_text_atomic(self.run_json, json.dumps(content, indent=2, default=str) + "\n")

    # -- weights -------------------------------------------------------------------------------
    def write_model(self, tensors: dict[str, torch.Tensor], metadata: dict[str, object]) -> None:
        """The renderable model: 'G_ema.*' weights and 'vocab.*' tensors, with their metadata."""
        save_checkpoint(self.model, tensors, metadata)

    def write_checkpoint(
        self, step: int, tensors: dict[str, torch.Tensor], metadata: dict[str, object], keep: int
    ) -> None:
        """Everything needed to resume at `step`; only the newest `keep` checkpoints stay."""
        save_checkpoint(self.checkpoint(step), tensors, metadata)
        for old in self.checkpoints()[:-keep]:
            old.unlink()

    def has_checkpoints(self) -> bool:
        return bool(self.checkpoints())

    def remove_partial_writes(self) -> int:
        """Delete temporary files a killed write left (atomic_path's `.NAME.*.tmp`); how many."""
        partial = [p for folder in (self.root, self.root / "checkpoints", self.root / "samples")
                   for p in folder.glob(".*.tmp")]  # fmt: skip
        for path in partial:
            path.unlink(missing_ok=True)
        return len(partial)

    def read_latest_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, object], Path]:
        """(tensors, metadata, path) of the newest checkpoint; the error names an intact older one."""
        checkpoints = self.checkpoints()
        if not checkpoints:
            raise CheckpointError(f"{self.root}: nothing to resume (no checkpoints/step-*.safetensors)")
        latest = checkpoints[-1]
        try:
            tensors, meta = load_checkpoint(latest)
        except CheckpointError as e:
            hint = (
                f"; the previous checkpoint {checkpoints[-2].name} is intact: "
                f"delete {latest.name} to resume from it"
                if len(checkpoints) > 1
                else ""
            )
            raise CheckpointError(f"{e}{hint}") from None
        return tensors, meta, latest

    def save_sample_sheet(self, path: Path) -> None:
        """Make the sheet at `path` the run's latest one."""
        self.latest_sample.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, self.latest_sample)

    # -- evaluation ----------------------------------------------------------------------------
    def read_evaluation(self) -> dict[str, object]:
        """eval.json; a clear error when the run was never evaluated."""
        if not self.eval_json.is_file():
            raise ValueError(
                f"{self.root}: no {self.EVAL_JSON}; run `productgen evaluate {self.root} SNAPSHOT` first"
            )
        return json.loads(self.eval_json.read_text())


# what the registry copies into the store for a promoted model: the model, then its report
PUBLISHED_FILES = (
    RunFolder.MODEL, RunFolder.RUN_JSON, RunFolder.EVAL_JSON, RunFolder.EVAL_MD, RunFolder.CONTACT_SHEET,
)  # fmt: skip


@dataclass
class TrainedGenerator:
    """An EMA generator ready to render, with what it was conditioned on."""

    generator: nn.Module  # the family's generator (productgen.models), eval mode
    conditioning: ConditionConfig
    vocabulary: Vocabulary
    text_model: str
    version: str  # content hash of the weights: the model version in keys and manifests
    metadata: dict[str, object]
    encoder: nn.Module | None = None  # photo -> latent (the cVAE's and VAE-GAN's), for variants

    @property
    def conditioner(self) -> Conditioner:
        """The reader of rows and prompts this generator was trained with."""
        return Conditioner(self.conditioning, self.vocabulary)


def read_run(run_dir: Path) -> dict[str, object]:
    """RUN/run.json; a clear error when the folder is not a training run."""
    return RunFolder(run_dir).read_run()


_MAX_PARAMETERS = 200_000_000  # a generator larger than this is not one productgen trained
_MAX_VOCABULARY = 100_000


def _model_from_header(path: Path, meta: dict, shapes: dict[str, tuple[int, ...]]):
    """Check untrusted metadata and tensor shapes; (ModelConfig, ConditionConfig, names) or CheckpointError.

    Nothing is allocated before this passes: the network is sized on the `meta` device.
    """
    try:
        model_config = ModelConfig.from_json(meta.get("model_config"))
        parts, width = meta.get("conditioning"), meta.get("embedding_dim")
        if not isinstance(parts, list) or not isinstance(width, int) or not 1 <= width <= 16_384:
            raise ValueError("conditioning must be a list of parts and embedding_dim an integer")
        conditioning = ConditionConfig(parts=tuple(parts), text_dim=width)
        if conditioning.dim != model_config.cond_in:
            raise ValueError(
                f"conditions are {conditioning.dim} wide but the network takes {model_config.cond_in}"
            )
        if not isinstance(meta.get("text_model"), str):
            raise ValueError("text_model must be a string")
        vocab = meta.get("vocabulary")
        names = {k: vocab.get(k) if isinstance(vocab, dict) else None for k in ("categories", "colors")}
        for key, values in names.items():
            if not isinstance(values, list) or len(values) > _MAX_VOCABULARY:
                raise ValueError(f"vocabulary.{key} must be a list of at most {_MAX_VOCABULARY} names")
            if not all(isinstance(v, str) for v in values):
                raise ValueError(f"vocabulary.{key} must hold names")
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: metadata does not describe a productgen model ({e})") from None
    with torch.device("meta"):
        shell = build_generator(model_config)
    if sum(p.numel() for p in shell.parameters()) > _MAX_PARAMETERS:
        raise CheckpointError(f"{path}: its settings describe a network over {_MAX_PARAMETERS:,} parameters")
    expected = {f"G_ema.{k}": tuple(v.shape) for k, v in shell.state_dict().items()}
    if not any(k.startswith("G_ema.latent.") for k in shapes):  # models before the latent prior
        expected = {k: v for k, v in expected.items() if not k.startswith("G_ema.latent.")}
    encoder = FAMILY_NETWORKS[model_config.family].encoder
    if encoder is not None and any(k.startswith("E.") for k in shapes):  # models before variants have none
        with torch.device("meta"):
            expected.update({f"E.{k}": tuple(v.shape) for k, v in encoder(model_config).state_dict().items()})
    expected["vocab.category_embeddings"] = (len(names["categories"]), width)
    if "vocab.color_embeddings" in shapes:  # models before the attribute reader have no colour tensors
        expected["vocab.color_embeddings"] = (len(names["colors"]), width)
        expected["vocab.color_rgb"] = (len(names["colors"]), 3)
    got = {k: v for k, v in shapes.items() if k.startswith(("G_ema.", "vocab.", "E."))}
    if got != expected:
        wrong = sorted(set(got) ^ set(expected)) or sorted(k for k in got if got[k] != expected[k])
        raise CheckpointError(
            f"{path}: its tensors do not match the network its metadata describes ({wrong[0]}, ...)"
        )
    return model_config, conditioning, names


def vocabulary_tensors(vocabulary: Vocabulary) -> dict[str, torch.Tensor]:
    """The vocabulary's arrays as the model file stores them (its names go in the metadata)."""
    width = vocabulary.category_embeddings.shape[1]
    colours = vocabulary.color_embeddings
    rgb = vocabulary.color_rgb
    return {
        "vocab.category_embeddings": torch.from_numpy(vocabulary.category_embeddings),
        "vocab.color_embeddings": torch.from_numpy(
            colours if colours is not None else np.zeros((len(vocabulary.colors), width), np.float32)
        ),
        "vocab.color_rgb": torch.from_numpy(
            rgb if rgb is not None else np.zeros((len(vocabulary.colors), 3), np.uint8)
        ),
    }


def load_generator(run_dir: Path, device: str | torch.device = "cpu") -> TrainedGenerator:
    """Load the run's model into an eval-mode generator; every header field is checked first."""
    run = RunFolder(run_dir)
    run.read_run()
    meta, shapes = read_header(run.model)
    model_config, conditioning, names = _model_from_header(run.model, meta, shapes)
    tensors, _ = load_checkpoint(run.model)
    generator = build_generator(model_config)
    weights = {k.removeprefix("G_ema."): v for k, v in tensors.items() if k.startswith("G_ema.")}
    generator.load_state_dict(weights)
    generator.to(device).eval()
    encoder = None
    if any(k.startswith("E.") for k in tensors):
        encoder = FAMILY_NETWORKS[model_config.family].encoder(model_config)
        encoder.load_state_dict({k.removeprefix("E."): v for k, v in tensors.items() if k.startswith("E.")})
        encoder.to(device).eval()
    colours = tensors.get("vocab.color_embeddings")
    vocabulary = Vocabulary(
        names["categories"],
        names["colors"],
        tensors["vocab.category_embeddings"].numpy().astype(np.float32),
        colours.numpy().astype(np.float32) if colours is not None else None,
        tensors["vocab.color_rgb"].numpy().astype(np.uint8) if colours is not None else None,
    )
    digest = hashlib.sha256()
    for key in sorted(weights):
        digest.update(key.encode())
        digest.update(weights[key].contiguous().numpy().tobytes())
    return TrainedGenerator(
        generator=generator,
        conditioning=conditioning,
        vocabulary=vocabulary,
        text_model=str(meta["text_model"]),
        version=digest.hexdigest()[:12],
        metadata=meta,
        encoder=encoder,
    )

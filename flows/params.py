"""Flow parameters as pydantic models: the Prefect UI shows them as a typed form."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from flows.runners import TASK_RUNNER_PATTERN
from productgen.devices import AMP_WORDS
from productgen.evaluate import EVALUATIONS
from productgen.registry import RETRAIN_MODES
from productgen.render import FORMATS
from productgen.shards import MAX_SHARDS
from productgen.train import PRESETS

# The choices come from the library's own tables: a new preset shows up in the UI's form.
Preset = Literal[tuple(PRESETS)]
RetrainMode = Literal[RETRAIN_MODES]
ImageFormat = Literal[tuple(FORMATS)]
Evaluation = Literal[tuple(EVALUATIONS)]
Amp = Literal[tuple(AMP_WORDS)]
_RUNNER = "Where encode and render shards run: none, local, local:N (Dask workers) or tcp://scheduler:8786"
_PHOTO_VARIANTS = (
    "Also publish colour variants of rows with a photo as {model}/{sku}-{colour}.png (cvae, vaegan)"
)
_VARIANT_COLORS = "Variant colours for rows without their own variant_colors column: navy;olive;#7b1f3a"
_SHARDS = "Shards (by a hash of the SKU) for encode and render; 0: a few per worker"


class NightlyParams(BaseModel):
    """One nightly catalog render: ingest -> encode -> (train -> evaluate -> promote) -> render."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    catalog: str = Field(description="Catalog file (.csv, .csv.gz, .jsonl, .parquet) or s3://bucket/key")
    dest: str = Field(description="Where images, manifests and the model registry live: s3://bucket/prefix")
    workdir: str = Field("build/pipeline", description="Local folder for snapshots, runs and caches")
    preset: Preset = Field("cpu-demo", description="Training preset")
    retrain: RetrainMode = Field(
        "auto", description="auto: when the training data changed or no model is promoted"
    )
    max_minutes: float | None = Field(
        None, gt=0, le=24 * 60, description="Training time budget in minutes; empty: the preset's"
    )
    only_missing: bool = Field(False, description="Render only SKUs without a catalog image")
    encode_amp: Amp = Field(
        "off",
        description="bf16 for the text model: off, auto (where the hardware computes bf16; 1.66x faster "
        "on a 2-core CPU with AVX512-BF16) or on; an embedding then moves with its batch mates by up to 1e-3",
    )
    judge_epochs: int = Field(12, ge=1, le=100, description="Epochs of the evaluation judge (cached)")
    evaluation: Evaluation = Field(
        "full", description="full: every holdout row; quick: 2,000 of them (stratified) and a narrower judge"
    )
    force_promote: bool = Field(False, description="Promote even if the quality gate refuses (logged)")
    gate_minimum: dict[str, float] = Field(
        default_factory=dict, description='Absolute floors for the gate, e.g. {"color_accuracy": 0.95}'
    )
    create_bucket: bool = Field(True, description="Create the S3 bucket when it is missing")
    task_runner: str = Field("none", pattern=TASK_RUNNER_PATTERN, description=_RUNNER)
    shards: int = Field(0, ge=0, le=MAX_SHARDS, description=_SHARDS)
    photo_variants: bool = Field(False, description=_PHOTO_VARIANTS)
    variant_colors: str = Field("", max_length=2000, description=_VARIANT_COLORS)
    train_processes: int = Field(
        1, ge=1, le=64, description="Training processes (torchrun, DistributedDataParallel); 1: one process"
    )


class RenderParams(BaseModel):
    """Render a snapshot with the promoted model and publish it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    snapshot: str = Field(description="Snapshot folder (ingested and encoded)")
    dest: str = Field(description="s3://bucket/prefix or file:///folder")
    workdir: str = Field("build/pipeline", description="Local folder for the model cache")
    only_missing: bool = False
    variants: int = Field(1, ge=1, le=16)
    image_format: ImageFormat = "png"
    size: int | None = Field(None, ge=8, le=4096, description="Output pixels; empty: the model's own")
    truncation: float = Field(
        1.0, ge=0.0, le=1.0, description="psi: below 1 trades variety for typical images"
    )
    task_runner: str = Field("none", pattern=TASK_RUNNER_PATTERN, description=_RUNNER)
    shards: int = Field(0, ge=0, le=MAX_SHARDS, description=_SHARDS)
    photo_variants: bool = Field(False, description=_PHOTO_VARIANTS)
    variant_colors: str = Field("", max_length=2000, description=_VARIANT_COLORS)

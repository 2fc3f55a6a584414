"""Serve the deployments: `python -m flows.serve` (what `make serve` runs beside the Prefect UI).

    nightly-catalog-render   nightly flow, Cron at 02:00 in PRODUCTGEN_TIMEZONE, one run at a time
    render-catalog           render flow, on demand from the UI form
    ingest-catalog, encode-snapshot, train-model, evaluate-promote   the stages, on demand

Settings come from PRODUCTGEN_* variables (see ServeSettings); infra/prefect.yaml holds the same
deployments for work pools.
"""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron
from pydantic_settings import BaseSettings, SettingsConfigDict

from flows.params import NightlyParams
from flows.pipeline import encode_flow, evaluate_promote_flow, ingest_flow, nightly, render_flow, train_flow

NIGHTLY = "nightly-catalog-render"


class ServeSettings(BaseSettings):
    """Defaults the deployments carry; every one can be changed per run in the UI form."""

    model_config = SettingsConfigDict(env_prefix="PRODUCTGEN_", extra="ignore")

    catalog: str = "build/demo/catalog.parquet"
    dest: str = "s3://productgen-demo/catalog"
    workdir: str = "build/pipeline"
    cron: str = "0 2 * * *"
    timezone: str = "UTC"
    max_minutes: float | None = None  # the preset's budget


def deployments(settings: ServeSettings) -> list[RunnerDeployment]:
    """Every deployment this project serves, built from the settings."""
    defaults = NightlyParams(
        catalog=settings.catalog,
        dest=settings.dest,
        workdir=settings.workdir,
        max_minutes=settings.max_minutes,
    )
    return [
        nightly.to_deployment(
            name=NIGHTLY,
            schedule=Cron(settings.cron, timezone=settings.timezone),
            concurrency_limit=1,  # overlapping nightly runs never both publish
            parameters={"params": defaults.model_dump()},
            description="Ingest, encode, retrain when the data changed, evaluate + gate, render, publish.",
            tags=["productgen", "nightly"],
        ),
        render_flow.to_deployment(name="render-catalog", concurrency_limit=1, tags=["productgen"]),
        ingest_flow.to_deployment(name="ingest-catalog", tags=["productgen"]),
        encode_flow.to_deployment(name="encode-snapshot", tags=["productgen"]),
        train_flow.to_deployment(name="train-model", tags=["productgen"]),
        evaluate_promote_flow.to_deployment(name="evaluate-promote", tags=["productgen"]),
    ]


def main() -> None:
    serve(*deployments(ServeSettings()))


if __name__ == "__main__":
    main()

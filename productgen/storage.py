"""Talk to S3-compatible storage (AWS S3, MinIO, moto's server) with settings that work on all.

Path-style addressing, standard-mode retries, and checksums only where the operation requires
them (`request_checksum_calculation="when_required"`): newer botocore defaults send CRC headers
that MinIO and other S3-compatible stores reject. Errors become one line naming the endpoint or
object and what to do; secrets are never printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import boto3
import botocore.exceptions
from botocore.config import Config

from productgen.catalog.tables import atomic_path

__all__ = ["S3Settings", "StorageError", "download_uri", "parse_s3_uri", "s3_client"]


class StorageError(RuntimeError):
    """A storage operation failed for a reason the user can act on."""


@dataclass(frozen=True)
class S3Settings:
    """How to reach the store. Built at the edge from AWS_* variables or flow parameters.

    Credentials are not held here: boto3's own chain finds them (env, profile, instance role).
    """

    endpoint_url: str | None = None  # None: AWS itself
    region: str = "us-east-1"
    max_pool_connections: int = 32  # at least the upload concurrency
    max_attempts: int = 5


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/key/part' -> ('bucket', 'key/part'); ValueError if it is not one."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{uri}: not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")


def s3_client(settings: S3Settings):  # -> botocore S3 client (untyped)
    """A boto3 S3 client with path-style addressing and MinIO-compatible checksum behaviour."""
    config = Config(
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "max_attempts": settings.max_attempts},
        max_pool_connections=settings.max_pool_connections,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=settings.endpoint_url, region_name=settings.region, config=config
    )


def describe_error(error: Exception, what: str, settings: S3Settings) -> StorageError:
    """Turn a boto3/botocore exception into one line a user can act on."""
    endpoint = settings.endpoint_url or "AWS S3"
    if isinstance(error, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectionError):
        return StorageError(f"cannot reach the S3 endpoint {endpoint}; is the server running?")
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        return StorageError(
            f"no S3 credentials for {endpoint}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(error, botocore.exceptions.ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in {"NoSuchKey", "404", "NotFound"}:
            return StorageError(f"{what}: no such object at {endpoint}")
        if code == "NoSuchBucket":
            return StorageError(f"{what}: the bucket does not exist at {endpoint}")
        if code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"}:
            return StorageError(
                f"{what}: {endpoint} refused the credentials ({code}); check the AWS_* settings"
            )
        return StorageError(f"{what}: S3 error {code or error} at {endpoint}")
    return StorageError(f"{what}: {error}")


def download_uri(uri: str, target: Path, settings: S3Settings) -> Path:
    """Copy the object at `uri` to `target` (atomically); StorageError with one line if it fails."""
    bucket, key = parse_s3_uri(uri)
    client = s3_client(settings)
    try:
        with atomic_path(target) as tmp, tmp.open("wb") as f:
            client.download_fileobj(bucket, key, f)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        raise describe_error(e, uri, settings) from None
    return target

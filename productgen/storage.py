"""Object storage: one small interface, two implementations (S3-compatible, local directory).

    ObjectStore.put(key, body, ...) -> etag     verified write, atomic for readers
    ObjectStore.get / head / list / delete / url

S3Store talks to AWS S3, MinIO or moto's server with settings that work on all: path-style
addressing, standard-mode retries, a connection pool as large as the upload concurrency, and
checksums only where the operation requires them (`request_checksum_calculation="when_required"`:
newer botocore defaults send CRC headers that MinIO and other S3-compatible stores reject). Writes
carry Content-MD5, so the server refuses a body damaged in transit, and the returned ETag is checked.
LocalStore keeps the same contract in a folder (the embedded default). Errors become one line naming
the endpoint or object and what to do; secrets are never printed.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

import boto3
import botocore.exceptions
from botocore.config import Config

from productgen.atomic import atomic_path

__all__ = [
    "LocalStore",
    "ObjectStore",
    "PreconditionFailed",
    "S3Settings",
    "S3Store",
    "StorageError",
    "StoredObject",
    "download_uri",
    "open_store",
    "parse_s3_uri",
    "redact",
    "s3_client",
]


class StorageError(RuntimeError):
    """A storage operation failed for a reason the user can act on.

    `transient` says whether trying again later may succeed (unreachable endpoint, throttling,
    server errors); a wrong bucket name or refused credentials will not fix themselves.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class PreconditionFailed(StorageError):
    """A conditional write found the object changed (or present) since the caller last read it."""


class NotFound(StorageError):
    """The object is not there (never written, or deleted since it was listed)."""


@dataclass(frozen=True)
class S3Settings:
    """How to reach the store. Built at the edge from AWS_* variables or flow parameters.

    Credentials are not held here: boto3's own chain finds them (env, profile, instance role).
    """

    endpoint_url: str | None = None  # None: AWS itself
    region: str = "us-east-1"
    max_pool_connections: int = 32  # at least the upload concurrency
    max_attempts: int = 5
    # An endpoint that accepts connections and never answers fails after at most
    # max_attempts * (connect_timeout + read_timeout) seconds, not minutes per call.
    connect_timeout: float = 5.0
    read_timeout: float = 30.0

    @property
    def shown_endpoint(self) -> str:
        """The endpoint for messages: credentials in its URL are never printed."""
        return redact(self.endpoint_url) if self.endpoint_url else "AWS S3"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Settings:
        """From the standard AWS variables (AWS_ENDPOINT_URL for MinIO or a local server); the edge
        (CLI, flows) passes os.environ."""
        return cls(
            endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        )


@dataclass(frozen=True)
class StoredObject:
    """What a store knows about one object."""

    key: str
    size: int
    etag: str  # MD5 hex of the body for single-part writes
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None


class ObjectStore(Protocol):
    """Keys are relative to the store's root (`uri`); '/' separates folders."""

    uri: str
    retried_writes: int  # writes that took more than one attempt (the store was flaky)

    def put(
        self,
        key: str,
        body: bytes,
        *,
        content_type: str = "application/octet-stream",
        cache_control: str | None = None,
        metadata: dict[str, str] | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        """Write `body`; returns its ETag. if_match: only if the object's ETag is still this;
        if_none_match: only if there is no object yet. Else PreconditionFailed, nothing written."""
        ...

    def get(self, key: str) -> bytes: ...

    def head(self, key: str) -> StoredObject | None: ...

    def list(self, prefix: str = "") -> Iterator[StoredObject]: ...

    def delete(self, key: str) -> None: ...

    def url(self, key: str, expires_s: int = 7 * 24 * 3600) -> str: ...


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/key/part' -> ('bucket', 'key/part'); ValueError if it is not one."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{uri}: not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")


_USERINFO = re.compile(r"(?<=://)[^/@\s\"']+@")


def redact(text: str) -> str:
    """`scheme://user:secret@host` -> `scheme://***@host` wherever a URL appears in `text`."""
    return _USERINFO.sub("***@", text)


def s3_client(settings: S3Settings):  # -> botocore S3 client (untyped)
    """A boto3 S3 client with path-style addressing and MinIO-compatible checksum behaviour."""
    config = Config(
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "max_attempts": settings.max_attempts},
        max_pool_connections=settings.max_pool_connections,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=settings.endpoint_url, region_name=settings.region, config=config
    )


def describe_error(error: Exception, what: str, settings: S3Settings) -> StorageError:
    """Turn a boto3/botocore exception into one line a user can act on (credentials redacted)."""
    endpoint = settings.shown_endpoint
    if isinstance(error, botocore.exceptions.ReadTimeoutError | botocore.exceptions.ConnectTimeoutError):
        return StorageError(
            f"{what}: the S3 endpoint {endpoint} did not answer within {settings.read_timeout:g} s "
            f"({settings.max_attempts} attempts); is it overloaded or the wrong address?",
            transient=True,
        )
    if isinstance(error, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectionError):
        return StorageError(
            f"cannot reach the S3 endpoint {endpoint}; is the server running?", transient=True
        )
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        return StorageError(
            f"no S3 credentials for {endpoint}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(error, botocore.exceptions.ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in {"NoSuchKey", "404", "NotFound"}:
            return NotFound(f"{what}: no such object at {endpoint}")
        if code == "NoSuchBucket":
            return StorageError(
                f"{what}: the bucket does not exist at {endpoint}; create it or pass --create-bucket"
            )
        if code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"}:
            return StorageError(
                f"{what}: {endpoint} refused the credentials ({code}); check the AWS_* settings"
            )
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        transient = status >= 500 or code in {"SlowDown", "RequestTimeout", "Throttling"}
        return StorageError(
            f"{what}: S3 error {redact(code or str(error))} at {endpoint}", transient=transient
        )
    return StorageError(
        f"{what}: {redact(str(error))}", transient=isinstance(error, botocore.exceptions.BotoCoreError)
    )


_S3_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
_CONFLICTS = {"PreconditionFailed", "ConditionalRequestConflict"}  # 412, and 409 for racing writes
_OUTER_ATTEMPTS = 10


def _worth_another_try(error: Exception) -> bool:
    """A dropped connection or a server-side failure, not a timeout and not a refusal."""
    if isinstance(error, botocore.exceptions.ReadTimeoutError | botocore.exceptions.ConnectTimeoutError):
        return False
    if isinstance(error, botocore.exceptions.ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or error.response.get("Error", {}).get("Code") in {"SlowDown", "Throttling"}
    return isinstance(
        error, botocore.exceptions.ConnectionClosedError | botocore.exceptions.EndpointConnectionError
    )


class S3Store:
    """An ObjectStore under s3://bucket/prefix on any S3-compatible endpoint."""

    def __init__(self, bucket: str, prefix: str, settings: S3Settings, *, create_bucket: bool = False):
        self.bucket, self.prefix, self.settings = bucket, prefix.strip("/"), settings
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.retried_writes = 0
        self._count_lock = threading.Lock()
        self.client = s3_client(settings)
        try:
            self.client.head_bucket(Bucket=bucket)
        except botocore.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket", "NotFound"}:
                raise describe_error(e, f"s3://{bucket}", settings) from None
            if not create_bucket:
                raise StorageError(
                    f"s3://{bucket}: the bucket does not exist at {settings.shown_endpoint};"
                    " create it or pass --create-bucket"
                ) from None
            self._call(f"s3://{bucket}", self.client.create_bucket, Bucket=bucket)
        except botocore.exceptions.BotoCoreError as e:
            raise describe_error(e, f"s3://{bucket}", settings) from None

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn, **kwargs):
        try:
            return self._request(fn, **kwargs)
        except _S3_ERRORS as e:
            raise describe_error(e, what, self.settings) from None

    def _request(self, fn, **kwargs):
        """One boto3 call, tried again after a dropped connection or a 5xx / SlowDown answer.

        boto3 retries those itself, but its retry quota (500 tokens, 5-10 a retry) runs dry on
        a store that fails a few requests in ten; these tries come after. A call that timed out
        is not tried again here: its attempts already took max_attempts x the timeouts.
        """
        for attempt in range(_OUTER_ATTEMPTS):
            try:
                return fn(**kwargs)
            except _S3_ERRORS as e:
                if attempt + 1 == _OUTER_ATTEMPTS or not _worth_another_try(e):
                    raise
                if fn == self.client.put_object:
                    self._count_retries({"ResponseMetadata": {"RetryAttempts": 1}})
                time.sleep(random.uniform(0, min(2.0, 0.1 * 2**attempt)))
        raise AssertionError("unreachable")

    def put(
        self,
        key,
        body,
        *,
        content_type="application/octet-stream",
        cache_control=None,
        metadata=None,
        if_match=None,
        if_none_match=False,
    ):
        """PUT with Content-MD5 (the server rejects a damaged body) and check the returned ETag.

        Conditional writes use S3's If-Match / If-None-Match (AWS S3, MinIO and moto honour them).
        """
        md5 = hashlib.md5(body, usedforsecurity=False)
        extra = {"CacheControl": cache_control} if cache_control else {}
        if if_match is not None:
            extra["IfMatch"] = f'"{if_match}"'
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        try:
            response = self._request(
                self.client.put_object,
                Bucket=self.bucket,
                Key=self._key(key),
                Body=body,
                ContentMD5=base64.b64encode(md5.digest()).decode(),
                ContentType=content_type,
                Metadata=metadata or {},
                **extra,
            )
        except botocore.exceptions.ClientError as e:
            self._count_retries(e.response)
            if e.response.get("Error", {}).get("Code") in _CONFLICTS:
                raise PreconditionFailed(f"{self.uri}/{key}: changed since it was read") from None
            raise describe_error(e, f"{self.uri}/{key}", self.settings) from None
        except botocore.exceptions.BotoCoreError as e:
            raise describe_error(e, f"{self.uri}/{key}", self.settings) from None
        self._count_retries(response)
        etag = response["ETag"].strip('"')
        if etag != md5.hexdigest():
            raise StorageError(f"{self.uri}/{key}: the store's ETag {etag} does not match the bytes sent")
        return etag

    def _count_retries(self, response: Mapping) -> None:
        if response.get("ResponseMetadata", {}).get("RetryAttempts", 0):
            with self._count_lock:
                self.retried_writes += 1

    def get(self, key: str) -> bytes:
        what = f"{self.uri}/{key}"
        response = self._call(what, self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        return response["Body"].read()

    def head(self, key: str) -> StoredObject | None:
        try:
            r = self._request(self.client.head_object, Bucket=self.bucket, Key=self._key(key))
        except botocore.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise describe_error(e, f"{self.uri}/{key}", self.settings) from None
        except botocore.exceptions.BotoCoreError as e:
            raise describe_error(e, f"{self.uri}/{key}", self.settings) from None
        etag = r["ETag"].strip('"')
        return StoredObject(key, r["ContentLength"], etag, r["Metadata"], r.get("ContentType"))

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every object under `prefix` (no metadata: S3 listings do not carry it)."""
        root = f"{self.prefix}/" if self.prefix else ""
        token: dict[str, str] = {}
        while True:  # page by page, each page tried again like any call
            page = self._call(
                f"{self.uri}/{prefix}",
                self.client.list_objects_v2,
                Bucket=self.bucket,
                Prefix=root + prefix,
                **token,
            )
            for item in page.get("Contents", []):
                yield StoredObject(item["Key"][len(root) :], item["Size"], item["ETag"].strip('"'))
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def delete(self, key: str) -> None:
        self._call(f"{self.uri}/{key}", self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def url(self, key: str, expires_s: int = 7 * 24 * 3600) -> str:
        """A presigned GET URL (no credentials in it beyond the signature)."""
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires_s
        )


class LocalStore:
    """An ObjectStore in a local folder: objects are files, metadata sits in ROOT/.meta/KEY.json.

    A write goes to a temporary file that replaces the object in one rename, so a reader sees the
    old bytes or the new, never part of them.
    """

    retried_writes = 0  # a folder write is not retried

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents or key.startswith(".meta/"):
            raise StorageError(f"{key!r}: not a key inside {self.uri}")
        return path

    def _meta(self, key: str) -> Path:
        return self.root / ".meta" / f"{key}.json"

    def put(
        self,
        key,
        body,
        *,
        content_type="application/octet-stream",
        cache_control=None,
        metadata=None,
        if_match=None,
        if_none_match=False,
    ):
        """Write through a temporary file; a conditional write holds the folder's lock (flock)."""
        if if_match is None and not if_none_match:
            return self._write(key, body, content_type, cache_control, metadata)
        lock = self.root / ".meta" / ".lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with lock.open("a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)  # released when the file closes, or the process dies
            current = self.head(key)
            if (if_none_match and current) or (
                if_match is not None and (not current or current.etag != if_match)
            ):
                raise PreconditionFailed(f"{self.uri}/{key}: changed since it was read")
            return self._write(key, body, content_type, cache_control, metadata)

    def _write(self, key, body, content_type, cache_control, metadata) -> str:
        path = self._path(key)
        etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
        meta = {"content_type": content_type, "cache_control": cache_control, "metadata": metadata or {}}
        with atomic_path(self._meta(key)) as tmp:
            tmp.write_text(json.dumps({**meta, "etag": etag}))
        with atomic_path(path) as tmp:
            with tmp.open("wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            if hashlib.md5(tmp.read_bytes(), usedforsecurity=False).hexdigest() != etag:
                raise StorageError(f"{self.uri}/{key}: the bytes written do not read back the same")
        return etag

    def get(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"{self.uri}/{key}: no such object")
        return path.read_bytes()

    def head(self, key: str) -> StoredObject | None:
        path = self._path(key)
        if not path.is_file():
            return None
        meta_path = self._meta(key)
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        etag = meta.get("etag") or hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        size = path.stat().st_size
        return StoredObject(key, size, etag, meta.get("metadata", {}), meta.get("content_type"))

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        folder = (self.root / prefix.rpartition("/")[0]).resolve()  # only the prefix's folder is walked
        if folder != self.root and self.root not in folder.parents:
            raise StorageError(f"{prefix!r}: not a prefix inside {self.uri}")
        if not folder.is_dir():
            return
        for path in sorted(folder.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            # dot-files are the temporary files of writes in progress
            if path.is_file() and key.startswith(prefix) and not key.startswith(".meta/"):
                if path.name.startswith("."):
                    continue
                meta_path = self._meta(key)
                etag = json.loads(meta_path.read_text())["etag"] if meta_path.is_file() else ""
                yield StoredObject(key, path.stat().st_size, etag)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
        self._meta(key).unlink(missing_ok=True)

    def modified(self, key: str) -> float:
        """When the object was last written (seconds since the epoch)."""
        return self._path(key).stat().st_mtime

    def url(self, key: str, expires_s: int = 7 * 24 * 3600) -> str:
        return self._path(key).as_uri()


def open_store(uri: str, settings: S3Settings | None = None, *, create_bucket: bool = False) -> ObjectStore:
    """s3://bucket/prefix, file:///dir or a plain folder path -> an ObjectStore."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        bucket, prefix = parse_s3_uri(uri)
        return S3Store(bucket, prefix, settings or S3Settings(), create_bucket=create_bucket)
    if parsed.scheme == "file":
        return LocalStore(Path(unquote(parsed.path)))
    if parsed.scheme in {"", "local"} or (len(parsed.scheme) == 1 and os.name == "nt"):
        return LocalStore(Path(uri.removeprefix("local://")))
    raise ValueError(f"{uri}: unknown destination; use s3://bucket/prefix or file:///folder")


def download_uri(uri: str, target: Path, settings: S3Settings) -> Path:
    """Copy the object at `uri` to `target` (atomically); StorageError with one line if it fails."""
    bucket, key = parse_s3_uri(uri)
    client = s3_client(settings)
    try:
        with atomic_path(target) as tmp, tmp.open("wb") as f:
            client.download_fileobj(bucket, key, f)
    except _S3_ERRORS as e:
        raise describe_error(e, uri, settings) from None
    return target

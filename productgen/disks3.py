"""A disk-backed S3-compatible server for laptops: every acknowledged write is already on disk.

    DATA/<bucket>/<key>                 the object's bytes (a LocalStore per bucket)
    DATA/<bucket>/.meta/<key>.json      its ETag, content type, cache control, x-amz-meta-*

It speaks the part of the S3 protocol productgen and boto3 use, path-style: list, create and head
buckets; put (Content-MD5 checked, If-Match / If-None-Match honoured), get (with Range), head and
delete objects; ListObjectsV2 with prefixes and continuation tokens. A PUT is answered only after
its bytes and metadata were renamed into place, so `kill -9` of the server loses no acknowledged
write, and start and stop need no save or restore: the folder is the store. Each bucket's keys are
indexed in memory (sorted) when the server starts, for listing.

Requests are not authenticated: it binds 127.0.0.1 and is a development server. Real MinIO for
teams comes with infra/docker-compose.yml.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import escape

from productgen.storage import LocalStore, PreconditionFailed, StorageError

__all__ = ["DiskS3"]

_NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_MAX_KEYS = 1000


class _S3Error(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Bucket:
    """One bucket: its LocalStore and a sorted index of its keys."""

    def __init__(self, root: Path) -> None:
        self.store = LocalStore(root)
        self.lock = threading.Lock()
        self.keys = sorted(_keys(root))

    def added(self, key: str) -> None:
        with self.lock:
            at = bisect.bisect_left(self.keys, key)
            if at == len(self.keys) or self.keys[at] != key:
                self.keys.insert(at, key)

    def removed(self, key: str) -> None:
        with self.lock:
            at = bisect.bisect_left(self.keys, key)
            if at < len(self.keys) and self.keys[at] == key:
                del self.keys[at]

    def page(self, prefix: str, after: str, limit: int) -> tuple[list[str], bool]:
        with self.lock:
            start = bisect.bisect_right(self.keys, after) if after else bisect.bisect_left(self.keys, prefix)
            out = []
            for key in self.keys[start:]:
                if not key.startswith(prefix):
                    if key > prefix:
                        break
                    continue
                if len(out) == limit:
                    return out, True
                out.append(key)
            return out, False


def _keys(root: Path) -> Iterator[str]:
    """Every object's key under a bucket folder (no metadata read: fast at start)."""
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if not relative.startswith(".meta/") and not path.name.startswith(".") and path.is_file():
            yield relative


class DiskS3:
    """The server: `start()` serves in a background thread; `stop()` closes it (nothing to save)."""

    def __init__(self, data: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.data = data
        data.mkdir(parents=True, exist_ok=True)
        self.buckets = {
            p.name: _Bucket(p) for p in sorted(data.iterdir()) if p.is_dir() and _BUCKET.match(p.name)
        }
        self.buckets_lock = threading.Lock()
        try:
            self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        except OSError as e:
            raise OSError(
                f"cannot start the local S3 server on {host}:{port} ({e.strerror}); pick another --port"
            ) from None
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="disk-s3", daemon=True)

    @property
    def objects(self) -> int:
        return sum(len(b.keys) for b in self.buckets.values())

    def start(self) -> DiskS3:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def bucket(self, name: str, *, create: bool = False) -> _Bucket:
        with self.buckets_lock:
            if name not in self.buckets:
                if not create:
                    raise _S3Error(404, "NoSuchBucket", f"the bucket {name!r} does not exist")
                if not _BUCKET.match(name):
                    raise _S3Error(400, "InvalidBucketName", f"{name!r} is not a valid bucket name")
                self.buckets[name] = _Bucket(self.data / name)
            return self.buckets[name]


def _handler(server: DiskS3) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        # -- plumbing --------------------------------------------------------------------------
        def _target(self) -> tuple[str, str, dict[str, list[str]]]:
            parts = urlsplit(self.path)
            bucket, _, key = parts.path.lstrip("/").partition("/")
            return unquote(bucket), unquote(key), parse_qs(parts.query, keep_blank_values=True)

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)

        def _xml(self, status: int, content: str) -> None:
            body = f'<?xml version="1.0" encoding="UTF-8"?>\n{content}'.encode()
            self._send(status, body, {"Content-Type": "application/xml"})

        def _dispatch(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                bucket, key, query = self._target()
                handler = getattr(
                    self,
                    f"_{self.command.lower()}_{'object' if key else 'bucket' if bucket else 'root'}",
                    None,
                )
                if handler is None:
                    raise _S3Error(501, "NotImplemented", f"{self.command} {self.path} is not supported here")
                handler(bucket, key, query, body)
            except _S3Error as e:
                resource = escape(self.path)
                self._xml(e.status, f"<Error><Code>{e.code}</Code><Message>{escape(e.message)}</Message>"
                                    f"<Resource>{resource}</Resource></Error>")  # fmt: skip
            except (StorageError, ValueError) as e:
                self._xml(
                    400, f"<Error><Code>InvalidRequest</Code><Message>{escape(str(e))}</Message></Error>"
                )

        do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _dispatch

        # -- buckets ---------------------------------------------------------------------------
        def _get_root(self, bucket, key, query, body) -> None:
            names = "".join(
                f"<Bucket><Name>{escape(n)}</Name><CreationDate>2026-01-01T00:00:00.000Z</CreationDate></Bucket>"
                for n in sorted(server.buckets)
            )
            self._xml(200, f"<ListAllMyBucketsResult {_NS}><Owner><ID>productgen</ID></Owner>"
                           f"<Buckets>{names}</Buckets></ListAllMyBucketsResult>")  # fmt: skip

        def _put_bucket(self, bucket, key, query, body) -> None:
            server.bucket(bucket, create=True)
            self._send(200, headers={"Location": f"/{bucket}"})

        def _head_bucket(self, bucket, key, query, body) -> None:
            server.bucket(bucket)
            self._send(200)

        def _get_bucket(self, bucket, key, query, body) -> None:
            if query.get("list-type", [""])[0] != "2":
                raise _S3Error(501, "NotImplemented", "only ListObjectsV2 (list-type=2) is supported")
            store = server.bucket(bucket)
            prefix = query.get("prefix", [""])[0]
            token = query.get("continuation-token", [""])[0]
            after = base64.urlsafe_b64decode(token).decode() if token else query.get("start-after", [""])[0]
            limit = min(int(query.get("max-keys", [str(_MAX_KEYS)])[0]), _MAX_KEYS)
            keys, truncated = store.page(prefix, after, limit)
            encode = query.get("encoding-type", [""])[0] == "url"
            contents = []
            for name in keys:
                head = store.store.head(name)
                if head is None:  # deleted while listing
                    continue
                shown = quote(name, safe="/") if encode else escape(name)
                contents.append(
                    f"<Contents><Key>{shown}</Key><LastModified>{_iso(store.store, name)}</LastModified>"
                    f'<ETag>"{head.etag}"</ETag><Size>{head.size}</Size><StorageClass>STANDARD</StorageClass>'
                    "</Contents>"
                )
            next_token = base64.urlsafe_b64encode(keys[-1].encode()).decode() if truncated else ""
            following = f"<NextContinuationToken>{next_token}</NextContinuationToken>" if truncated else ""
            shown = quote(prefix, safe="/") if encode else escape(prefix)
            self._xml(200, f"<ListBucketResult {_NS}><Name>{escape(bucket)}</Name><Prefix>{shown}</Prefix>"
                           f"<KeyCount>{len(contents)}</KeyCount><MaxKeys>{limit}</MaxKeys>"
                           f"{'<EncodingType>url</EncodingType>' if encode else ''}"
                           f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{following}"
                           f"{''.join(contents)}</ListBucketResult>")  # fmt: skip

        # -- objects ---------------------------------------------------------------------------
        def _put_object(self, bucket, key, query, body) -> None:
            store = server.bucket(bucket)
            digest = self.headers.get("Content-MD5")
            if digest and base64.b64decode(digest) != hashlib.md5(body, usedforsecurity=False).digest():
                raise _S3Error(
                    400, "BadDigest", "the Content-MD5 you specified did not match what we received"
                )
            metadata = {
                name[len("x-amz-meta-") :].lower(): value
                for name, value in self.headers.items()
                if name.lower().startswith("x-amz-meta-")
            }
            if_match = self.headers.get("If-Match")
            try:
                etag = store.store.put(
                    key, body, content_type=self.headers.get("Content-Type") or "application/octet-stream",
                    cache_control=self.headers.get("Cache-Control"), metadata=metadata,
                    if_match=if_match.strip('"') if if_match else None,
                    if_none_match=self.headers.get("If-None-Match") == "*",
                )  # fmt: skip
            except PreconditionFailed:
                raise _S3Error(
                    412, "PreconditionFailed", "at least one of the preconditions failed"
                ) from None
            store.added(key)
            self._send(200, headers={"ETag": f'"{etag}"'})

        def _object(self, bucket: str, key: str):
            store = server.bucket(bucket)
            head = store.store.head(key)
            if head is None:
                raise _S3Error(404, "NoSuchKey", "the specified key does not exist")
            headers = {
                "ETag": f'"{head.etag}"', "Content-Type": head.content_type or "application/octet-stream",
                "Last-Modified": formatdate(store.store.modified(key), usegmt=True),
                "Accept-Ranges": "bytes",
                **{f"x-amz-meta-{k}": v for k, v in head.metadata.items()},
            }  # fmt: skip
            return store, head, headers

        def _head_object(self, bucket, key, query, body) -> None:
            _, head, headers = self._object(bucket, key)
            self._send(200, headers={**headers, "Content-Length": str(head.size)})

        def _get_object(self, bucket, key, query, body) -> None:
            store, _, headers = self._object(bucket, key)
            data = store.store.get(key)
            wanted = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range") or "")
            if wanted and data:
                first, last = wanted.groups()
                start = int(first) if first else max(0, len(data) - int(last))
                end = min(int(last), len(data) - 1) if first and last else len(data) - 1
                if start > end:
                    raise _S3Error(416, "InvalidRange", "the requested range is not satisfiable")
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                self._send(206, data[start : end + 1], headers)
                return
            self._send(200, data, headers)

        def _delete_object(self, bucket, key, query, body) -> None:
            store = server.bucket(bucket)
            store.store.delete(key)
            store.removed(key)
            self._send(204)

    return Handler


def _iso(store: LocalStore, key: str) -> str:
    return datetime.fromtimestamp(store.modified(key), UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")

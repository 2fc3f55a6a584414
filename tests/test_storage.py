"""ObjectStore: the local folder and S3 over HTTP keep one contract; S3 errors are one clear line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from productgen.storage import LocalStore, S3Settings, StorageError, open_store, s3_client


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    """The same contract runs against a folder and against the S3 server (a fresh prefix each)."""
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    settings = request.getfixturevalue("s3_env")
    return open_store(f"s3://contract/{tmp_path.name}", settings, create_bucket=True)


def test_put_get_head_round_trip_with_metadata(store) -> None:
    body = b"\x89PNG fake image bytes"
    etag = store.put(
        "v1/SKU-1.png", body, content_type="image/png", cache_control="max-age=60",
        metadata={"sku": "SKU-1", "content-hash": "abc"},
    )  # fmt: skip
    assert etag == hashlib.md5(body).hexdigest()
    assert store.get("v1/SKU-1.png") == body
    head = store.head("v1/SKU-1.png")
    assert (head.size, head.etag, head.content_type) == (len(body), etag, "image/png")
    assert head.metadata == {"sku": "SKU-1", "content-hash": "abc"}


def test_list_sees_only_the_prefix_and_delete_removes(store) -> None:
    for key in ("a/1.png", "a/2.png", "b/1.png"):
        store.put(key, key.encode())
    assert [o.key for o in store.list("a/")] == ["a/1.png", "a/2.png"]
    assert len(list(store.list())) == 3
    store.delete("a/1.png")
    assert store.head("a/1.png") is None
    assert [o.key for o in store.list("a/")] == ["a/2.png"]


def test_overwrite_replaces_the_whole_object(store) -> None:
    store.put("k.bin", b"old" * 1000)
    store.put("k.bin", b"new")
    assert store.get("k.bin") == b"new"
    assert store.head("k.bin").size == 3


def test_missing_object_is_none_on_head_and_a_clear_error_on_get(store) -> None:
    assert store.head("nope.png") is None
    with pytest.raises(StorageError, match=r"nope\.png"):
        store.get("nope.png")


def test_url_reads_the_object(store) -> None:
    import urllib.request

    store.put("u.txt", b"hello")
    with urllib.request.urlopen(store.url("u.txt")) as response:
        assert response.read() == b"hello"


def test_local_store_refuses_keys_outside_its_folder(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    with pytest.raises(StorageError, match="not a key inside"):
        store.put("../escape.png", b"x")


def test_missing_bucket_is_a_clear_error_unless_asked_to_create(s3_env: S3Settings) -> None:
    with pytest.raises(StorageError, match=r"s3://absent-bucket: the bucket does not exist.*--create-bucket"):
        open_store("s3://absent-bucket/x", s3_env)
    open_store("s3://absent-bucket/x", s3_env, create_bucket=True).put("k", b"v")
    assert s3_client(s3_env).get_object(Bucket="absent-bucket", Key="x/k")["Body"].read() == b"v"


def test_unreachable_endpoint_names_it(s3_env: S3Settings) -> None:
    from productgen.devs3 import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StorageError, match=f"cannot reach the S3 endpoint {url}"):
        open_store("s3://bucket/x", S3Settings(endpoint_url=url, max_attempts=1))


def test_an_endpoint_that_never_answers_fails_in_bounded_time(s3_env: S3Settings) -> None:
    """A server that accepts connections and says nothing: a named error within the timeouts."""
    import socket
    import time

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel accepts; nobody ever reads or answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        settings = S3Settings(endpoint_url=url, max_attempts=2, connect_timeout=1, read_timeout=1)
        started = time.monotonic()
        with pytest.raises(StorageError, match=f"{url} did not answer within 1 s") as error:
            open_store("s3://bucket/x", settings)
        assert error.value.transient and time.monotonic() - started < 15


def test_credentials_in_the_endpoint_url_are_never_printed(s3_env: S3Settings) -> None:
    from productgen.devs3 import free_port

    url = f"http://KEYID:very-secret-value@127.0.0.1:{free_port()}"
    with pytest.raises(StorageError) as error:
        open_store("s3://bucket/x", S3Settings(endpoint_url=url, max_attempts=1))
    assert "very-secret-value" not in str(error.value) and "KEYID" not in str(error.value)
    assert "http://***@127.0.0.1" in str(error.value)


def test_wrong_credentials_are_named_without_printing_the_secret(
    s3_env: S3Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With authentication on, the server refuses unknown keys; the message never shows the secret."""
    import moto.settings

    open_store("s3://auth-bucket", s3_env, create_bucket=True)
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    with pytest.raises(StorageError, match="refused the credentials") as error:
        open_store("s3://auth-bucket", s3_env)
    assert "very-secret-value" not in str(error.value)


def test_unknown_destination_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="use s3://bucket/prefix or file:///folder"):
        open_store("ftp://host/dir")


def test_local_store_files_are_readable_like_any_other_file(tmp_path: Path) -> None:
    """Atomic writes must not leave objects private to the writer (a web server reads them)."""
    import os
    import stat

    store = LocalStore(tmp_path / "s")
    store.put("a.png", b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "s" / "a.png").stat().st_mode) == 0o666 & ~mask

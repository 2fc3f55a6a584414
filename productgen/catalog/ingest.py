"""Ingest a merchant's catalog file into a validated snapshot; every bad row kept with its reason.

    catalog file (CSV / CSV.gz / JSONL / Parquet, local or s3://)
      -> pass 1: stream record batches, normalise text, validate, write candidates + rejects
      -> pass 2: among duplicate skus keep the latest updated_at (later in the file breaks ties)
      -> the snapshot's valid rows, rejects (Parquet and CSV) and summary (productgen.snapshot)

Memory is bounded by the batch size: only (sku, updated_at, ordinal) of all rows is held at once,
for the duplicate decision. `valid + rejected == rows` always: nothing is dropped silently.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from productgen.attributes import (
    MAP_FILE_NAMES,
    MAX_MAP_BYTES,
    AttributeMap,
    AttributeMapError,
    find_attribute_map,
)
from productgen.catalog.readers import CatalogFileError, RawBatch, detect_format, read_batches
from productgen.catalog.schema import (
    DESCRIPTION_FIELDS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    content_hash,
)
from productgen.snapshot import Snapshot, escape_formula

if TYPE_CHECKING:
    from productgen.storage import S3Settings

__all__ = [
    "IngestSummary",
    "ingest",
    "ingest_source",
    "normalise_text",
    "source_fingerprint",
]

MAX_SKU = 128
MAX_TITLE = 1_000
TEXT_COLUMNS = ("title", "brand", "color", "size", "category", "image")
_KNOWN = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
_SKU_OK = r"^[A-Za-z0-9._-]+$"
# Control and invisible format characters (not the white space ones, which fold to a space).
_CONTROL = r"[\x{0000}-\x{0008}\x{000E}-\x{001F}\x{007F}-\x{0084}\x{0086}-\x{009F}\x{200B}\x{2060}\x{FEFF}]"
_SPACE = (
    r"[\t\n\x{000B}\f\r \x{0085}\x{00A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+"
)
_REJECT_COLUMNS = ("source_row", "sku", "field", "reason", "record")


@dataclass(frozen=True)
class IngestSummary:
    """What one ingest did; `rows == valid + rejected`."""

    source: str
    format: str
    rows: int
    valid: int
    rejected: int
    duplicates: int
    reasons: dict[str, int]  # rejected rows per field ("parse", "sku", "title", "duplicate", ...)
    extra_columns: list[str]
    image_root: str  # where relative `image` paths point
    snapshot: str
    attribute_map: str | None  # the mapping file pinned values came from
    pinned: dict[str, int]  # pinned values per attribute
    seconds: float
    created_at: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def normalise_text(values: pa.Array) -> pa.Array:
    """NFC, control characters removed, runs of white space folded to one space, trimmed; '' -> null."""
    values = pc.utf8_normalize(values, "NFC")
    values = pc.replace_substring_regex(values, _CONTROL, "")
    values = pc.replace_substring_regex(values, _SPACE, " ")
    values = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def _canonical_names(names: list[str], source: str) -> dict[str, str]:
    """Header name as written -> canonical name (known columns lower-cased; extras as written)."""
    mapping: dict[str, str] = {}
    for name in names:
        key = str(name).strip().lower()
        canonical = key if key in _KNOWN else str(name)
        if canonical in mapping.values():
            raise CatalogFileError(f"{source}: column {canonical!r} appears twice in the header; keep one")
        mapping[str(name)] = canonical
    return mapping


class _Rejects:
    """Streams rejected rows to rejects.parquet and rejects.csv (formula-looking cells escaped)."""

    _SCHEMA = pa.schema([("source_row", pa.int64())] + [(n, pa.string()) for n in _REJECT_COLUMNS[1:]])

    def __init__(self, parquet_path: Path, csv_path: Path) -> None:
        self._parquet = pq.ParquetWriter(parquet_path, self._SCHEMA)
        self._csv_file = csv_path.open("w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._csv_file, lineterminator="\n")
        self._csv.writerow(_REJECT_COLUMNS)
        self.reasons: Counter[str] = Counter()
        self.count = 0

    def add(self, rows: list[tuple[int, str | None, str, str, str]]) -> None:
        if not rows:
            return
        columns = list(zip(*rows, strict=True))
        self._parquet.write_table(
            pa.table(dict(zip(_REJECT_COLUMNS, columns, strict=True)), schema=self._SCHEMA)
        )
        for row in rows:
            self._csv.writerow([escape_formula(v) for v in row])
            self.reasons[row[2]] += 1
        self.count += len(rows)

    def close(self) -> None:
        self._parquet.close()
        self._csv_file.close()


def _raw_record(batch: RawBatch, i: int) -> str:
    if isinstance(batch.columns, pa.Table):
        record = batch.columns.slice(i, 1).to_pylist()[0]
    else:
        record = {name: values[i] for name, values in batch.columns.items()}
    return json.dumps(record, ensure_ascii=False, default=str)


def _column(batch: RawBatch, mapping: dict[str, str], canonical: str, n: int) -> pa.Array:
    """One known column of a batch as text (Parquet integers -> their digits); null if absent."""
    raw_name = next((raw for raw, name in mapping.items() if name == canonical), None)
    if raw_name is None:
        return pa.nulls(n, pa.string())
    if isinstance(batch.columns, pa.Table):
        values = batch.columns.column(raw_name).combine_chunks()
        if canonical == "updated_at" and pa.types.is_timestamp(values.type):
            return values
        return values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
    return pa.array(batch.columns[raw_name], pa.string())


def _timestamps(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """updated_at as UTC timestamps, and a mask of the values that are not timestamps."""
    if pa.types.is_timestamp(values.type):
        ts = values if values.type.tz else pc.assume_timezone(values, "UTC")
        return pc.cast(ts, pa.timestamp("us", "UTC")), np.zeros(len(values), bool)
    text = normalise_text(values)
    parsed = pd.to_datetime(
        pd.Series(text.to_pylist(), dtype=object), utc=True, format="ISO8601", errors="coerce"
    )
    bad = parsed.isna().to_numpy() & ~pc.is_null(text).to_numpy(zero_copy_only=False)
    return pa.array(parsed.dt.as_unit("us"), pa.timestamp("us", "UTC")), bad


def _validate(
    sku: pa.Array, cols: dict[str, pa.Array], bad_time: np.ndarray, raw_time: pa.Array
) -> list[tuple[int, str, str]]:
    """(row index, field, reason) for every row that breaks a rule; the first broken rule wins."""
    failed: dict[int, tuple[str, str]] = {}

    def rule(mask: np.ndarray, field: str, reason) -> None:  # reason: str or row -> str
        for i in np.flatnonzero(mask):
            if i not in failed:
                failed[int(i)] = (field, reason(int(i)) if callable(reason) else reason)

    sku_py = sku.to_pylist()
    sku_len = pc.fill_null(pc.utf8_length(sku), 0).to_numpy()
    rule(sku_len == 0, "sku", "sku is empty; every row needs a sku")
    rule(sku_len > MAX_SKU, "sku", lambda i: f"sku is {sku_len[i]} characters; at most {MAX_SKU}")
    bad_chars = ~pc.fill_null(pc.match_substring_regex(sku, _SKU_OK), True).to_numpy(zero_copy_only=False)
    rule(
        bad_chars,
        "sku",
        lambda i: f"sku {sku_py[i]!r} has {_first_bad_char(sku_py[i])}; use only A-Z a-z 0-9 . _ -",
    )
    dots = pc.fill_null(pc.is_in(sku, pa.array([".", ".."])), False).to_numpy(zero_copy_only=False)
    rule(dots, "sku", lambda i: f"sku {sku_py[i]!r} is not allowed (it would be a folder name)")
    title_len = pc.fill_null(pc.utf8_length(cols["title"]), 0).to_numpy()
    rule(title_len == 0, "title", "title is empty after normalisation; every row needs a title")
    rule(
        title_len > MAX_TITLE,
        "title",
        lambda i: f"title is {title_len[i]:,} characters; at most {MAX_TITLE:,}",
    )
    rule(bad_time, "updated_at", lambda i: f"updated_at {raw_time[i].as_py()!r} is not an ISO 8601 timestamp")
    image = cols["image"]
    escapes = pc.fill_null(
        pc.or_(
            pc.match_substring_regex(image, r"^(/|\\|[A-Za-z]:)"),
            pc.match_substring_regex(image, r"(^|[/\\])\.\.([/\\]|$)"),
        ),
        False,
    ).to_numpy(zero_copy_only=False)
    rule(escapes, "image", "image must be a relative path inside the catalog's folder")
    return sorted((i, field, reason) for i, (field, reason) in failed.items())


def _first_bad_char(sku: str) -> str:
    ch = next(c for c in sku if not (c.isascii() and (c.isalnum() or c in "._-")))
    return "a space" if ch == " " else f"the character {ch!r}"


def _candidates(
    batch: RawBatch, mapping: dict[str, str], first_ordinal: int, rejects: _Rejects
) -> pa.Table | None:
    """Normalise and validate one batch; send bad rows to `rejects`, return the rest."""
    n = len(batch.lines)
    rejects.add([(b.line, None, "parse", b.reason, b.text) for b in batch.broken])
    if n == 0:
        return None
    sku = _column(batch, mapping, "sku", n)
    cols = {name: normalise_text(_column(batch, mapping, name, n)) for name in TEXT_COLUMNS}
    raw_time = _column(batch, mapping, "updated_at", n)
    updated_at, bad_time = _timestamps(raw_time)
    failed = _validate(sku, cols, bad_time, raw_time)
    sku_py = sku.to_pylist() if failed else []
    rejects.add(
        [(batch.lines[i], sku_py[i], field, reason, _raw_record(batch, i)) for i, field, reason in failed]
    )

    table = {
        "sku": sku,
        **{name: cols[name] for name in TEXT_COLUMNS},
        "updated_at": updated_at,
    }
    for raw, canonical in mapping.items():
        if canonical not in _KNOWN:  # extra columns pass through as they are
            if isinstance(batch.columns, pa.Table):
                table[canonical] = batch.columns.column(raw).combine_chunks()
            else:
                table[canonical] = pa.array(batch.columns[raw], pa.string())
    table["_line"] = pa.array(batch.lines, pa.int64())
    table["_ordinal"] = pa.array(np.arange(first_ordinal, first_ordinal + n), pa.int64())
    result = pa.table(table)
    if failed:
        keep = np.ones(n, bool)
        keep[[i for i, _, _ in failed]] = False
        result = result.filter(pa.array(keep))
    return result


def _winners(parts: list[Path], total: int) -> tuple[np.ndarray, dict[str, tuple[int, object]]]:
    """Per ordinal: does this row win its sku? For duplicated skus: the winner's (line, updated_at)."""
    keys = pq.read_table(parts, columns=["sku", "updated_at", "_ordinal", "_line"]).to_pandas()
    ordered = keys.sort_values(["sku", "updated_at", "_ordinal"], na_position="first", kind="stable")
    best = ordered.drop_duplicates("sku", keep="last")
    is_winner = np.zeros(total, bool)
    is_winner[best["_ordinal"].to_numpy()] = True
    counts = keys["sku"].value_counts()
    duplicated = best[best["sku"].isin(counts.index[counts > 1])]
    winners = dict(
        zip(duplicated["sku"], zip(duplicated["_line"], duplicated["updated_at"], strict=True), strict=True)
    )
    return is_winner, winners


def _with_hash(table: pa.Table) -> pa.Table:
    fields = [table.column(name).to_pylist() for name in DESCRIPTION_FIELDS]
    hashes = [content_hash(*values) for values in zip(*fields, strict=True)]
    return table.append_column("content_hash", pa.array(hashes, pa.string()))


def _valid_schema(parts: list[Path]) -> pa.Schema:
    schemas = [pq.read_schema(p) for p in parts]
    unified = pa.unify_schemas(schemas, promote_options="permissive")
    names = [f.name for f in unified if not f.name.startswith("_")]
    fields = [unified.field(n) for n in names]
    fields.append(pa.field("content_hash", pa.string()))
    fields.append(pa.field("source_row", pa.int64()))
    return pa.schema(fields)


def ingest(
    path: Path,
    out_dir: Path,
    *,
    source: str | None = None,
    image_root: str | None = None,
    attribute_map: Path | None = None,
    map_name: str | None = None,
) -> IngestSummary:
    """Validate the catalog at `path` into a snapshot folder `out_dir`; returns the summary.

    source: the name users know the file by (an s3:// URI), for messages; default the path.
    image_root: where relative `image` paths point; default the catalog file's folder.
    attribute_map: pinned mappings (attributes.AttributeMap); default the one next to a local
    catalog file, if any. Copied into the snapshot, so later stages read what was pinned then.
    map_name: the name users know the map by (an s3:// URI), for messages; default its path.
    Raises CatalogFileError (one line) for problems with the whole file.
    """
    started = time.perf_counter()
    source = source or str(path)
    fmt, _ = detect_format(source)
    if attribute_map is None and "://" not in source:
        attribute_map = find_attribute_map(path)
    try:
        pins = AttributeMap.from_file(attribute_map) if attribute_map else AttributeMap()
    except AttributeMapError as e:
        message = str(e)
        if map_name and attribute_map:
            message = message.replace(str(attribute_map), map_name, 1)
        raise CatalogFileError(message) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    snapshot = Snapshot(out_dir)
    work = Path(tempfile.mkdtemp(prefix=".ingest-", dir=out_dir))
    try:
        staged = Snapshot(work)  # written in a scratch folder, moved into place when complete
        rejects = _Rejects(staged.rejects_parquet, staged.rejects_csv)
        parts: list[Path] = []
        mapping: dict[str, str] = {}
        seen_columns: set[str] = set()
        total = 0
        for batch in read_batches(path, source):
            names = batch.columns.column_names if isinstance(batch.columns, pa.Table) else list(batch.columns)
            mapping = _canonical_names(names, source)
            seen_columns.update(mapping.values())
            if fmt != "jsonl":  # CSV/Parquet have one header: check it up front
                _require_columns(seen_columns, source)
            table = _candidates(batch, mapping, total, rejects)
            total += len(batch.lines)
            if table is not None and table.num_rows:
                parts.append(work / f"part-{len(parts):05d}.parquet")
                pq.write_table(table, parts[-1])
        records = total + rejects.reasons["parse"]
        if records == 0:
            raise CatalogFileError(f"{source}: no records after the header; the catalog is empty")
        if fmt == "jsonl" and total:
            _require_columns(seen_columns, source)

        valid = duplicates = 0
        if parts:
            is_winner, winners = _winners(parts, total)
            schema = _valid_schema(parts)
            with pq.ParquetWriter(staged.valid_path, schema) as writer:
                for part in parts:
                    table = pq.read_table(part)
                    win = is_winner[table.column("_ordinal").to_numpy()]
                    losers = table.filter(pa.array(~win))
                    rejects.add([_duplicate_reject(row, winners) for row in losers.to_pylist()])
                    duplicates += losers.num_rows
                    kept = _with_hash(table.filter(pa.array(win)))
                    kept = kept.append_column("source_row", kept.column("_line"))
                    writer.write_table(_conform(kept, schema))
                    valid += kept.num_rows
        rejects.close()

        summary = IngestSummary(
            source=source,
            format=fmt,
            rows=records,
            valid=valid,
            rejected=rejects.count,
            duplicates=duplicates,
            reasons=dict(rejects.reasons),
            extra_columns=sorted(c for c in seen_columns if c not in _KNOWN),
            image_root=image_root or str(path.resolve().parent),
            snapshot=str(out_dir),
            attribute_map=map_name or (str(attribute_map) if attribute_map else None),
            pinned={"color": len(pins.color), "category": len(pins.category)},
            seconds=round(time.perf_counter() - started, 3),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        assert summary.valid + summary.rejected == summary.rows, summary
        staged.rejects_parquet.replace(snapshot.rejects_parquet)
        staged.rejects_csv.replace(snapshot.rejects_csv)
        if valid:
            staged.valid_path.replace(snapshot.valid_path)
        else:
            snapshot.valid_path.unlink(missing_ok=True)
        snapshot.write_attribute_map(pins.to_json() if pins else None)
        snapshot.write_summary(summary.to_json())
        if not valid:
            top = rejects.reasons.most_common(1)[0][0]
            raise CatalogFileError(
                f"{source}: no valid row; all {records} rejected, most often for {top!r} "
                f"(reasons in {snapshot.rejects_csv})"
            )
        return summary
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _require_columns(seen: set[str], source: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in seen]
    if missing:
        found = ", ".join(sorted(seen)) or "none"
        raise CatalogFileError(
            f"{source}: required column {missing[0]!r} is missing (columns found: {found}); "
            f"a catalog needs {' and '.join(REQUIRED_COLUMNS)}"
        )


def _duplicate_reject(row: dict, winners: dict[str, tuple[int, object]]) -> tuple[int, str, str, str, str]:
    line, winner_time = winners[row["sku"]]
    mine = row["updated_at"]
    on_time = not pd.isna(winner_time) and (mine is None or pd.Timestamp(mine) < winner_time)
    why = "a later updated_at" if on_time else "the same updated_at and comes later in the file"
    reason = f"duplicate sku {row['sku']!r}: row {line} has {why}"
    record = {k: v for k, v in row.items() if not k.startswith("_")}
    return row["_line"], row["sku"], "duplicate", reason, json.dumps(record, ensure_ascii=False, default=str)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def source_fingerprint(source: str, *, s3: S3Settings | None = None) -> str:
    """What identifies a catalog's content: SHA-256 of a local file (and of the attribute map beside
    it, which changes what is read from the rows), ETag and size of an S3 object."""
    if not source.startswith("s3://"):
        digest = hashlib.sha256()
        pinned = find_attribute_map(Path(source))
        for path in (Path(source), *([pinned] if pinned and pinned.is_file() else [])):
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        return digest.hexdigest()
    from productgen.storage import S3Settings, open_store

    bucket, key = source[len("s3://") :].split("/", 1)
    store = open_store(f"s3://{bucket}", s3 or S3Settings())
    head = store.head(key)
    if head is None:
        raise ValueError(f"{source}: no such object")
    pinned = _s3_attribute_map(source, store)
    return f"s3:{head.etag}:{head.size}" + (f":{pinned[1].etag}" if pinned else "")


def _s3_attribute_map(source: str, store) -> tuple[str, object] | None:
    """(key, head) of the attribute map beside an s3:// catalog (MAP_FILE_NAMES), if there is one."""
    folder = source[len("s3://") :].split("/", 1)[1].rpartition("/")[0]
    for name in MAP_FILE_NAMES:
        key = f"{folder}/{name}" if folder else name
        head = store.head(key)
        if head is not None:
            return key, head
    return None


def ingest_source(
    source: str,
    out_dir: Path,
    *,
    s3: S3Settings | None = None,
    image_root: str | None = None,
    attribute_map: Path | None = None,
) -> IngestSummary:
    """Ingest a local path or an s3://bucket/key URI (downloaded first) into `out_dir`."""
    if not source.startswith("s3://"):
        return ingest(Path(source), out_dir, image_root=image_root, attribute_map=attribute_map)
    from productgen.storage import S3Settings, download_uri, open_store  # boto3 only when S3 is used

    detect_format(source)  # fail on the name before any download
    settings = s3 or S3Settings()
    bucket = source[len("s3://") :].split("/", 1)[0]
    with tempfile.TemporaryDirectory(prefix="productgen-ingest-") as tmp:
        local = download_uri(source, Path(tmp) / Path(source).name, settings)
        root = image_root or source.rsplit("/", 1)[0] + "/"
        map_name = str(attribute_map) if attribute_map else None
        pinned = None if attribute_map else _s3_attribute_map(source, open_store(f"s3://{bucket}", settings))
        if pinned:  # the map beside the catalog in the bucket, bounded like a local one
            key, head = pinned
            map_name = f"s3://{bucket}/{key}"
            if head.size > MAX_MAP_BYTES:
                raise CatalogFileError(f"{map_name}: over {MAX_MAP_BYTES:,} bytes; a mapping file is small")
            attribute_map = download_uri(map_name, Path(tmp) / "maps" / Path(key).name, settings)
        return ingest(
            local, out_dir, source=source, image_root=root, attribute_map=attribute_map, map_name=map_name
        )

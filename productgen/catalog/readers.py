"""Stream catalog files (CSV, CSV.gz, JSON Lines, Parquet) as batches of raw records.

Readers parse and nothing else: values come out as written (text, or the Parquet column's own
type), each record with the line (CSV, JSONL) or row (Parquet) where it starts. A record that
cannot be parsed becomes a `BrokenRecord` and the reader goes on with the next one. Problems with
the whole file raise `CatalogFileError` with one line naming the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "BATCH_ROWS",
    "MAX_LINE",
    "BrokenRecord",
    "CatalogFileError",
    "RawBatch",
    "detect_format",
    "read_batches",
]

BATCH_ROWS = 65_536
MAX_LINE = 1 << 20  # characters; a catalog line is a few hundred (titles are at most 1,000)
_MAX_RECORD_LINES = 200  # a quoted field spanning more lines than this is an unterminated quote
_MAX_BROKEN_TEXT = 2_000
_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


class CatalogFileError(ValueError):
    """The whole file cannot be used (unreadable, empty, wrong format, missing column, ...)."""


class _LineTooLong(csv.Error):
    """A physical line over MAX_LINE characters: its record is broken, memory stays bounded."""


def _read_line(stream: io.TextIOBase) -> tuple[str, bool]:
    """The next line, at most MAX_LINE characters kept; (text, too long). The rest is skipped."""
    text = stream.readline(MAX_LINE + 1)
    if len(text) <= MAX_LINE or text.endswith("\n"):
        return text, False
    while (rest := stream.readline(MAX_LINE)) and not rest.endswith("\n"):
        pass  # read past the rest of the line in bounded pieces
    return text[:_MAX_BROKEN_TEXT], True


def _too_long(line: int) -> str:
    return f"cannot parse the record: line {line} is longer than {MAX_LINE:,} characters"


@dataclass(frozen=True)
class BrokenRecord:
    """A record that could not be parsed: where it starts, why, and its text."""

    line: int
    reason: str
    text: str


@dataclass
class RawBatch:
    """Up to BATCH_ROWS parsed records, column-wise, plus the broken ones met on the way."""

    lines: list[int]
    columns: dict[str, list[object]] | pa.Table  # header name as written -> values
    broken: list[BrokenRecord] = field(default_factory=list)


def detect_format(name: str) -> tuple[str, bool]:
    """('csv' | 'jsonl' | 'parquet', gzipped) from a file name; CatalogFileError if unknown."""
    lower = name.lower()
    gzipped = lower.endswith(".gz")
    stem = lower[:-3] if gzipped else lower
    for suffix, fmt in _FORMATS.items():
        if stem.endswith(suffix) and not (gzipped and fmt == "parquet"):
            return fmt, gzipped
    raise CatalogFileError(
        f"{name}: unknown catalog format; name the file .csv, .csv.gz, .jsonl, .jsonl.gz or .parquet"
    )


def _open_text(path: Path, gzipped: bool) -> io.TextIOBase:
    """Text stream that never fails on bad bytes: they become surrogates, found per record."""
    with path.open("rb") as f:
        head = f.read(4)
    if not head:
        raise CatalogFileError(f"{path}: the file is empty; export the catalog again")
    if gzipped and head[:2] != b"\x1f\x8b":
        raise CatalogFileError(f"{path}: not a gzip file although its name ends in .gz")
    if not gzipped and head[:2] == b"\x1f\x8b":
        raise CatalogFileError(f"{path}: this is gzip data; name the file with .gz at the end")
    if head == b"PAR1":
        raise CatalogFileError(f"{path}: this is a Parquet file; name it .parquet")
    raw = gzip.open(path, "rb") if gzipped else path.open("rb")  # noqa: SIM115 (closed by the wrapper)
    # utf-8-sig drops a byte-order mark; newline="" keeps \r\n inside quoted fields for csv.
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _has_bad_bytes(text: str) -> bool:
    return not text.isascii() and any("\udc80" <= ch <= "\udcff" for ch in text)


def _broken(line: int, reason: str, text: str) -> BrokenRecord:
    """A broken record whose text is safe to store: undecodable bytes shown as \\xNN, long text cut."""
    printable = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return BrokenRecord(line, reason, printable[:_MAX_BROKEN_TEXT])


def _bad_byte(text: str) -> str:
    ch = next(ch for ch in text if "\udc80" <= ch <= "\udcff")
    return f"0x{ord(ch) - 0xDC00:02x}"


class _Lines:
    """Physical lines with a cursor that can step back to re-read after a broken record."""

    def __init__(self, stream: io.TextIOBase) -> None:
        self._stream = stream
        self._pending: list[str] = []  # lines given back, to be read again
        self.taken: list[str] = []  # lines of the record being parsed
        self.line = 0  # number of the last line handed out (1-based)

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        text, too_long = self._pending.pop() if self._pending else _read_line(self._stream)
        if not text:
            raise StopIteration
        if len(self.taken) >= _MAX_RECORD_LINES:
            self._pending.append((text, too_long))
            raise csv.Error(f"a quoted field runs over {_MAX_RECORD_LINES} lines")
        self.line += 1
        self.taken.append(text)
        if too_long:
            raise _LineTooLong(_too_long(self.line))
        return text

    def start_record(self) -> int:
        self.taken = []
        return self.line + 1

    def give_back_all_but_first(self) -> None:
        """Rewind to just after the first line of the current record."""
        rest = self.taken[1:]
        self._pending.extend((text, False) for text in reversed(rest))
        self.line -= len(rest)
        self.taken = self.taken[:1]


def _sniff_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    return max(counts, key=lambda d: (counts[d], d == ","))


def _csv_batches(path: Path, gzipped: bool) -> Iterator[RawBatch]:
    try:
        stream = _open_text(path, gzipped)
        lines = _Lines(stream)
        header_line = next(lines, "")
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise CatalogFileError(f"{path}: cannot be read ({e})") from None
    except _LineTooLong:
        raise CatalogFileError(f"{path}: the header line is longer than {MAX_LINE:,} characters") from None
    if not header_line.strip():
        raise CatalogFileError(f"{path}: no header line; the first line must name the columns")
    if _has_bad_bytes(header_line):
        raise CatalogFileError(f"{path}: the header is not UTF-8 text; save the file as UTF-8")
    delimiter = _sniff_delimiter(header_line)
    header = next(csv.reader([header_line], delimiter=delimiter, strict=True))
    width = len(header)
    batch = RawBatch([], {name: [] for name in header})
    values = list(batch.columns.values())

    def reader() -> Iterator[list[str]]:
        return csv.reader(lines, delimiter=delimiter, strict=True)

    records = reader()
    while True:
        start = lines.start_record()
        try:
            row = next(records)
        except StopIteration:
            break
        except (csv.Error, EOFError, gzip.BadGzipFile) as e:
            if isinstance(e, EOFError | gzip.BadGzipFile):
                raise CatalogFileError(f"{path}: the gzip stream is damaged at line {start} ({e})") from None
            if isinstance(e, _LineTooLong):  # the record and its over-long line are dropped whole
                batch.broken.append(_broken(start, str(e), lines.taken[0]))
                records = reader()
                continue
            spans_lines = len(lines.taken) > 1 or "end of data" in str(e)
            reason = (
                "unterminated quote (the quote opened on this line never closes)" if spans_lines else str(e)
            )
            batch.broken.append(_broken(start, f"cannot parse the record: {reason}", lines.taken[0]))
            lines.give_back_all_but_first()
            records = reader()
            continue
        if not row or (len(row) == 1 and not row[0].strip() and width > 1):
            continue  # blank line: not a record
        text = "".join(lines.taken)
        if _has_bad_bytes(text):
            batch.broken.append(
                _broken(start, f"bytes that are not UTF-8 ({_bad_byte(text)}); save the file as UTF-8", text)
            )
            continue
        if len(row) != width:
            reason = f"expected {width} fields, found {len(row)}"
            if len(lines.taken) > 1:  # a stray quote swallowed the next lines: re-read them
                reason += " (an unterminated quote?)"
                lines.give_back_all_but_first()
                records = reader()
            batch.broken.append(_broken(start, f"cannot parse the record: {reason}", lines.taken[0]))
            continue
        batch.lines.append(start)
        for column, value in zip(values, row, strict=True):
            column.append(value)
        if len(batch.lines) >= BATCH_ROWS:
            yield batch
            batch = RawBatch([], {name: [] for name in header})
            values = list(batch.columns.values())
    stream.close()
    yield batch


def _jsonl_batches(path: Path, gzipped: bool) -> Iterator[RawBatch]:
    try:
        stream = _open_text(path, gzipped)
    except OSError as e:
        raise CatalogFileError(f"{path}: cannot be read ({e})") from None
    batch = RawBatch([], {})
    line_no = 0
    try:
        while True:
            text, too_long = _read_line(stream)
            if not text:
                break
            line_no += 1
            if too_long:
                batch.broken.append(_broken(line_no, _too_long(line_no), text))
                continue
            if not text.strip():
                continue
            if _has_bad_bytes(text):
                reason = f"bytes that are not UTF-8 ({_bad_byte(text)}); save the file as UTF-8"
                batch.broken.append(_broken(line_no, reason, text))
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                reason = f"cannot parse the record: broken JSON ({e.msg} at column {e.colno})"
                batch.broken.append(_broken(line_no, reason, text))
                continue
            except RecursionError:
                reason = "cannot parse the record: JSON nested deeper than the parser goes"
                batch.broken.append(_broken(line_no, reason, text))
                continue
            if not isinstance(record, dict):
                reason = "cannot parse the record: a JSON line must be an object"
                batch.broken.append(_broken(line_no, reason, text))
                continue
            n = len(batch.lines)
            for name, value in record.items():
                column = batch.columns.setdefault(name, [None] * n)
                column.append(value if value is None or isinstance(value, str) else _json_text(value))
            batch.lines.append(line_no)
            for column in batch.columns.values():
                if len(column) == n:
                    column.append(None)
            if len(batch.lines) >= BATCH_ROWS:
                yield batch
                batch = RawBatch([], {})
    except (EOFError, gzip.BadGzipFile) as e:
        raise CatalogFileError(f"{path}: the gzip stream is damaged near line {line_no + 1} ({e})") from None
    finally:
        stream.close()
    yield batch


def _json_text(value: object) -> str:
    # numbers stay as written (an integer sku 123 -> "123"); nested values keep their JSON
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _parquet_batches(path: Path) -> Iterator[RawBatch]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise CatalogFileError(f"{path}: not a readable Parquet file ({e})") from None
    row = 1
    for record_batch in parquet.iter_batches(batch_size=BATCH_ROWS):
        n = record_batch.num_rows
        yield RawBatch(list(range(row, row + n)), pa.Table.from_batches([record_batch]))
        row += n
    if row == 1:
        yield RawBatch([], pa.table({name: pa.array([], pa.string()) for name in parquet.schema_arrow.names}))


def read_batches(path: Path, name: str | None = None) -> Iterator[RawBatch]:
    """Stream the catalog at `path` (format from `name`, default the path's own name)."""
    fmt, gzipped = detect_format(name or path.name)
    if not path.is_file():
        raise CatalogFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CatalogFileError(f"{path}: the file is empty; export the catalog again")
    if fmt == "csv":
        return _csv_batches(path, gzipped)
    if fmt == "jsonl":
        return _jsonl_batches(path, gzipped)
    return _parquet_batches(path)

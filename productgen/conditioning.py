"""What the generator is conditioned on, built the same way for catalog rows and free-text prompts.

A condition vector concatenates, in a fixed order, the parts named by `ConditionConfig.parts`:

    description  text embedding of the whole description                (D)
    color        text embedding of the colour read                        (D)
    category     text embedding of the category read                      (D)
    rgb          sRGB of the colour read, in [-1, 1]                      (3)

D is the text model's width (384 for all-MiniLM-L6-v2), read from the snapshot's encoding.
Colour and category are what productgen.attributes read, from a row's fields or title or from a
prompt's words alike; a value the model never saw is replaced by the nearest one it did. They
exist beside the description because the title's embedding alone controls colour and category
poorly (see README, "Text control").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from productgen.attributes import AttributeReader
from productgen.colors import rgb_to_lab, rgb_to_unit
from productgen.snapshot import Snapshot
from productgen.text import TextEncoder, description_text

__all__ = [
    "PARTS",
    "ConditionConfig",
    "Conditioner",
    "Vocabulary",
    "conditions_from_reads",
    "prompt_conditions",
    "snapshot_conditions",
]

PARTS = ("description", "color", "category", "rgb")


@dataclass(frozen=True)
class ConditionConfig:
    """Which parts make the condition vector, and the text embedding size."""

    parts: tuple[str, ...] = PARTS
    text_dim: int = 384

    def __post_init__(self) -> None:
        unknown = [p for p in self.parts if p not in PARTS]
        if unknown or not self.parts:
            raise ValueError(f"conditioning parts must be among {', '.join(PARTS)}; got {list(self.parts)}")

    @classmethod
    def for_snapshot(cls, snapshot: Snapshot, parts: Sequence[str] = PARTS) -> ConditionConfig:
        """The config for `parts` over a snapshot's embeddings: their width is the text model's."""
        return cls(parts=tuple(parts), text_dim=snapshot.encoding().dim)

    @property
    def dim(self) -> int:
        return sum(self.width(part) for part in self.parts)

    def width(self, part: str) -> int:
        return 3 if part == "rgb" else self.text_dim

    def span(self, part: str) -> slice:
        """Where `part` sits in a condition vector."""
        start = sum(self.width(p) for p in self.parts[: self.parts.index(part)])
        return slice(start, start + self.width(part))


@dataclass(frozen=True)
class Vocabulary:
    """The attribute values a model was trained on, with their embeddings and colours.

    A value a model never saw speaks through the nearest one it did: a category by its text
    embedding, a colour by how it looks (CIELAB). The explicit RGB part keeps the exact colour.
    """

    categories: list[str]
    colors: list[str]
    category_embeddings: np.ndarray  # (len(categories), text_dim)
    color_embeddings: np.ndarray | None = None  # (len(colors), text_dim); None in older models
    color_rgb: np.ndarray | None = None  # (len(colors), 3) uint8

    def labels(self, values: Sequence[str | None], attribute: str) -> np.ndarray:
        """Class index per value; -1 for missing or unseen values."""
        index = {v: i for i, v in enumerate(self.categories if attribute == "category" else self.colors)}
        return np.array([index.get(v, -1) if v else -1 for v in values], np.int64)

    @classmethod
    def from_rows(
        cls, reads: pd.DataFrame, category_vectors: np.ndarray, colour_vectors: np.ndarray
    ) -> Vocabulary:
        """The values `reads` hold, each with the embedding and colour of its first row."""
        first = {
            attribute: {v: i for i, v in reversed(list(enumerate(reads[attribute]))) if v}
            for attribute in ("category", "color")
        }
        categories, colors = sorted(first["category"]), sorted(first["color"])
        width = category_vectors.shape[1]

        def rows_of(vectors: np.ndarray, names: list[str], attribute: str) -> np.ndarray:
            picked = [vectors[first[attribute][n]] for n in names]
            return np.stack(picked).astype(np.float32) if picked else np.zeros((0, width), np.float32)

        hexes = [reads["color_hex"].iloc[first["color"][n]] for n in colors]
        return cls(
            categories,
            colors,
            rows_of(category_vectors, categories, "category"),
            rows_of(colour_vectors, colors, "color"),
            np.array([_hex_rgb(h) for h in hexes], np.uint8).reshape(-1, 3),
        )


def _hex_rgb(code: str | None) -> tuple[int, int, int] | None:
    return None if not code else (int(code[1:3], 16), int(code[3:5], 16), int(code[5:7], 16))


def _category_part(reads: pd.DataFrame, vectors: np.ndarray, vocabulary: Vocabulary) -> np.ndarray:
    """Each row's category embedding: its own value's when known to the model, else the nearest known."""
    if not vocabulary.categories:
        return vectors
    index = vocabulary.labels(reads["category"].tolist(), "category")
    unseen = (index < 0) & reads["category"].notna().to_numpy()
    if unseen.any():
        index[unseen] = (vectors[unseen] @ vocabulary.category_embeddings.T).argmax(1)
    out = vectors.copy()
    out[index >= 0] = vocabulary.category_embeddings[index[index >= 0]]
    return out


def _colour_part(reads: pd.DataFrame, vectors: np.ndarray, vocabulary: Vocabulary) -> np.ndarray:
    """Each row's colour embedding: its own colour's when known to the model, else the nearest-looking."""
    if not vocabulary.colors or vocabulary.color_embeddings is None or vocabulary.color_rgb is None:
        return vectors
    index = vocabulary.labels(reads["color"].tolist(), "color")
    rgb = [_hex_rgb(h) for h in reads["color_hex"]]
    unseen = np.flatnonzero((index < 0) & np.array([c is not None for c in rgb], bool))
    if len(unseen):
        known = rgb_to_lab(vocabulary.color_rgb.astype(np.float64))
        asked = rgb_to_lab(np.array([rgb[i] for i in unseen], np.float64))
        index[unseen] = ((asked[:, None, :] - known[None]) ** 2).sum(-1).argmin(1)
    out = vectors.copy()
    out[index >= 0] = vocabulary.color_embeddings[index[index >= 0]]
    return out


def conditions_from_reads(
    config: ConditionConfig,
    vocabulary: Vocabulary,
    reads: pd.DataFrame,
    description: np.ndarray,
    category_vectors: np.ndarray,
    colour_vectors: np.ndarray,
) -> np.ndarray:
    """(N, config.dim) condition vectors: the one assembly for catalog rows and prompts alike.

    reads: the attribute reader's output (READ_COLUMNS); the vectors: embeddings of the row's
    description and of the category and colour names read (zeros where none was read).
    A row with no colour said gets zero colour parts, which training shows the model on purpose
    (`TrainConfig.color_dropout`): "any colour", never an input it never saw.
    """
    parts = {
        "description": description,
        "category": _category_part(reads, np.nan_to_num(category_vectors), vocabulary),
        "color": _colour_part(reads, np.nan_to_num(colour_vectors), vocabulary),
        "rgb": np.stack([rgb_to_unit(_hex_rgb(h)) for h in reads["color_hex"]]).reshape(-1, 3),
    }
    conditions = np.concatenate([parts[name] for name in config.parts], axis=1).astype(np.float32)
    assert conditions.shape == (len(reads), config.dim), conditions.shape
    return conditions


def _check_width(snapshot: Snapshot, config: ConditionConfig) -> None:
    encoding = snapshot.encoding()
    if encoding.dim != config.text_dim:
        raise ValueError(
            f"{snapshot.root}: encoded by {encoding.model} ({encoding.dim} wide), but the model expects "
            f"{config.text_dim}-wide embeddings; encode the snapshot with the model's text model"
        )


def snapshot_conditions(
    snapshot: Snapshot, config: ConditionConfig, vocabulary: Vocabulary | None = None
) -> tuple[np.ndarray, pd.DataFrame, Vocabulary]:
    """Condition vectors (N, config.dim) for every valid row, the rows with what was read, the vocabulary.

    vocabulary: the model's (render); None: the rows' own (training), so every value is known.
    The rows' `category` and `color` are the values read (READ_COLUMNS beside them); the
    merchant's own fields stay as `category_field` and `color_field`.
    """
    _check_width(snapshot, config)
    rows, reads = snapshot.read_rows(), snapshot.read_reads()
    category_vectors = np.nan_to_num(snapshot.read_embeddings("category_embedding"))
    colour_vectors = np.nan_to_num(snapshot.read_embeddings("color_embedding"))
    vocabulary = vocabulary or Vocabulary.from_rows(reads, category_vectors, colour_vectors)
    conditions = conditions_from_reads(
        config, vocabulary, reads, snapshot.read_embeddings("embedding"), category_vectors, colour_vectors
    )
    fields = {f"{name}_field": rows[name] if name in rows.columns else None for name in ("category", "color")}
    rows = rows.drop(columns=["category", "color"], errors="ignore").assign(**fields)
    return conditions, pd.concat([rows, reads], axis=1), vocabulary


def prompt_conditions(
    texts: Sequence[str], encoder: TextEncoder, vocabulary: Vocabulary, config: ConditionConfig
) -> tuple[np.ndarray, pd.DataFrame]:
    """Condition vectors for free-text prompts, and what was read from each (READ_COLUMNS)."""
    reads = AttributeReader(encoder=encoder).read(list(texts))

    def named(values: pd.Series) -> np.ndarray:
        names = sorted({v for v in values if v})
        vectors = dict(zip(names, encoder.encode(names), strict=True)) if names else {}
        zero = np.zeros(config.text_dim, np.float32)
        return np.stack([vectors[v] if v else zero for v in values]).reshape(-1, config.text_dim)

    described = zip(texts, reads["category"], strict=True)
    description = encoder.encode([description_text(t, None, None, category) for t, category in described])
    conditions = conditions_from_reads(
        config, vocabulary, reads, description, named(reads["category"]), named(reads["color"])
    )
    return conditions, reads


@dataclass(frozen=True)
class Conditioner:
    """Reads what a model is conditioned on from catalog rows or free text: one reader for both.

    Rows come with their snapshot's stored embeddings; prompts are encoded here, with colour and
    category read from their words against the training vocabulary.
    """

    config: ConditionConfig
    vocabulary: Vocabulary

    def for_snapshot(self, snapshot: Snapshot) -> tuple[np.ndarray, pd.DataFrame]:
        """(N, C) conditions for every valid row of `snapshot`, and the rows with what was read."""
        conditions, rows, _ = snapshot_conditions(snapshot, self.config, self.vocabulary)
        return conditions, rows

    def stream(self, snapshot: Snapshot, positions: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(positions, (n, C) conditions) for the sorted row `positions`, a window of rows at a time.

        The same vectors `for_snapshot` gives those rows, in memory bounded by one window.
        """
        _check_width(snapshot, self.config)
        columns = ["embedding", "category_embedding", "color_embedding"]
        for at, reads, vectors in snapshot.stream_encoded(positions, columns):
            conditions = conditions_from_reads(
                self.config, self.vocabulary, reads, vectors["embedding"],
                np.nan_to_num(vectors["category_embedding"]), np.nan_to_num(vectors["color_embedding"]),
            )  # fmt: skip
            yield at, conditions

    def for_prompts(self, texts: Sequence[str], encoder: TextEncoder) -> tuple[np.ndarray, pd.DataFrame]:
        """(N, C) conditions for free-text prompts, and what was read from each (READ_COLUMNS)."""
        return prompt_conditions(texts, encoder, self.vocabulary, self.config)

"""What the generator is conditioned on, built the same way for catalog rows and free-text prompts.

A condition vector concatenates, in a fixed order, the parts named by `ConditionConfig.parts`:

    description  text embedding of the whole description                (D)
    color        text embedding of the colour field alone                (D)
    category     text embedding of the category field alone              (D)
    rgb          explicit colour from the colour-name table, in [-1, 1]  (3)

D is the text model's width (384 for all-MiniLM-L6-v2), read from the snapshot's encoding.
A missing part is zeros. Per-field embeddings and the explicit colour exist because the title's
embedding alone controls colour and category poorly (see README, "Text control"). For a prompt
with no fields, the colour comes from the colour words it contains and the category from the
nearest known category name in embedding space.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from productgen.colors import colour_rgb, find_colour, nearest_name, rgb_to_unit
from productgen.snapshot import Snapshot
from productgen.text import TextEncoder

__all__ = [
    "PARTS",
    "ConditionConfig",
    "Conditioner",
    "Vocabulary",
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
    """The structured attribute values seen in training, with their embeddings (for prompts)."""

    categories: list[str]
    colors: list[str]
    category_embeddings: np.ndarray  # (len(categories), text_dim)

    def labels(self, values: Sequence[str | None], attribute: str) -> np.ndarray:
        """Class index per value; -1 for missing or unseen values."""
        index = {v: i for i, v in enumerate(self.categories if attribute == "category" else self.colors)}
        return np.array([index.get(v, -1) if v else -1 for v in values], np.int64)


def _rgb_of(color: str | None, title: str) -> np.ndarray:
    rgb = colour_rgb(color) if color else None
    if rgb is None:
        found = find_colour(title)
        rgb = found[1] if found else None
    return rgb_to_unit(rgb)


def _known_word(found: tuple[str, tuple[int, int, int]] | None, vocabulary: Vocabulary) -> str | None:
    """The catalog colour word whose embedding stands for a colour the prompt names.

    A hex code has no useful text embedding, and a word the catalog never used ("scarlet") has
    one the generator never saw: both speak through the nearest known colour (by sRGB). The
    explicit RGB part keeps the exact colour either way.
    """
    if not found or found[0] in vocabulary.colors:
        return found[0] if found else None
    known = {name: rgb for name in vocabulary.colors if (rgb := colour_rgb(name))}
    return nearest_name(found[1], known) if known else found[0]


def _without_colour(text: str, found: tuple[str, tuple[int, int, int]] | None) -> str:
    """The prompt without its colour words, so they do not pull the category match."""
    if not found:
        return text
    pattern = r"[\s-]+".join(re.escape(word) for word in found[0].split())
    return " ".join(re.sub(pattern, " ", text, flags=re.IGNORECASE).split()) or text


def _assemble(config: ConditionConfig, parts: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([parts[name] for name in config.parts], axis=1).astype(np.float32)


def snapshot_conditions(snapshot: Snapshot, config: ConditionConfig) -> tuple[np.ndarray, pd.DataFrame]:
    """Condition vectors (N, config.dim) for every valid row, and those rows' fields."""
    rows = snapshot.read_rows()
    encoding = snapshot.encoding()
    if encoding.dim != config.text_dim:
        raise ValueError(
            f"{snapshot.root}: encoded by {encoding.model} ({encoding.dim} wide), but the model expects "
            f"{config.text_dim}-wide embeddings; encode the snapshot with the model's text model"
        )
    parts = {}
    for name, column in (
        ("description", "embedding"),
        ("color", "color_embedding"),
        ("category", "category_embedding"),
    ):
        if name in config.parts:
            parts[name] = np.nan_to_num(snapshot.read_embeddings(column))
    if "rgb" in config.parts:
        colours = rows["color"] if "color" in rows.columns else [None] * len(rows)
        parts["rgb"] = np.stack([_rgb_of(c, t) for c, t in zip(colours, rows["title"], strict=True)])
    conditions = _assemble(config, parts)
    assert conditions.shape == (len(rows), config.dim), conditions.shape
    return conditions, rows


def prompt_conditions(
    texts: Sequence[str], encoder: TextEncoder, vocabulary: Vocabulary, config: ConditionConfig
) -> tuple[np.ndarray, list[dict[str, str | None]]]:
    """Condition vectors for free-text prompts, and what was read from each (colour, category)."""
    description = encoder.encode(list(texts))  # (N, D)
    colours = [find_colour(t) for t in texts]
    words = [_known_word(c, vocabulary) for c in colours]
    colour_names = sorted({w for w in words if w})
    colour_vectors = (
        dict(zip(colour_names, encoder.encode(colour_names), strict=True)) if colour_names else {}
    )
    zero = np.zeros(config.text_dim, np.float32)
    category_idx = []
    if vocabulary.categories:
        shapes = encoder.encode([_without_colour(t, c) for t, c in zip(texts, colours, strict=True)])
        category_idx = (shapes @ vocabulary.category_embeddings.T).argmax(1)
    parts = {
        "description": description,
        "color": np.stack([colour_vectors[w] if w else zero for w in words]),
        "category": np.stack(
            [vocabulary.category_embeddings[i] for i in category_idx]
            if vocabulary.categories
            else [zero] * len(texts)
        ),
        "rgb": np.stack([rgb_to_unit(c[1] if c else None) for c in colours]),
    }
    read = [
        {
            "colour": c[0] if c else None,
            "category": vocabulary.categories[i] if vocabulary.categories else None,
        }
        for c, i in zip(colours, category_idx if vocabulary.categories else [0] * len(texts), strict=True)
    ]
    return _assemble(config, parts), read


@dataclass(frozen=True)
class Conditioner:
    """Reads what a model is conditioned on from catalog rows or free text: one reader for both.

    Rows come with their snapshot's stored embeddings; prompts are encoded here, with colour and
    category read from their words against the training vocabulary.
    """

    config: ConditionConfig
    vocabulary: Vocabulary

    def for_snapshot(self, snapshot: Snapshot) -> tuple[np.ndarray, pd.DataFrame]:
        """(N, C) conditions for every valid row of `snapshot`, and the rows."""
        return snapshot_conditions(snapshot, self.config)

    def for_prompts(
        self, texts: Sequence[str], encoder: TextEncoder
    ) -> tuple[np.ndarray, list[dict[str, str | None]]]:
        """(N, C) conditions for free-text prompts, and the colour and category read from each."""
        return prompt_conditions(texts, encoder, self.vocabulary, self.config)

"""Reading a product's attributes (category, colour) from whatever a row or a prompt has.

One reader serves catalog rows, free-text prompts, training and evaluation. For each attribute it
tries, in order, and records which step answered (`source`) and how sure it is (`confidence`):

    map      a mapping the merchant pinned ("Stone -> grey")                       1.0
    field    the row's own field: a known colour name (31,881 names, see colors),
             a category noun in a taxonomy path read right to left               1.0 / 0.95
             or a noun WordNet places under a category ("Galoshes": overshoe)    0.8
    title    a colour name or category noun in the title (or prompt)               0.9
             or a noun WordNet places under a category                           0.75
    close    a word ending in a known noun ("ballgown")                            0.85
             or spelt nearly like one ("sneakrs", "jandals"); 0.8 x similarity   < 0.8
    nearest  the known value whose text embedding is nearest the field (or the
             title without its colour words); confidence = cosine similarity     < 1.0
    none     nothing to read from (a row with no colour anywhere)                  0.0

Categories are read into the product's category set (`CATEGORY_NOUNS`: a category and the nouns
that name it); a pinned category may name one outside it. Colours are read as a name and its sRGB.
WordNet (82,115 nouns; productgen.wordnet) is used where Debian's wordnet-base is installed; the
nearest step needs the text model. Without either, what the steps before cannot read is `none`.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from productgen.catalog.schema import CATEGORIES
from productgen.colors import colour_names, colour_rgb, field_colour, find_colour, without_colours
from productgen.wordnet import WordNet, category_anchors, group_anchors

if TYPE_CHECKING:
    from productgen.text import TextEncoder

__all__ = [
    "CATEGORY_NOUNS",
    "LOW_CONFIDENCE",
    "MAP_FILE_NAMES",
    "MAX_MAP_BYTES",
    "READ_COLUMNS",
    "SOURCES",
    "AttributeMap",
    "AttributeMapError",
    "AttributeReader",
    "ReadTally",
    "describe_read",
    "find_attribute_map",
    "tally_lines",
]

# The product's categories (Fashion-MNIST's ten) and nouns that name them. Plurals and hyphens
# are normalised before matching, so each noun is listed once.
CATEGORY_NOUNS: dict[str, tuple[str, ...]] = {
    name: tuple(dict.fromkeys(nouns + extra))
    for (name, _, nouns), extra in zip(
        CATEGORIES,
        (
            ("tee", "tshirt", "top", "tank top", "tank", "camisole", "cami", "crop top", "polo", "polo shirt",
             "vest top", "short sleeve top", "jersey top", "long sleeve top", "longsleeve", "graphic tee",
             "baby tee", "muscle tee", "tube top", "bandeau", "halter top", "halterneck", "bodysuit",
             "rash guard", "peplum top", "shell top", "racerback"),
            ("pants", "jeans", "slacks", "leggings", "joggers", "sweatpants", "trackpants", "track pants",
             "cargo pants", "cargos", "culottes", "shorts", "bottoms", "denim jeans", "wide leg", "chinos",
             "chino", "capris", "capri pants", "cords", "corduroys", "flares", "bell bottoms", "dungarees",
             "overalls", "jeggings", "jodhpurs", "breeches", "sweats", "tracksuit bottoms", "jog pants",
             "yoga pants", "lounge pants", "pyjama bottoms", "cigarette pants", "bootcut", "skinnies"),
            ("sweater", "jumper", "sweatshirt", "hoodie", "hoody", "cardigan", "knitwear", "knit", "fleece",
             "turtleneck", "roll neck", "crewneck", "crew neck sweater", "knit jersey", "cardi", "polo neck",
             "cable knit", "fair isle", "quarter zip", "half zip", "zip hoodie", "knitted top", "sweatshirts",
             "pullovers", "sweater vest"),
            ("gown", "sundress", "frock", "maxi dress", "mini dress", "kaftan", "pinafore", "sheath dress",
             "slip dress", "jumpsuit", "romper", "playsuit", "evening dress", "maxi", "midi", "skirt",
             "miniskirt", "shirtdress", "wrap dress", "shift dress", "bodycon", "cheongsam", "dirndl",
             "caftan", "abaya", "tea dress", "skater dress", "prom dress", "cocktail dress", "sarong"),
            ("jacket", "parka", "blazer", "anorak", "windbreaker", "raincoat", "trench", "trench coat",
             "overcoat", "puffer", "gilet", "bomber", "peacoat", "duffle coat", "outerwear", "pea coat",
             "topcoat", "greatcoat", "trenchcoat", "poncho", "cape", "cloak", "shacket", "bodywarmer",
             "body warmer", "puffa", "fleece jacket", "down jacket", "coatigan", "waxed jacket", "car coat"),
            ("slides", "flip flops", "flip flop", "espadrilles", "mules", "sliders", "gladiators",
             "gladiator sandals", "slip ons", "open toe", "jellies", "slingbacks", "slingback", "heels",
             "high heels", "stilettos", "wedge sandals", "pool slides", "zori", "geta", "strappy sandals",
             "fisherman sandals", "sport sandals"),
            ("blouse", "button down", "button up", "oxford shirt", "flannel shirt", "overshirt", "tunic",
             "dress shirt", "shirts", "kurta", "dashiki", "camp shirt", "bowling shirt", "work shirt",
             "blouses"),
            ("trainers", "running shoes", "plimsolls", "kicks", "tennis shoes", "runners",
             "high tops", "athletic shoes", "skate shoes", "loafers", "low tops", "basketball shoes",
             "cross trainers", "gym shoes", "walking shoes", "canvas shoes", "deck shoes", "boat shoes",
             "moccasins", "brogues", "ballet flats", "ballerinas", "slip on sneakers", "sneaker"),
            ("handbag", "tote", "tote bag", "purse", "satchel", "clutch", "backpack", "rucksack",
             "crossbody", "shopper", "shoulder bag", "holdall", "duffel bag", "pouch", "bucket bag", "bumbag",
             "bum bag", "fanny pack", "belt bag", "briefcase", "laptop bag", "duffle", "duffel", "gym bag",
             "hobo bag", "wallet", "wristlet", "pochette", "knapsack", "daypack", "sling bag", "beach bag",
             "camera bag", "saddle bag", "drawstring bag", "bags"),
            ("boots", "boot", "booties", "bootie", "chelsea boots", "chukka", "combat boots", "lace up boots",
             "short boots", "wellies", "wellingtons", "hiking boots", "chukkas", "chelseas", "desert boots",
             "snow boots", "cowboy boots", "biker boots", "work boots", "rain boots", "rainboots",
             "western boots", "sock boots", "duck boots"),
        ),
        strict=True,
    )
}  # fmt: skip
# words a taxonomy path's parents use for a group of categories; WordNet adds the rest
GROUP_NOUNS: dict[str, tuple[str, ...]] = {
    "footwear": ("footwear", "shoes", "footgear"),
    "bags": ("bags", "accessories", "luggage", "handbags"),
    "apparel": ("clothing", "apparel", "clothes", "garments", "menswear", "womenswear"),
}
_GROUP_OF = {name: group for name, group, _ in CATEGORIES}
READ_COLUMNS = [
    "category", "category_source", "category_confidence",
    "color", "color_hex", "color_source", "color_confidence",
]  # fmt: skip
SOURCES = ("map", "field", "title", "close", "nearest", "none")
LOW_CONFIDENCE = 0.5  # reads below this are listed for a person to check (and pin)
_CLOSE_SPELLING = 0.8  # difflib ratio: "sneakrs" / "sneaker" = 0.92, "trainer" / "ringer" = 0.77
_PATH_SEPARATORS = re.compile(r"\s*(?:>|/|\||»|›|\\|::)\s*")
# where a title's noun phrase ends: its head noun is the last category noun before these
_PHRASE_END = re.compile(r"\b(?:with|for|by|in|from|featuring|and|of)\b|[,;:()\[\]|–—]|\s-\s")
MAP_FILE_NAMES = ("attribute-map.yaml", "attribute-map.yml", "attribute-map.csv")  # next to a catalog
MAX_MAP_BYTES, _MAX_MAP_ENTRIES, _MAX_MAP_TEXT = 1_000_000, 10_000, 200


class AttributeMapError(ValueError):
    """A mapping file that cannot be used; the message names the file, entry and what to do."""


def _key(text: str) -> str:
    """'Ladies > Footwear >  Boots ' -> 'ladies > footwear > boots': how pinned values match."""
    return " ".join(text.casefold().split())


def _singular(word: str) -> str:
    if word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def _words(text: str) -> list[str]:
    return [_singular(w) for w in re.findall(r"[a-z0-9]+", text.casefold().replace("'s", ""))]


@dataclass(frozen=True)
class AttributeMap:
    """Values a merchant pinned: colour field value -> colour, category field value -> category."""

    color: Mapping[str, str] = field(default_factory=dict)
    category: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: Path) -> AttributeMap:
        """A YAML file (`color_map:` / `category_map:` of value: meaning) or a CSV (attribute,value,means)."""
        if path.is_symlink() or not path.is_file():
            raise AttributeMapError(f"{path}: not a regular file; give the mapping file itself")
        raw = path.read_bytes()[: MAX_MAP_BYTES + 1]
        if len(raw) > MAX_MAP_BYTES:
            raise AttributeMapError(f"{path}: over {MAX_MAP_BYTES:,} bytes; a mapping file is small")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise AttributeMapError(f"{path}: not UTF-8 text; save the mapping file as UTF-8") from None
        entries = _csv_entries(path, text) if path.suffix.lower() == ".csv" else _yaml_entries(path, text)
        if len(entries) > _MAX_MAP_ENTRIES:
            raise AttributeMapError(f"{path}: {len(entries):,} entries; at most {_MAX_MAP_ENTRIES:,}")
        pins: dict[str, dict[str, str]] = {"color": {}, "category": {}}
        for where, attribute, value, means in entries:
            for name, text_ in (("value", value), ("meaning", means)):
                if not isinstance(text_, str) or not text_.strip() or len(text_) > _MAX_MAP_TEXT:
                    raise AttributeMapError(
                        f"{path}: {where}: the {name} must be text of 1-{_MAX_MAP_TEXT} characters; "
                        f"got {text_!r}"
                    )
            if attribute == "color" and colour_rgb(means) is None and field_colour(means) is None:
                raise AttributeMapError(
                    f"{path}: {where}: {means!r} is not a colour name or #hex code; map to one such as 'grey'"
                )
            pins[attribute][_key(value)] = " ".join(means.split())
        return cls(pins["color"], pins["category"])

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"color_map": dict(self.color), "category_map": dict(self.category)}

    @classmethod
    def from_json(cls, content: dict) -> AttributeMap:
        return cls(dict(content.get("color_map", {})), dict(content.get("category_map", {})))

    def __bool__(self) -> bool:
        return bool(self.color or self.category)


def _yaml_entries(path: Path, text: str) -> list[tuple[str, str, object, object]]:
    import yaml

    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise AttributeMapError(f"{path}: not valid YAML ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(content, dict) or not content or set(content) - {"color_map", "category_map"}:
        raise AttributeMapError(
            f"{path}: expected the keys color_map and/or category_map, each a mapping of value: meaning"
        )
    entries = []
    for section, mapping in content.items():
        if not isinstance(mapping, dict):
            raise AttributeMapError(f"{path}: {section} must be a mapping of value: meaning")
        attribute = section.removesuffix("_map")
        entries += [(f"{section}[{value!r}]", attribute, value, means) for value, means in mapping.items()]
    return entries


def _csv_entries(path: Path, text: str) -> list[tuple[str, str, object, object]]:
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().casefold() for h in next(reader, [])]
    if header != ["attribute", "value", "means"]:
        raise AttributeMapError(f"{path}: the header must be attribute,value,means; got {','.join(header)}")
    entries = []
    for line, row in enumerate(reader, start=2):
        if len(row) != 3 or row[0].strip().casefold() not in ("color", "colour", "category"):
            raise AttributeMapError(
                f"{path}: line {line}: expected color|category,value,means; got {','.join(row)[:200]!r}"
            )
        attribute = "category" if row[0].strip().casefold() == "category" else "color"
        entries.append((f"line {line}", attribute, row[1], row[2]))
    return entries


@dataclass(frozen=True)
class _Read:
    value: str | None
    source: str
    confidence: float
    rgb: tuple[int, int, int] | None = None


_NONE = _Read(None, "none", 0.0)


class AttributeReader:
    """Category and colour of rows or prompts: see the module docstring for the order of steps."""

    def __init__(
        self,
        pins: AttributeMap | None = None,
        encoder: TextEncoder | None = None,
        nouns: Mapping[str, Sequence[str]] = CATEGORY_NOUNS,
        wordnet: WordNet | bool = True,
    ) -> None:
        """wordnet: the dictionary for nouns no list has; True: the installed one, if any; False: none."""
        self.pins = pins or AttributeMap()
        self.encoder = encoder
        self.wordnet = WordNet.load() if wordnet is True else (wordnet or None)
        anchors = category_anchors(self.wordnet) if self.wordnet else {}
        self._anchors = {o: c for o, c in anchors.items() if c in nouns}
        self._group_anchors = group_anchors(self.wordnet) if self._anchors else {}
        self._group_nouns = {tuple(_words(n)): g for g, names in GROUP_NOUNS.items() for n in names}
        self._noun_index = {}
        for category, names in nouns.items():
            for noun in (category, *names):
                self._noun_index.setdefault(tuple(_words(noun)), category)
        self._longest = max(len(k) for k in self._noun_index)
        self._banks: dict[str, tuple[list[str], np.ndarray]] = {}

    # -- the lexical steps ---------------------------------------------------------------------
    def _noun_in(self, text: str) -> str | None:
        """The category of the head noun of the first noun phrase of `text` that names one."""
        for phrase in _PHRASE_END.split(text):
            words, found, start = _words(phrase), None, 0
            while start < len(words):
                for length in range(min(self._longest, len(words) - start), 0, -1):
                    category = self._noun_index.get(tuple(words[start : start + length]))
                    if category:
                        found, start = category, start + length
                        break
                else:
                    start += 1
            if found:
                return found
        return None

    def _category_field(self, value: str) -> _Read | None:
        """The category a field names; a segment that names only a group ("Shoes") leaves it to the title."""
        segments = [
            s
            for s in _PATH_SEPARATORS.split(value)
            if tuple(_words(s)) not in self._group_nouns or tuple(_words(s)) in self._noun_index
        ]
        for segment in reversed(segments):  # a taxonomy path is most specific at its end
            exact = self._noun_index.get(tuple(_words(segment)))
            if exact:
                return _Read(exact, "field", 1.0)
            found = self._noun_in(segment)
            if found:
                return _Read(found, "field", 0.95)
        for segment in reversed(segments):
            found = self._wordnet_noun(segment)
            if found:
                return _Read(found, "field", 0.8)
        return None

    def _wordnet_noun(self, text: str) -> str | None:
        """The category WordNet places the head noun of `text` under (first noun phrase first)."""
        if not self._anchors:
            return None
        for phrase in _PHRASE_END.split(text):
            words = re.findall(r"[a-z]+(?:-[a-z]+)*", phrase.casefold().replace("'s", ""))
            for end in range(len(words), 0, -1):  # the head noun is last; try compounds first
                for start in (end - 2, end - 1):
                    if start < 0:
                        continue
                    category = self._wordnet_category("_".join(words[start:end]))
                    if category:
                        return category
        return None

    def _close_noun(self, text: str) -> _Read | None:
        """A word of `text` that ends in a known noun, or is spelt within a letter or two of one."""
        nouns = {"".join(k): c for k, c in self._noun_index.items()}
        best: tuple[float, str] | None = None
        for word in reversed(_words(text)):  # the head noun is last
            suffixes = [n for n in nouns if len(n) >= 4 and word.endswith(n) and word != n]
            if suffixes:
                return _Read(nouns[max(suffixes, key=len)], "close", 0.85)
            if len(word) < 5:
                continue
            for noun, category in nouns.items():
                ratio = difflib.SequenceMatcher(None, word, noun).ratio()
                if ratio >= _CLOSE_SPELLING and (best is None or ratio > best[0]):
                    best = (ratio, category)
        return _Read(best[1], "close", round(0.8 * best[0], 3)) if best else None

    def _group(self, segments: Sequence[str]) -> str | None:
        """The product group the parents of a taxonomy path name ('Ladies > Footwear > Daps': footwear)."""
        for segment in reversed(segments[:-1]):
            words = tuple(_words(segment))
            if words in self._group_nouns:
                return self._group_nouns[words]
            for word in reversed(words):
                for sense in self.wordnet.senses(word) if self._group_anchors else []:
                    for synset, _ in self.wordnet.ancestors(sense, depth=8):
                        if synset in self._group_anchors:
                            return self._group_anchors[synset]
        return None

    def _wordnet_category(self, word: str) -> str | None:
        assert self.wordnet is not None
        for sense in self.wordnet.senses(word):  # most frequent sense first
            for synset, _ in self.wordnet.ancestors(sense, depth=8):
                if synset in self._anchors:
                    return self._anchors[synset]
        return None

    # -- the nearest step ----------------------------------------------------------------------
    def _bank(self, kind: str) -> tuple[list[str], np.ndarray]:
        """(labels, unit vectors) of every noun (kind 'category') or colour name (kind 'color')."""
        if kind not in self._banks:
            assert self.encoder is not None
            if kind == "category":
                texts = [" ".join(k) for k in self._noun_index]
                labels = list(self._noun_index.values())
            else:
                texts = labels = colour_names()
            self._banks[kind] = (labels, self.encoder.encode(texts))
        return self._banks[kind]

    def _nearest(
        self, kind: str, queries: list[str], groups: list[str | None] | None = None
    ) -> list[tuple[str | None, float]]:
        """For each query: the label of its nearest bank entry (within its group), and their similarity."""
        if not queries or self.encoder is None:
            return [(None, 0.0)] * len(queries)
        labels, bank = self._bank(kind)
        groups = groups or [None] * len(queries)
        unique = list(dict.fromkeys(queries))
        vectors = dict(zip(unique, self.encoder.encode(unique), strict=True))
        label_groups = np.array([_GROUP_OF.get(label) for label in labels], dtype=object)
        out = []
        for query, group in zip(queries, groups, strict=True):
            similarity = bank @ vectors[query]
            if group is not None and (label_groups == group).any():
                similarity = np.where(label_groups == group, similarity, -np.inf)
            best = int(similarity.argmax())
            out.append((labels[best], float(similarity[best])))
        return out

    # -- rows ----------------------------------------------------------------------------------
    def read(
        self,
        titles: Sequence[str],
        colors: Sequence[str | None] | None = None,
        categories: Sequence[str | None] | None = None,
    ) -> pd.DataFrame:
        """One row of READ_COLUMNS per title (a catalog row's fields beside it, or a bare prompt)."""
        n = len(titles)
        colors = list(colors) if colors is not None else [None] * n
        categories = list(categories) if categories is not None else [None] * n
        category = self._read_categories(list(titles), categories, colors)
        colour = self._read_colours(list(titles), colors)

        def text(values: list[str | None]) -> pd.Series:
            return pd.Series(values, dtype=object)

        return pd.DataFrame(
            {
                "category": text([r.value for r in category]),
                "category_source": text([r.source for r in category]),
                "category_confidence": np.array([r.confidence for r in category], np.float32),
                "color": text([r.value for r in colour]),
                "color_hex": text(["#{:02x}{:02x}{:02x}".format(*r.rgb) if r.rgb else None for r in colour]),
                "color_source": text([r.source for r in colour]),
                "color_confidence": np.array([r.confidence for r in colour], np.float32),
            }
        )

    def _read_categories(
        self, titles: list[str], fields: list[str | None], colors: list[str | None]
    ) -> list[_Read]:
        reads: list[_Read | None] = []
        memo: dict[tuple[str, str | None], _Read | None] = {}
        for title, value in zip(titles, fields, strict=True):
            if value and (pinned := self.pins.category.get(_key(value))):
                reads.append(_Read(pinned, "map", 1.0))
                continue
            if (title, value) not in memo:
                read = self._category_field(value) if value else None
                if read is None and (noun := self._noun_in(title)):
                    read = _Read(noun, "title", 0.9)
                if read is None and (noun := self._wordnet_noun(without_colours(title))):
                    read = _Read(noun, "title", 0.75)
                memo[title, value] = read
            reads.append(memo[title, value])
        # the rest: nearest noun to the field's segments, else to the title without its colour
        todo = [i for i, r in enumerate(reads) if r is None]
        queries, groups = [], []
        for i in todo:
            if fields[i]:
                segments = [s for s in _PATH_SEPARATORS.split(fields[i]) if s.strip()]
                queries.append(segments[-1])
                groups.append(self._group(segments))
            else:
                queries.append(without_colours(titles[i]))
                groups.append(None)
        for i, query in zip(todo, queries, strict=True):
            close = self._close_noun(query)
            if close:
                reads[i] = close
        rest = [k for k, i in enumerate(todo) if reads[i] is None]
        todo, queries, groups = [todo[k] for k in rest], [queries[k] for k in rest], [groups[k] for k in rest]
        for i, (value, similarity) in zip(todo, self._nearest("category", queries, groups), strict=True):
            reads[i] = _Read(value, "nearest", round(similarity, 3)) if value else _NONE
        return reads  # type: ignore[return-value]

    def _read_colours(self, titles: list[str], fields: list[str | None]) -> list[_Read]:
        reads: list[_Read | None] = []
        memo: dict[tuple[str, str | None], _Read | None] = {}
        for title, value in zip(titles, fields, strict=True):
            if (title, value) not in memo:
                memo[title, value] = self._colour(title, value)
            reads.append(memo[title, value])
        todo = [i for i, r in enumerate(reads) if r is None and fields[i]]
        for i, (name, similarity) in zip(
            todo, self._nearest("color", [fields[i] for i in todo]), strict=True
        ):
            reads[i] = _Read(name, "nearest", round(similarity, 3), colour_rgb(name)) if name else None
        return [r or _NONE for r in reads]

    def _colour(self, title: str, value: str | None) -> _Read | None:
        if value and (pinned := self.pins.color.get(_key(value))):
            rgb = colour_rgb(pinned) or field_colour(pinned)[1]
            return _Read(pinned.casefold(), "map", 1.0, rgb)
        if value and (found := field_colour(value)):
            return _Read(found[0], "field", 1.0, found[1])
        if found := find_colour(title):
            return _Read(found[0], "title", 0.9, found[1])
        return None

    def fingerprint(self) -> str:
        """Changes when what this reader would read could change (its pins and nouns)."""
        content = {
            "pins": self.pins.to_json(),
            "nouns": sorted(map(list, self._noun_index.items())),
            "wordnet": sorted(self._anchors.items()),
        }
        return hashlib.blake2b(json.dumps(content, sort_keys=True).encode(), digest_size=8).hexdigest()


class ReadTally:
    """Counts of where each attribute came from, over batches of reads, and the least sure rows."""

    def __init__(self, examples: int = 5) -> None:
        self.examples = examples
        self.rows = 0
        self.counts = {a: dict.fromkeys((*SOURCES, "low_confidence"), 0) for a in ("category", "color")}
        self.lowest = pd.DataFrame()

    def add(self, reads: pd.DataFrame, titles: Sequence[str]) -> None:
        self.rows += len(reads)
        for attribute, counts in self.counts.items():
            for source, n in reads[f"{attribute}_source"].value_counts().items():
                counts[source] += int(n)
            low = reads[f"{attribute}_confidence"] < LOW_CONFIDENCE
            if attribute == "color":  # no colour said is not a doubt about one
                low &= reads["color_source"] != "none"
            counts["low_confidence"] += int(low.sum())
        said = reads["color_source"] != "none"  # no colour said is not a doubt about one
        confidence = np.minimum(reads["category_confidence"], reads["color_confidence"].where(said, 1.0))
        low = reads.assign(title=list(titles), confidence=confidence)[confidence < LOW_CONFIDENCE]
        both = pd.concat([self.lowest, low], ignore_index=True) if len(self.lowest) else low
        self.lowest = both.sort_values("confidence", kind="stable").head(self.examples)

    def summary(self) -> dict[str, object]:
        lowest = self.lowest.drop(columns="confidence", errors="ignore")
        return {
            "rows": self.rows,
            **{attribute: dict(counts) for attribute, counts in self.counts.items()},
            "lowest": [
                {c: (round(float(v), 3) if isinstance(v, float | np.floating) else v) for c, v in row.items()}
                for row in lowest.to_dict("records")
            ],
        }


def find_attribute_map(catalog: Path) -> Path | None:
    """The mapping file next to a catalog file (MAP_FILE_NAMES), if there is one."""
    for name in MAP_FILE_NAMES:
        candidate = catalog.parent / name
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return None


def describe_read(read: Mapping[str, object]) -> str:
    """One read as a person reads it: 'colour stone #ada587 (field), category ankle boots (nearest, 0.62)'."""

    def one(attribute: str, label: str) -> str:
        value, source = read.get(attribute), read.get(f"{attribute}_source")
        if not value:
            return f"{label} -"
        confidence = round(float(read.get(f"{attribute}_confidence") or 0.0), 2)
        how = f"{source}, {confidence:.2f}" if confidence < 0.9 else str(source)
        shade = f" {read['color_hex']}" if attribute == "color" and read.get("color_hex") else ""
        return f"{label} {value}{shade} ({how})"

    note = ""
    low = [
        a
        for a in ("category", "color")
        if read.get(a) and float(read.get(f"{a}_confidence") or 0) < LOW_CONFIDENCE
    ]
    if low or not read.get("category"):
        note = "  [low confidence: check, or pin it in attribute-map.yaml]"
    return f"{one('color', 'colour')}, {one('category', 'category')}{note}"


def tally_lines(summary: Mapping[str, object]) -> list[str]:
    """encode's read summary as short lines: where each attribute came from, the least sure rows."""
    lines = []
    for attribute, label in (("category", "category"), ("color", "colour")):
        counts = summary[attribute]
        said = ", ".join(f"{counts[s]:,} {s}" for s in SOURCES if counts.get(s))
        lines.append(f"{label + ':':<10} {said}; {counts['low_confidence']:,} low-confidence")
    for row in summary.get("lowest", []):
        lines.append(f"  check: {str(row.get('title'))[:60]!r} -> {describe_read(row)}")
    return lines

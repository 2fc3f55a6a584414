"""WordNet's nouns and their hypernyms ("a galosh is an overshoe is footwear"), read from its files.

Princeton WordNet 3.0 as Debian's `wordnet-base` installs it (/usr/share/wordnet): index.noun maps
a lemma to its senses (most frequent first), each a byte offset into data.noun, whose line lists
the synset's words and pointers; "@" and "@i" point to hypernyms. noun.exc lists irregular
plurals. Only the lines asked for are read (a seek each); the index is loaded once.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

__all__ = ["DEFAULT_DIR", "WordNet", "category_anchors", "group_anchors"]

DEFAULT_DIR = Path("/usr/share/wordnet")
_FILES = ("index.noun", "data.noun", "noun.exc")
_SUFFIXES = (
    ("ses", "s"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("ies", "y"),
    ("s", ""),
)  # fmt: skip  (WordNet's own morphy rules for nouns)


class WordNet:
    """Noun senses and hypernym chains of a WordNet dictionary folder."""

    def __init__(self, directory: Path) -> None:
        for name in _FILES:
            path = directory / name
            if path.is_symlink() or not path.is_file():
                raise FileNotFoundError(f"{path}: not a WordNet 3.0 dictionary file")
        self.directory = directory
        self._index: dict[str, list[int]] = {}
        with (directory / "index.noun").open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(" "):
                    continue  # the licence header
                fields = line.split()
                synsets = int(fields[2])
                self._index[fields[0]] = [int(o) for o in fields[-synsets:]]
        self._exceptions: dict[str, str] = {}
        with (directory / "noun.exc").open(encoding="utf-8", errors="replace") as f:
            for line in f:
                inflected, base, *_ = [*line.split(), ""]
                self._exceptions.setdefault(inflected, base)
        self._data = (directory / "data.noun").open("rb")

    @classmethod
    @lru_cache(maxsize=4)
    def load(cls, directory: Path = DEFAULT_DIR) -> WordNet | None:
        """The dictionary in `directory`, or None where it is not installed."""
        try:
            return cls(directory)
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def base_forms(self, word: str) -> list[str]:
        """'galoshes' -> ['galoshes', 'galosh']: the word and its base forms that WordNet knows."""
        word = "_".join(word.casefold().replace("-", " ").split())
        forms = [word, self._exceptions.get(word, "")]
        forms += [word[: -len(end)] + base for end, base in _SUFFIXES if word.endswith(end)]
        return [f for f in dict.fromkeys(forms) if f and f in self._index]

    def senses(self, word: str) -> list[int]:
        """Synset offsets of `word`'s noun senses, most frequent first (its base forms' after)."""
        return [offset for form in self.base_forms(word) for offset in self._index[form]]

    def _line(self, offset: int) -> list[str]:
        self._data.seek(offset)
        return self._data.readline().decode("utf-8", errors="replace").split(" | ")[0].split()

    def lemmas(self, offset: int) -> list[str]:
        fields = self._line(offset)
        count = int(fields[3], 16)
        return [fields[4 + 2 * i].lower() for i in range(count)]

    def hypernyms(self, offset: int) -> list[int]:
        fields = self._line(offset)
        at = 4 + 2 * int(fields[3], 16)
        pointers = int(fields[at])
        out = []
        for i in range(pointers):
            symbol, target, pos = fields[at + 1 + 4 * i : at + 4 + 4 * i]
            if symbol in ("@", "@i") and pos == "n":
                out.append(int(target))
        return out

    def ancestors(self, offset: int, depth: int = 12) -> Iterator[tuple[int, int]]:
        """(synset, distance) for `offset` and its hypernyms, nearest first (breadth first)."""
        seen, frontier = {offset}, [offset]
        for distance in range(depth + 1):
            for synset in frontier:
                yield synset, distance
            frontier = [h for s in frontier for h in self.hypernyms(s) if h not in seen]
            seen.update(frontier)
            if not frontier:
                return


# Synsets of WordNet 3.0 that stand for a product category, with a lemma each must have (checked
# on load, so another WordNet version is refused rather than misread). The nearest of these
# above a noun's sense in the hypernym tree names the noun's category.
_ANCHORS: dict[int, tuple[str, str]] = {
    3595614: ("t-shirt", "jersey"), 4390577: ("t-shirt", "tank_top"), 3978966: ("t-shirt", "polo_shirt"),
    4223299: ("t-shirt", "singlet"), 4453666: ("t-shirt", "top"),
    4489008: ("trousers", "trouser"), 3655072: ("trousers", "legging"), 3863108: ("trousers", "overall"),
    4370048: ("pullover", "sweater"), 4021028: ("pullover", "pullover"), 4370456: ("pullover", "sweatshirt"),
    3236735: ("dress", "dress"), 3450230: ("dress", "gown"), 4230808: ("dress", "skirt"),
    3057021: ("coat", "coat"), 3589791: ("coat", "jacket"), 3045698: ("coat", "cloak"),
    3045337: ("coat", "cloak"), 4097866: ("coat", "robe"),
    4133789: ("sandals", "sandal"), 4241394: ("sandals", "slipper"),
    4197391: ("shirt", "shirt"), 2854926: ("shirt", "blouse"),
    4199027: ("sneakers", "shoe"), 3472535: ("sneakers", "gym_shoe"), 3047690: ("sneakers", "clog"),
    2872752: ("ankle boots", "boot"), 3865949: ("ankle boots", "overshoe"),
    2773037: ("bag", "bag"), 2774152: ("bag", "handbag"), 2773838: ("bag", "bag"),
    2774630: ("bag", "baggage"), 2974697: ("bag", "case"),
}  # fmt: skip


def category_anchors(wordnet: WordNet) -> dict[int, str]:
    """Synset -> category, or {} when `wordnet` is not the WordNet 3.0 these offsets are from."""
    try:
        ok = all(lemma in wordnet.lemmas(offset) for offset, (_, lemma) in _ANCHORS.items())
    except (ValueError, IndexError):
        ok = False
    return {offset: category for offset, (category, _) in _ANCHORS.items()} if ok else {}


_GROUP_ANCHORS: dict[int, tuple[str, str]] = {
    3381126: ("footwear", "footwear"), 3380867: ("footwear", "footwear"),
    2773037: ("bags", "bag"), 2774630: ("bags", "baggage"), 2974697: ("bags", "case"),
    3051540: ("apparel", "clothing"), 2728440: ("apparel", "apparel"),
}  # fmt: skip


def group_anchors(wordnet: WordNet) -> dict[int, str]:
    """Synset -> product group (apparel, footwear, bags): what a taxonomy path's parents name."""
    try:
        ok = all(lemma in wordnet.lemmas(offset) for offset, (_, lemma) in _GROUP_ANCHORS.items())
    except (ValueError, IndexError):
        ok = False
    return {offset: group for offset, (group, _) in _GROUP_ANCHORS.items()} if ok else {}

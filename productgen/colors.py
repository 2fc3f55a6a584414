"""Colour words and hex codes -> sRGB, through well-kept colour-name tables.

The generator gets colour as an explicit, continuous channel beside the text embedding: a word the
catalog never used ("scarlet", "cobalt", "#7b1f3a") still lands near the colours it resembles.
Two tables, for two kinds of text:

- free text (titles, prompts): the XKCD colour survey (949 names, Munroe 2010) and the CSS Color
  Module's 148 names, as shipped in matplotlib. Where both name a colour, the XKCD survey wins: it
  records what people call the colour. Kept small on purpose: in a title, a word is read as a
  colour only when people commonly mean one by it.
- a colour field (text that is known to name a colour): the same, then the community list
  `color-name-list` (31,881 names such as "Espresso", "Sea Salt", "Oxblood"; MIT, vendored in
  productgen/data). It names too much to scan titles with ("Classic" is a colour there).

Nearest colours are found in CIELAB, where distance follows what people see (in sRGB, a dark
navy is nearer black than the palette's navy).
"""

from __future__ import annotations

import csv
import gzip
import re
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = [
    "colour_names",
    "colour_rgb",
    "field_colour",
    "find_colour",
    "nearest_name",
    "rgb_to_lab",
    "rgb_to_unit",
]

_HEX = re.compile(r"#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b")
_WORD = re.compile(r"[a-z]+(?:[ '-][a-z]+)*")


def _hex_to_rgb(code: str) -> tuple[int, int, int]:
    code = code.lstrip("#")
    if len(code) == 3:
        code = "".join(c * 2 for c in code)
    return int(code[0:2], 16), int(code[2:4], 16), int(code[4:6], 16)


@lru_cache(maxsize=1)
def _table() -> dict[str, tuple[int, int, int]]:
    """Lower-case colour name -> sRGB; multi-word names with spaces ('navy blue')."""
    from matplotlib import colors

    table = {name.lower(): _hex_to_rgb(code) for name, code in colors.CSS4_COLORS.items()}
    for name, code in colors.XKCD_COLORS.items():
        table[name.removeprefix("xkcd:").lower()] = _hex_to_rgb(code)
    table["gray"] = table["grey"]
    return table


@lru_cache(maxsize=1)
def _field_table() -> dict[str, tuple[int, int, int]]:
    """The free-text table, then every name of the community list it does not have."""
    table = dict(_table())
    data = resources.files("productgen.data").joinpath("colornames.csv.gz")
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8", newline="") as text:
        for name, code in csv.reader(text):
            if code.startswith("#"):
                table.setdefault(_key(name), _hex_to_rgb(code))
    return table


def _key(name: str) -> str:
    """'Navy-Blue ' -> 'navy blue': the form both tables are keyed by."""
    return " ".join(re.findall(r"[a-z0-9]+", name.casefold().replace("'", "")))


@lru_cache(maxsize=1)
def _longest_name() -> int:
    return max(len(name.split()) for name in _table())


def colour_names() -> list[str]:
    """Every name of the free-text table, sorted."""
    return sorted(_table())


def colour_rgb(name: str) -> tuple[int, int, int] | None:
    """sRGB of a colour name or hex code ('Navy Blue', '#7b1f3a'); None when unknown."""
    text = name.strip().lower()
    if _HEX.fullmatch(text):
        return _hex_to_rgb(text)
    return _table().get(" ".join(text.replace("-", " ").split()))


def field_colour(value: str) -> tuple[str, tuple[int, int, int]] | None:
    """The colour a colour field names, and the name it was found under; None when none is known.

    'Oxblood' (whole value, large table) -> 'oxblood'; 'Heather Grey Marl' -> 'heather grey'
    (the value's longest known name); 'Navy/White' -> 'navy' (the first colour of a combination).
    """
    text = value.strip()
    if _HEX.fullmatch(text.lower()):
        return text.lower(), _hex_to_rgb(text)
    table = _field_table()
    for part in re.split(r"\s*(?:/|&|\+|,|;|\band\b|\bwith\b)\s*", text, flags=re.IGNORECASE):
        key = _key(part)
        found = table.get(key)
        if found:
            return key, found
        found = _head_colour(key.split(), table)
        if found:
            return found
    return None


def find_colour(text: str) -> tuple[str, tuple[int, int, int]] | None:
    """The first colour a free text names ('light navy blue sneakers' -> 'light navy blue').

    A hex code wins over words. Names are matched longest first; where colour words follow one
    another, the last is the colour and the ones before it qualify it ('heather grey' is grey).
    Words that are also colours but rarely meant as one in a product title ('bag', 'boot' are not
    colours; 'sand', 'stone' are) are accepted as the table has them.
    """
    code = _HEX.search(text)
    if code:
        return code.group(0).lower(), _hex_to_rgb(code.group(0))
    return _head_colour(re.findall(r"[a-z]+", text.lower()), _table())


def _head_colour(
    words: list[str], table: dict[str, tuple[int, int, int]]
) -> tuple[str, tuple[int, int, int]] | None:
    """The first run of adjacent colour names in `words`, read as its last name (the head)."""
    found: tuple[str, tuple[int, int, int]] | None = None
    start = 0
    while start < len(words):
        for length in range(min(_longest_name(), len(words) - start), 0, -1):
            name = " ".join(words[start : start + length])
            if name in table:
                found, start = (name, table[name]), start + length
                break
        else:
            if found:
                return found
            start += 1
    return found


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB 0-255 -> CIELAB (D65)."""
    c = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = (
        linear
        @ np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]])
        / np.array([0.95047, 1.0, 1.08883])
    )
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def nearest_name(rgb: tuple[int, int, int], names: dict[str, tuple[int, int, int]]) -> str:
    """The name in `names` (name -> sRGB) whose colour looks nearest `rgb` (distance in CIELAB)."""
    table = rgb_to_lab(np.array(list(names.values()), np.float64))
    return list(names)[int(((table - rgb_to_lab(np.asarray(rgb))) ** 2).sum(-1).argmin())]


def rgb_to_unit(rgb: tuple[int, int, int] | None) -> np.ndarray:
    """sRGB 0-255 -> float32 in [-1, 1] (the generator's pixel range); zeros when unknown."""
    if rgb is None:
        return np.zeros(3, np.float32)
    return np.asarray(rgb, np.float32) / 127.5 - 1.0


def without_colours(text: str, limit: int = 8) -> str:
    """`text` with the colour names and hex codes `find_colour` finds taken out (up to `limit`)."""
    for _ in range(limit):
        found = find_colour(text)
        if not found:
            break
        words = r"[\s-]+".join(re.escape(word) for word in found[0].split())
        pattern = re.escape(found[0]) if found[0].startswith("#") else rf"\b{words}\b"
        stripped = " ".join(re.sub(pattern, " ", text, flags=re.IGNORECASE).split())
        if stripped == text:
            break
        text = stripped
    return text

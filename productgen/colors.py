"""Colour words and hex codes -> sRGB, through well-kept colour-name tables.

The generator gets colour as an explicit, continuous channel beside the text embedding: a word the
catalog never used ("scarlet", "cobalt", "#7b1f3a") still lands near the colours it resembles.
Sources: the XKCD colour survey (949 names, Munroe 2010) and the CSS Color Module's 148 names,
both as shipped in matplotlib. Where both name a colour, the XKCD survey wins: it records what
people call the colour, CSS what a browser once shipped.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

__all__ = ["colour_rgb", "find_colour", "nearest_name", "rgb_to_unit"]

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
def _longest_name() -> int:
    return max(len(name.split()) for name in _table())


def colour_rgb(name: str) -> tuple[int, int, int] | None:
    """sRGB of a colour name or hex code ('Navy Blue', '#7b1f3a'); None when unknown."""
    text = name.strip().lower()
    if _HEX.fullmatch(text):
        return _hex_to_rgb(text)
    return _table().get(" ".join(text.replace("-", " ").split()))


def find_colour(text: str) -> tuple[str, tuple[int, int, int]] | None:
    """The first colour a free text names, longest name first ('light navy blue sneakers').

    A hex code wins over words. Words that are also colours but rarely meant as one in a product
    title ('bag', 'boot' are not colours; 'sand', 'stone' are) are accepted as the table has them.
    """
    code = _HEX.search(text)
    if code:
        return code.group(0).lower(), _hex_to_rgb(code.group(0))
    words = re.findall(r"[a-z]+", text.lower())
    table = _table()
    for length in range(min(_longest_name(), len(words)), 0, -1):
        for start in range(len(words) - length + 1):
            name = " ".join(words[start : start + length])
            if name in table:
                return name, table[name]
    return None


def nearest_name(rgb: tuple[int, int, int], names: dict[str, tuple[int, int, int]]) -> str:
    """The name in `names` (name -> sRGB) whose colour is nearest `rgb` (squared sRGB distance)."""
    table = np.array(list(names.values()), np.float64)
    return list(names)[int(((table - np.asarray(rgb, np.float64)) ** 2).sum(1).argmin())]


def rgb_to_unit(rgb: tuple[int, int, int] | None) -> np.ndarray:
    """sRGB 0-255 -> float32 in [-1, 1] (the generator's pixel range); zeros when unknown."""
    if rgb is None:
        return np.zeros(3, np.float32)
    return np.asarray(rgb, np.float32) / 127.5 - 1.0

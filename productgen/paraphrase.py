"""Prompts in words the demo catalog never uses, with known attributes: does control transfer?

Catalog titles in real life do not follow our templates. Each paraphrase names a palette colour
by a synonym ("crimson" for red) or a hex code, and a category by a noun outside the templates
("slacks" for trousers), in sentence shapes the templates never use. A colour synonym is kept
only when its sRGB in the colour tables is nearest to the colour it stands for, so the label and
the words agree.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from productgen.catalog.schema import CATEGORIES, PALETTE
from productgen.colors import colour_rgb, nearest_name

__all__ = ["Paraphrase", "paraphrase_set"]

COLOUR_WORDS: dict[str, tuple[str, ...]] = {  # none contains the palette word itself
    "black": ("charcoal", "jet", "onyx", "ebony"),
    "grey": ("gray", "silver", "ash", "pewter"),
    "navy": ("indigo", "midnight", "dark blue", "ink"),
    "blue": ("azure", "cerulean", "cobalt", "sapphire"),
    "teal": ("dark cyan", "petrol", "turquoise", "sea green"),
    "green": ("emerald", "jade", "shamrock", "clover"),
    "olive": ("khaki green", "moss green", "army green", "drab"),
    "yellow": ("lemon", "sunflower", "mustard", "canary"),
    "orange": ("tangerine", "pumpkin", "apricot", "rust"),
    "red": ("scarlet", "tomato", "cherry", "vermillion"),
    "burgundy": ("wine", "maroon", "bordeaux", "crimson"),
    "pink": ("rose", "fuchsia", "blush", "bubblegum"),
    "purple": ("violet", "amethyst", "eggplant", "grape"),
    "brown": ("chestnut", "umber", "cinnamon", "cocoa"),
}

CATEGORY_WORDS: dict[str, tuple[str, ...]] = {  # none contains a template noun as a word
    "t-shirt": ("tshirt", "short-sleeve top", "logo top"),
    "trousers": ("slacks", "jeans", "joggers"),
    "pullover": ("sweatshirt", "knit jersey", "crewneck knit"),
    "dress": ("gown", "sundress", "frock"),
    "coat": ("trench", "overcoat", "raincoat"),
    "sandals": ("flip-flops", "gladiators", "open-toe slip-ons"),
    "shirt": ("button-up", "oxford button-up", "flannel overshirt"),
    "sneakers": ("tennis shoes", "athletic shoes", "kicks"),
    "bag": ("purse", "satchel", "clutch"),
    "ankle boots": ("short boots", "combat boots", "lace-up boots"),
}

SHAPES = (
    "{colour} {noun}",
    "Our new {noun} in {colour}",
    "{noun} - colour: {colour}",
    "Women's {colour} {noun}, size M",
    "a {noun} that is {colour}",
    "{noun} ({colour})",
    "Classic {noun}, finished in {colour}",
)


@dataclass(frozen=True)
class Paraphrase:
    text: str
    color: str  # palette colour it stands for
    category: str
    kind: str  # "synonym" or "hex"


def colour_words() -> dict[str, list[str]]:
    """Synonyms per palette colour that the colour tables place nearest that colour."""
    kept: dict[str, list[str]] = {}
    for colour, words in COLOUR_WORDS.items():
        for word in words:
            rgb = colour_rgb(word)
            if rgb is not None and nearest_name(rgb, PALETTE) == colour:
                kept.setdefault(colour, []).append(word)
    return kept


def paraphrase_set(per_pair: int = 2, seed: int = 0) -> list[Paraphrase]:
    """`per_pair` prompts for every (category, colour) pair; one in four names the colour in hex."""
    rng = random.Random(seed)
    words = colour_words()
    out = []
    for category, _, _ in CATEGORIES:
        for colour, rgb in PALETTE.items():
            for _ in range(per_pair):
                hex_code = rng.random() < 0.25 or colour not in words
                said = "#{:02x}{:02x}{:02x}".format(*rgb) if hex_code else rng.choice(words[colour])
                shape = rng.choice(SHAPES)
                text = shape.format(colour=said, noun=rng.choice(CATEGORY_WORDS[category]))
                out.append(
                    Paraphrase(text[0].upper() + text[1:], colour, category, "hex" if hex_code else "synonym")
                )
    return out

"""Text in words the demo catalog never uses, with known attributes: does control transfer?

Catalog titles in real life do not follow our templates. Each paraphrase names a palette colour
by a synonym ("crimson" for red) or a hex code, and a category by a noun outside the templates
("slacks" for trousers), in sentence shapes the templates never use. A colour synonym is kept
only when the colour tables place it nearest the colour it stands for, so label and words agree.

Merchant rows carry the attributes in fields instead: a colour in the merchant's own name
("Oxblood") and a category as a taxonomy path ("Ladies > Footwear > Boots & Booties"), beside a
title that names neither.

Every word list is split in two halves. "dev" words were looked at while building the attribute
reader (productgen.attributes; some are in its noun lists); "heldout" words never were, and none
of them is in the reader's lists: they measure what the reader does with words it does not know.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from productgen.catalog.demo import BRANDS
from productgen.catalog.schema import CATEGORIES, PALETTE
from productgen.colors import colour_rgb, nearest_name

__all__ = ["HALVES", "MerchantRow", "Paraphrase", "merchant_rows", "paraphrase_set"]

HALVES = ("dev", "heldout")

# the first two of each colour are "dev", the last two "heldout"
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

# dev: looked at while building the reader
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

# heldout: never looked at while building the reader, none in its noun lists
HELDOUT_CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "t-shirt": ("singlet", "ringer", "henley"),
    "trousers": ("khakis", "palazzos", "trackies"),
    "pullover": ("guernsey", "aran", "mock neck"),
    "dress": ("ballgown", "muumuu", "qipao"),
    "coat": ("duster", "cagoule", "mackintosh"),
    "sandals": ("huaraches", "jandals", "toe-posts"),
    "shirt": ("chambray", "guayabera", "poplin"),
    "sneakers": ("hi-tops", "sneaks", "daps"),
    "bag": ("messenger", "carryall", "weekender"),
    "ankle boots": ("galoshes", "bootees", "mukluks"),
}

# a merchant's colour names: the first three of each are "dev", the last three "heldout"
MERCHANT_COLOURS: dict[str, tuple[str, ...]] = {
    "black": ("Jet Black", "Onyx", "Washed Black", "Caviar", "Liquorice", "Black Beauty"),
    "grey": ("Heather Grey", "Slate", "Pewter", "Dove Grey", "Smoke", "Steel"),
    "navy": ("Midnight", "Dark Navy", "Ink Blue", "Marine", "Nautical Navy", "Admiral Blue"),
    "blue": ("Cobalt", "Royal Blue", "Azure", "Sapphire", "Cornflower", "Ocean Blue"),
    "teal": ("Petrol", "Dark Teal", "Deep Teal", "Peacock", "Lagoon", "Spruce"),
    "green": ("Kelly Green", "Emerald", "Grass", "Shamrock", "Jade", "Fern"),
    "olive": ("Khaki Green", "Army", "Moss", "Olive Drab", "Military Green", "Loden"),
    "yellow": ("Lemon", "Sunflower", "Canary", "Butter", "Daffodil", "Sunshine"),
    "orange": ("Tangerine", "Pumpkin", "Burnt Orange", "Marigold", "Apricot", "Papaya"),
    "red": ("Scarlet", "Cherry", "Tomato", "Fire Engine Red", "Lipstick Red", "Poppy"),
    "burgundy": ("Oxblood", "Wine", "Bordeaux", "Maroon", "Merlot", "Claret"),
    "pink": ("Blush", "Fuchsia", "Hot Pink", "Bubblegum", "Flamingo", "Candy Pink"),
    "purple": ("Violet", "Amethyst", "Grape", "Royal Purple", "Aubergine", "Ultraviolet"),
    "brown": ("Chocolate", "Chestnut", "Cognac", "Tobacco", "Mocha", "Walnut"),
}

# taxonomy leaves a merchant might use: the first two of each are "dev", the last two "heldout"
MERCHANT_LEAVES: dict[str, tuple[str, ...]] = {
    "t-shirt": ("T-Shirts & Vests", "Tops", "Singlets", "Henleys"),
    "trousers": ("Jeans", "Trousers & Chinos", "Khakis", "Palazzos"),
    "pullover": ("Hoodies & Sweatshirts", "Knitwear", "Guernseys", "Mock Necks"),
    "dress": ("Dresses", "Maxi Dresses", "Ballgowns", "Qipaos"),
    "coat": ("Coats & Jackets", "Outerwear", "Dusters", "Cagoules"),
    "sandals": ("Sandals", "Sliders & Flip Flops", "Huaraches", "Jandals"),
    "shirt": ("Shirts & Blouses", "Oxford Shirts", "Chambray", "Guayaberas"),
    "sneakers": ("Trainers", "Running Shoes", "Hi-Tops", "Daps"),
    "bag": ("Bags & Purses", "Totes", "Messengers", "Weekenders"),
    "ankle boots": ("Boots & Booties", "Chelsea Boots", "Galoshes", "Mukluks"),
}
_DEPARTMENTS = ("Women", "Men", "Ladies", "Mens", "Unisex")
_GROUPS = {"apparel": ("Clothing", "Apparel"), "footwear": ("Footwear", "Shoes"), "bags": ("Accessories",)}
_STYLES = ("Aria", "Weekend", "Essential", "Studio", "Heritage", "Nova", "Harbour", "City")

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


def colour_words(half: str) -> dict[str, list[str]]:
    """One half's synonyms per palette colour that the colour tables place nearest that colour."""
    kept: dict[str, list[str]] = {}
    for colour, words in COLOUR_WORDS.items():
        for word in _half(words, half):
            rgb = colour_rgb(word)
            if rgb is not None and nearest_name(rgb, PALETTE) == colour:
                kept.setdefault(colour, []).append(word)
    return kept


def _half(words: tuple[str, ...], half: str) -> tuple[str, ...]:
    if half not in HALVES:
        raise ValueError(f"half must be one of {HALVES}; got {half!r}")
    middle = len(words) // 2
    return words[:middle] if half == "dev" else words[middle:]


def paraphrase_set(per_pair: int = 2, seed: int = 0, half: str = "heldout") -> list[Paraphrase]:
    """`per_pair` prompts for every (category, colour) pair; one in four names the colour in hex."""
    rng = random.Random(seed)
    words = {colour: kept for colour, kept in colour_words(half).items() if kept}
    nouns = CATEGORY_WORDS if half == "dev" else HELDOUT_CATEGORY_WORDS
    out = []
    for category, _, _ in CATEGORIES:
        for colour, rgb in PALETTE.items():
            for _ in range(per_pair):
                hex_code = rng.random() < 0.25 or colour not in words
                said = "#{:02x}{:02x}{:02x}".format(*rgb) if hex_code else rng.choice(words[colour])
                shape = rng.choice(SHAPES)
                text = shape.format(colour=said, noun=rng.choice(nouns[category]))
                out.append(
                    Paraphrase(text[0].upper() + text[1:], colour, category, "hex" if hex_code else "synonym")
                )
    return out


@dataclass(frozen=True)
class MerchantRow:
    title: str  # names neither colour nor category
    color_field: str  # the merchant's colour name
    category_field: str  # a taxonomy path
    color: str  # palette colour it stands for
    category: str


def merchant_rows(per_pair: int = 1, seed: int = 0, half: str = "heldout") -> list[MerchantRow]:
    """`per_pair` merchant rows for every (category, colour) pair, in the words of one half."""
    rng = random.Random(seed)
    out = []
    for category, group, _ in CATEGORIES:
        for colour in PALETTE:
            for _ in range(per_pair):
                path = " > ".join(
                    (
                        rng.choice(_DEPARTMENTS),
                        rng.choice(_GROUPS[group]),
                        rng.choice(_half(MERCHANT_LEAVES[category], half)),
                    )
                )
                title = f"{rng.choice(BRANDS)} {rng.choice(_STYLES)} {rng.randint(100, 9999)}"
                out.append(
                    MerchantRow(
                        title, rng.choice(_half(MERCHANT_COLOURS[colour], half)), path, colour, category
                    )
                )
    return out

"""The catalog: its format, the demo catalog built from Fashion-MNIST, and table I/O."""

from productgen.catalog.demo import DemoCatalog, build_demo_catalog
from productgen.catalog.fashion_mnist import (
    FashionMNIST,
    FashionMNISTSource,
    FashionMNISTUnavailable,
    load_fashion_mnist,
    locate_fashion_mnist,
)
from productgen.catalog.schema import CATEGORIES, PALETTE, REQUIRED_COLUMNS

__all__ = [
    "CATEGORIES",
    "PALETTE",
    "REQUIRED_COLUMNS",
    "DemoCatalog",
    "FashionMNIST",
    "FashionMNISTSource",
    "FashionMNISTUnavailable",
    "build_demo_catalog",
    "load_fashion_mnist",
    "locate_fashion_mnist",
]

"""productgen: turn an e-commerce catalog into product images with a text-conditioned generator."""

__version__ = "0.1.0"
__all__ = ["__version__"]

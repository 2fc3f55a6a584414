"""Generator, discriminator and VAE building blocks (no training code here)."""

from productgen.models.networks import CondProjection, Discriminator, Generator, ModelConfig, VAEEncoder

__all__ = ["CondProjection", "Discriminator", "Generator", "ModelConfig", "VAEEncoder"]

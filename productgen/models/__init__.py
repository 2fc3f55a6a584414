"""The model registry: each family's networks, all on one condition path (no training code here).

    family     generator           discriminator           encoder     loss (productgen.losses)
    cgan       Generator (BigGAN)  projection, SN ResNet   -           GANLoss
    cvae       Generator (BigGAN)  -                       VAEEncoder  VAELoss
    vaegan     Generator (BigGAN)  projection, SN ResNet   VAEEncoder  VAEGANLoss
    stylegan   StyleGenerator      projection, SN ResNet   -           GANLoss (+ R1)
    dcgan      DCGANGenerator      DCGANDiscriminator      -           GANLoss (non-saturating)

Every generator is (z, cond) -> image in [-1, 1] with a `cond` CondProjection and a `config`;
every discriminator is (image, cond) -> (score, aux logits) with a `feature_map`. The cVAE can
also train a PatchDiscriminator (image -> a score per patch) on its reconstructions.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from productgen.models.dcgan import DCGANDiscriminator, DCGANGenerator
from productgen.models.networks import (
    FAMILIES,
    CondProjection,
    Discriminator,
    Generator,
    ModelConfig,
    PatchDiscriminator,
    VAEEncoder,
)
from productgen.models.stylegan import StyleGenerator

__all__ = [
    "FAMILIES",
    "FAMILY_NETWORKS",
    "CondProjection",
    "Discriminator",
    "FamilyNetworks",
    "Generator",
    "ModelConfig",
    "PatchDiscriminator",
    "VAEEncoder",
    "build_generator",
]


@dataclass(frozen=True)
class FamilyNetworks:
    generator: type[nn.Module]
    discriminator: type[nn.Module] | None
    encoder: type[nn.Module] | None


FAMILY_NETWORKS: dict[str, FamilyNetworks] = {
    "cgan": FamilyNetworks(Generator, Discriminator, None),
    "cvae": FamilyNetworks(Generator, None, VAEEncoder),
    "vaegan": FamilyNetworks(Generator, Discriminator, VAEEncoder),
    "stylegan": FamilyNetworks(StyleGenerator, Discriminator, None),
    "dcgan": FamilyNetworks(DCGANGenerator, DCGANDiscriminator, None),
}
assert set(FAMILY_NETWORKS) == set(FAMILIES)


def build_generator(config: ModelConfig) -> nn.Module:
    """The generator of the config's family (what a model file holds as G_ema)."""
    return FAMILY_NETWORKS[config.family].generator(config)

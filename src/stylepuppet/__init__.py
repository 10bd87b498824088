"""stylepuppet: animate StyleGAN2 faces by projecting driving-video landmarks into latent space."""

from stylepuppet.errors import StylePuppetError

__all__ = ["StylePuppetError"]

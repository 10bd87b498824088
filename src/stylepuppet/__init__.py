"""stylepuppet: animate StyleGAN2 faces by projecting driving-video landmarks into latent space."""

from stylepuppet.config import AnimateConfig, preset, resolve_config
from stylepuppet.errors import StylePuppetError
from stylepuppet.generators.loader import load_generator

__all__ = ["AnimateConfig", "StylePuppetError", "load_generator", "preset", "resolve_config"]

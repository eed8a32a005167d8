# The distillation classifier (mmefficientmod.models.classifiers) needs
# mmpretrain; the configs that use it import it through custom_imports.
from .backbones import EfficientMod

__all__ = ['EfficientMod']

# The distillation classifier (mmefficientmod.models.classifiers) needs
# mmpretrain; the configs that use it import it through custom_imports.
from .backbones import EfficientMod
from .from_config import TensorMode, build_model_from_config

__all__ = ['EfficientMod', 'TensorMode', 'build_model_from_config']

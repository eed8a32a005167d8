"""EfficientMod backbones for OpenMMLab 2.0 (MMDetection, MMSegmentation, MMPretrain)."""
from . import stack_fixes
from .model_zoo import register_model_index
from .models import EfficientMod

__version__ = '0.1.0'

stack_fixes.apply_all()
# mmpretrain.get_model('efficientmod-...') and its inferencers by name.
register_model_index()

__all__ = ['EfficientMod', '__version__']

"""EfficientMod backbones for OpenMMLab 2.0 (MMDetection, MMSegmentation, MMPretrain)."""
from . import stack_fixes
from .models import EfficientMod

__version__ = '0.1.0'

stack_fixes.apply_all()

__all__ = ['EfficientMod', '__version__']

"""EfficientMod backbones for OpenMMLab 2.0 (MMDetection, MMSegmentation, MMPretrain).

Importing the package registers the ``EfficientMod`` backbone and the
``EfficientModConfigCheckHook`` in MMEngine's root registries (so that every
library's scope finds them), and applies the stack fixes that the installed
versions need (see :mod:`mmefficientmod.stack_fixes`).
"""
from . import stack_fixes
from .engine import EfficientModConfigCheckHook
from .model_zoo import register_model_index
from .models import EfficientMod

__version__ = '0.1.0'

stack_fixes.apply_all()
# mmpretrain.get_model('efficientmod-...') and its inferencers by name.
register_model_index()

__all__ = ['EfficientMod', 'EfficientModConfigCheckHook', '__version__']

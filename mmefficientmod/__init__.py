"""EfficientMod backbones for OpenMMLab 2.0 (MMDetection, MMSegmentation, MMPretrain).

Importing the package registers the ``EfficientMod`` backbone and the
``EfficientModConfigCheckHook`` in MMEngine's root registries (so that every
library's scope finds them), applies the stack fixes that the installed
versions need (see :mod:`mmefficientmod.stack_fixes`), and registers the
check of weights loaded into models with an EfficientMod (see
:mod:`mmefficientmod.checkpoint.strict_loading`).
"""
from . import stack_fixes
from .checkpoint.strict_loading import watch as check_loads_into
from .engine import EfficientModConfigCheckHook
from .model_zoo import register_model_index
from .models import EfficientMod

__version__ = '0.1.0'

stack_fixes.apply_all()
# Weights that leave part of a model with an EfficientMod unloaded are
# refused (mmefficientmod.checkpoint.strict_loading).
check_loads_into(EfficientMod)
# mmpretrain.get_model('efficientmod-...') and its inferencers by name.
register_model_index()

__all__ = ['EfficientMod', 'EfficientModConfigCheckHook', '__version__']

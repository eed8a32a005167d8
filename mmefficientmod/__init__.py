"""EfficientMod backbones for OpenMMLab 2.0 (MMDetection, MMSegmentation, MMPretrain).

Importing the package registers, and does nothing else: the ``EfficientMod``
backbone and the ``EfficientModConfigCheckHook`` go into MMEngine's root
registries (so that every library's scope finds them), and the ImageNet
classifiers are announced to mmpretrain's model hub once mmpretrain is
imported (see :mod:`mmefficientmod.model_zoo`). No other library's function
or class is changed.

The fixes for gaps of today's stack (:mod:`mmefficientmod.stack_fixes`) are
an explicit opt-in: ``import mmefficientmod.apply_stack_fixes``, which this
project's configs list in ``custom_imports`` and its tools import.
"""
from .engine import EfficientModConfigCheckHook
from .model_zoo import register_model_index_when_mmpretrain_loads
from .models import EfficientMod

__version__ = '0.1.0'

# mmpretrain.get_model('efficientmod-...') and its inferencers by name.
register_model_index_when_mmpretrain_loads()

__all__ = ['EfficientMod', 'EfficientModConfigCheckHook', '__version__']

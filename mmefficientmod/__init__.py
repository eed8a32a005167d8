"""EfficientMod backbones for OpenMMLab 2.0 (MMDetection, MMSegmentation, MMPretrain).

Importing the package registers, and does nothing else: the ``EfficientMod``
backbone and the ``EfficientModConfigCheckHook`` go into MMEngine's root
registries (so that every library's scope finds them), the ImageNet
classifiers are announced to mmpretrain's model hub once mmpretrain is
imported (see :mod:`mmefficientmod.model_zoo`), and models that hold an
EfficientMod get a load-state-dict check that refuses weights which do not
fit them (see :mod:`mmefficientmod.checkpoint.strict_loading`). No other
library's function or class is changed.

The fixes for gaps of today's stack (:mod:`mmefficientmod.stack_fixes`) are
an explicit opt-in: ``import mmefficientmod.apply_stack_fixes``, which this
project's configs list in ``custom_imports`` and its tools import.
"""
from .checkpoint.strict_loading import watch as check_loads_into
from .engine import EfficientModConfigCheckHook
from .model_zoo import register_model_index_when_mmpretrain_loads
from .models import EfficientMod

__version__ = '0.1.0'

# Weights that leave part of a model with an EfficientMod unloaded are
# refused (mmefficientmod.checkpoint.strict_loading).
check_loads_into(EfficientMod)
# mmpretrain.get_model('efficientmod-...') and its inferencers by name.
register_model_index_when_mmpretrain_loads()

__all__ = ['EfficientMod', 'EfficientModConfigCheckHook', '__version__']

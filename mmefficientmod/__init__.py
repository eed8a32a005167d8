"""EfficientMod backbones for OpenMMLab 2.0 (MMDetection, MMSegmentation, MMPretrain).

Importing the package registers, and does nothing else: the ``EfficientMod``
backbone and this project's hooks go into MMEngine's root registries (so that
every library's scope finds them). No other library's function, class or
global table is changed.

Two things are explicit calls:

* :func:`register_model_index` announces the ImageNet classifiers to
  mmpretrain's model hub, so that ``mmpretrain.get_model('efficientmod-...')``
  and its inferencers know them by name;
* ``import mmefficientmod.apply_stack_fixes`` applies the fixes for gaps of
  today's stack (:mod:`mmefficientmod.stack_fixes`); this project's configs
  list it in ``custom_imports`` and its tools import it.
"""
from .engine import EfficientModConfigCheckHook
from .model_zoo import register_model_index
from .models import EfficientMod

__version__ = '0.1.0'

__all__ = [
    'EfficientMod', 'EfficientModConfigCheckHook', 'register_model_index',
    '__version__'
]

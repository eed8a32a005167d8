from .efficientmod import EfficientMod

__all__ = ['EfficientMod']

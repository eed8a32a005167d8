from .backbones import EfficientMod

__all__ = ['EfficientMod']

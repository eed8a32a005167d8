from .backbones import EfficientMod
from .classifiers import KnowledgeDistillationImageClassifier  # noqa: F401

__all__ = ['EfficientMod']

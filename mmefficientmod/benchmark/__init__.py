"""Benchmark helpers.

:mod:`.reference` holds the plain baseline implementation (benchmarks only);
:mod:`.precision` the reduced-precision inference helpers.
"""
from .precision import (DTYPES, autocast, cast_input, cosine_similarity,
                        cpu_has_bf16, default_precision_mode, to_precision)
from .reference import ReferenceClassifier, ReferenceEfficientMod

__all__ = [
    'DTYPES', 'ReferenceClassifier', 'ReferenceEfficientMod', 'autocast',
    'cast_input', 'cosine_similarity', 'cpu_has_bf16',
    'default_precision_mode', 'to_precision'
]

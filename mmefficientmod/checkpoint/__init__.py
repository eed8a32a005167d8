from .convert_released import (NotEfficientModCheckpoint,
                               convert_backbone_keys, convert_checkpoint,
                               infer_arch, is_upstream_checkpoint)
from .loading import load_backbone_weights

__all__ = [
    'NotEfficientModCheckpoint', 'convert_backbone_keys', 'convert_checkpoint',
    'infer_arch', 'is_upstream_checkpoint', 'load_backbone_weights'
]

from .bad_files import UnreadableCheckpointError
from .released import (NotEfficientModCheckpoint, convert_backbone_keys,
                       convert_released, infer_arch, is_released, strip_prefix)
from .safe_load import UnsafeCheckpointError, open_checkpoint
from .weights import (CheckpointMismatchError, backbone_weights, check_fit,
                      read_checkpoint, summarize)

__all__ = [
    'CheckpointMismatchError', 'NotEfficientModCheckpoint',
    'UnreadableCheckpointError', 'UnsafeCheckpointError', 'backbone_weights',
    'check_fit', 'convert_backbone_keys', 'convert_released', 'infer_arch',
    'is_released', 'open_checkpoint', 'read_checkpoint', 'strip_prefix',
    'summarize'
]

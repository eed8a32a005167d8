from .bad_files import UnreadableCheckpointError
from .convert_released import (NotEfficientModCheckpoint,
                               convert_backbone_keys, convert_checkpoint,
                               infer_arch, is_upstream_checkpoint)
from .loading import load_backbone_weights
from .strict_loading import (PARTIAL_LOAD_ENV, CheckpointMismatchError,
                             allow_partial_load)

__all__ = [
    'CheckpointMismatchError', 'NotEfficientModCheckpoint', 'PARTIAL_LOAD_ENV',
    'UnreadableCheckpointError', 'allow_partial_load', 'convert_backbone_keys',
    'convert_checkpoint', 'infer_arch', 'is_upstream_checkpoint',
    'load_backbone_weights'
]

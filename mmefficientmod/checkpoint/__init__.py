from .bad_files import UnreadableCheckpointError
from .released import (NotEfficientModCheckpoint, convert_released, infer_arch,
                       released_weights, strip_prefix)
from .safe_load import UnsafeCheckpointError, open_checkpoint
from .weights import (CheckpointMismatchError, backbone_weights, check_fit,
                      read_checkpoint)

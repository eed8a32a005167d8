from .config_check_hook import (ConfigError, EfficientModConfigCheckHook,
                                check_config, class_count_error, width_errors)
from .safety_hooks import NonFiniteCheckHook, SafeCheckpointHook

__all__ = [
    'ConfigError', 'EfficientModConfigCheckHook', 'check_config',
    'class_count_error', 'width_errors'
]

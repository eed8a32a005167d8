"""Building models from configs and loading weights, for the tools."""
import copy
import logging
from typing import Dict, List, Optional

import torch.nn as nn


def build_model_from_config(config: str,
                            cfg_options: Optional[Dict] = None) -> nn.Module:
    """Build the ``model`` of an OpenMMLab config (mmpretrain, mmdet, mmseg).

    Args:
        config (str): A config file path.
        cfg_options (dict, optional): Overrides merged into the config.

    Returns:
        nn.Module: The model, initialised, in eval mode.
    """
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import MODELS, init_default_scope

    import mmefficientmod  # noqa: F401  (registers EfficientMod)
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter
    model_cfg = cfg.model
    if cfg.get('data_preprocessor') is not None:
        # As mmengine's Runner does: the top-level preprocessor applies.
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    try:
        model = MODELS.build(model_cfg)
        if hasattr(model, 'init_weights'):
            model.init_weights()
    finally:
        logger.setLevel(level)
    return model.eval()


def load_weights(model: nn.Module, checkpoint: str) -> List[str]:
    """Load a converted or a released (upstream) checkpoint.

    Returns:
        list[str]: The model's keys missing from the checkpoint.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    from ..checkpoint import convert_checkpoint, is_upstream_checkpoint
    ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    if is_upstream_checkpoint(ckpt):
        ckpt = convert_checkpoint(ckpt)
    state_dict = ckpt.get('state_dict', ckpt)
    result = model.load_state_dict(state_dict, strict=False)
    return list(result.missing_keys)


def find_backbone(model: nn.Module) -> nn.Module:
    """The ``EfficientMod`` of a model (or the model itself)."""
    from ..models import EfficientMod
    backbone = getattr(model, 'backbone', model)
    if not isinstance(backbone, EfficientMod):
        raise TypeError(f'The model has no EfficientMod backbone (found '
                        f'{type(backbone).__name__}).')
    return backbone


def deploy_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with its backbone in the inference form."""
    new = copy.deepcopy(model).eval()
    find_backbone(new).switch_to_deploy()
    return new

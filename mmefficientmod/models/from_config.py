"""A model from an OpenMMLab config, and its tensor-mode forward."""
import logging
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import MODELS, init_default_scope


def build_model_from_config(config: Union[str, Config],
                            cfg_options: Optional[Dict] = None,
                            init_weights: bool = True) -> nn.Module:
    """The ``model`` of an MMPretrain, MMDetection or MMSegmentation config,
    built in the config's default scope, in eval mode.

    Args:
        config (str | Config): A config file or a loaded config.
        cfg_options (dict, optional): Entries to merge into the config.
            Defaults to None.
        init_weights (bool): Run the model's ``init_weights`` (its
            ``init_cfg``, e.g. pretrained weights). Defaults to True.

    Returns:
        nn.Module: The model, with the config's top-level
        ``data_preprocessor`` as the runner gives it."""
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    if init_weights and hasattr(model, 'init_weights'):
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel(logging.WARNING)  # init_weights logs every parameter
        try:
            model.init_weights()
        finally:
            logger.setLevel(level)
    return model.eval()


class TensorMode(nn.Module):
    """``model(x, data_samples, mode='tensor')`` as a plain ``forward(x)``,
    for tracing, export, FLOP counting and timing.

    Args:
        model (nn.Module): An OpenMMLab model (``BaseModel``), or a bare
            backbone.
        backbone_only (bool): Run ``model.backbone`` (or the bare backbone)
            alone. Defaults to False.
        data_samples (Sequence, optional): What the model's heads read in
            tensor mode (mmdet's need image metainfo). Defaults to None.
    """

    def __init__(self,
                 model: nn.Module,
                 backbone_only: bool = False,
                 data_samples: Optional[Sequence] = None):
        super().__init__()
        self.model = model
        self.backbone_only = backbone_only
        self.data_samples = data_samples

    def forward(self, x: torch.Tensor):
        if self.backbone_only:
            return getattr(self.model, 'backbone', self.model)(x)
        return self.model(x, self.data_samples, mode='tensor')

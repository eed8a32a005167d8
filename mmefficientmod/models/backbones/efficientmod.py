"""EfficientMod backbone.

Paper: Xu Ma, Xiyang Dai, Jianwei Yang, Bin Xiao, Yinpeng Chen, Yun Fu and
Lu Yuan, "Efficient Modulation for Vision Networks", ICLR 2024
(arXiv:2403.19963). The authors' code is github.com/ma-xu/EfficientMod,
released under the Apache License 2.0, as is this project. This file is
written anew for OpenMMLab 2.0 from the paper and the released checkpoints'
semantics; it shares no code with the authors' model file, and loads their
released checkpoints through :mod:`mmefficientmod.checkpoint`.
"""
import math
import numbers
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.registry import MODELS

from ...arch import (ARCH_ZOO, NUM_STAGES, argument_error, is_int, parse_arch,
                     parse_out_indices)
from ...checkpoint import (NotEfficientModCheckpoint, backbone_weights,
                           check_fit, strip_prefix)
from ..image_batch import checked_image_batch
from ..layers import AttentionBlock, ModulationBlock

# mmengine schemes that name other networks' weights (ResNet and the like),
# as the ``model.pretrained`` of the libraries' base configs do.
MODEL_ZOO_SCHEMES = ('open-mmlab://', 'openmmlab://', 'torchvision://',
                     'modelzoo://', 'mmcls://')
OUT_TYPES = ('featmap', 'avg_featmap')


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_init_cfg(value) -> bool:
    configs = value if isinstance(value, (list, tuple)) else [value]
    return value is None or all(
        isinstance(c, dict) and 'type' in c for c in configs)


class Downsample(nn.Module):
    """Strided conv + LayerNorm, channels-last in and out.

    Args:
        in_channels (int): Input width.
        out_channels (int): Output width.
        kernel_size (int): Conv kernel size.
        stride (int): Conv stride.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding=kernel_size // 2)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class Stage(nn.Module):
    """An optional downsample, then the stage's modulation and attention blocks.

    Args:
        downsample (nn.Module, optional): Module entering the stage.
        blocks (list[nn.Module]): The stage's blocks, in order.
        with_cp (bool): Checkpoint each block's activations in training.
    """

    def __init__(self,
                 downsample: Optional[nn.Module],
                 blocks: List[nn.Module],
                 with_cp: bool = False):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        for block in self.blocks:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


@MODELS.register_module()
class EfficientMod(BaseModule):
    """EfficientMod backbone.

    A stem (7x7 conv, stride 4), then four stages of modulation blocks
    followed by attention blocks, with a 3x3 stride-2 downsample between
    stages. Dense outputs are the stages' last features (strides 4, 8, 16, 32);
    the classification feature is the last stage, layer-normed per position
    and globally averaged.

    Args:
        arch (str | dict): One of ``'xxs'``, ``'xs'``, ``'s'``, ``'s_conv'``, or
            a dict with the keys:

            - **widths** (list[int]): Width of each stage.
            - **depths** (list[int]): Modulation blocks in each stage.
            - **attention_depths** (list[int]): Attention blocks after them.
            - **ratios** (list[int]): Expansion ratios of the modulation
              blocks, cycled anew in every stage.
            - **attention_mlp_ratios** (list[int]): Feed-forward ratio of the
              attention blocks of each stage.

            Defaults to ``'xxs'``.
        in_channels (int): Channels of the input image. Defaults to 3.
        out_indices (int | Sequence[int]): Stages whose outputs are returned,
            0-based; negative values count from the end. Defaults to
            ``(0, 1, 2, 3)``.
        out_type (str): ``'featmap'`` returns the dense (N, C, H, W) stage
            outputs, exactly as the reference's detection and segmentation
            backbones do. ``'avg_featmap'`` returns the (N, C) classification
            feature (final LayerNorm, then global average pooling) of the
            last stage, which must then be the only out index.
            Defaults to ``'featmap'``.
        frozen_stages (int): Stages whose parameters are frozen and kept in
            eval mode: -1 freezes nothing, 0 the stem, k the stem and the first
            k stages (with the downsample entering them). Defaults to -1.
        drop_path_rate (float): Stochastic depth rate, growing linearly over
            all blocks of the network. Defaults to 0.
        layer_scale_init_value (float): Initial layer scale of the modulation
            blocks. Defaults to 1e-4.
        kernel_size (int): Depthwise kernel of the context branch.
            Defaults to 7.
        with_cp (bool): Activation checkpointing: in training, each block
            keeps only its input and recomputes its activations in the
            backward pass: less memory, for a second forward pass of every
            block. The gradients are the same. Defaults to False.
        deploy (bool): Build the inference form that
            :meth:`switch_to_deploy` makes (folded norms and layer scales),
            so that a folded checkpoint rebuilds from a config, as mmpretrain's
            RepVGG does. Defaults to False.
        init_cfg (dict | list[dict], optional): Initialisation config. A
            ``Pretrained`` config may point at an mmefficientmod checkpoint or
            directly at a released upstream one (ImageNet, COCO or ADE20K),
            with an optional ``prefix`` and ``use_ema``. By default, linear and
            conv layers get truncated-normal weights (std 0.02) and zero bias.
        pretrained (str, optional): What mmseg's segmentors pass down from
            ``model.pretrained``, kept so that EfficientMod drops into their
            configs. An EfficientMod checkpoint (path or URL) is loaded as
            with ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``;
            a model-zoo name of other weights (``open-mmlab://resnet50_v1c``
            of the base configs) is ignored with a warning saying what to set.
            Defaults to None.
    """

    arch_zoo = ARCH_ZOO
    num_stages = NUM_STAGES

    def __init__(self,
                 arch: Union[str, Dict] = 'xxs',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 out_type: str = 'featmap',
                 frozen_stages: int = -1,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-4,
                 kernel_size: int = 7,
                 with_cp: bool = False,
                 deploy: bool = False,
                 init_cfg: Optional[Union[Dict, List[Dict]]] = None,
                 pretrained: Optional[str] = None):
        self.arch_settings = parse_arch(arch)
        self.out_indices = parse_out_indices(out_indices)
        # Unchecked, some bad values fail far away (a conv's size mismatch)
        # and others run silently wrong (drop_path_rate=1 gives NaN).
        for ok, name, expected, value in [
            (is_int(in_channels) and in_channels >= 1, 'in_channels',
             'an integer >= 1 (channels of the input images)', in_channels),
            (out_type
             in OUT_TYPES, 'out_type', f'one of {OUT_TYPES}', out_type),
            (is_int(frozen_stages) and -1 <= frozen_stages <= NUM_STAGES,
             'frozen_stages', f'in [-1, {NUM_STAGES}] (an integer: -1 '
             'freezes nothing, 0 the stem, k the stem and k stages)',
             frozen_stages),
            (_is_real(drop_path_rate) and 0 <= drop_path_rate < 1,
             'drop_path_rate', 'a number in [0, 1) (the stochastic depth '
             'rate of the last block)', drop_path_rate),
            (_is_real(layer_scale_init_value)
             and math.isfinite(layer_scale_init_value)
             and layer_scale_init_value > 0, 'layer_scale_init_value',
             'a finite number > 0 (1e-4 in the paper)',
             layer_scale_init_value),
            (is_int(kernel_size) and kernel_size >= 1 and kernel_size % 2,
             'kernel_size', 'an odd integer >= 1 (even kernels shift the '
             'map)', kernel_size),
            (isinstance(with_cp, bool), 'with_cp', 'True or False', with_cp),
            (isinstance(deploy, bool), 'deploy', 'True or False', deploy),
            (_is_init_cfg(init_cfg), 'init_cfg', "None, a dict with a "
             "'type' (e.g. dict(type='Pretrained', checkpoint=...)) or a "
             'list of them', init_cfg),
            (pretrained is None or isinstance(pretrained, str), 'pretrained',
             'None or a checkpoint path or URL', pretrained),
        ]:
            if not ok:
                raise argument_error(name, expected, value)
        if out_type == 'avg_featmap' and self.out_indices != [3]:
            raise ValueError(
                "out_type='avg_featmap' gives the classification feature of "
                f'the last stage only; got out_indices={out_indices}. Use '
                "out_indices=(3,), or out_type='featmap' for dense outputs.")
        if pretrained is not None:
            init_cfg = self._pretrained_init_cfg(pretrained, init_cfg)
        if init_cfg is None:
            init_cfg = [
                dict(
                    type='TruncNormal',
                    layer=['Conv2d', 'Linear'],
                    std=.02,
                    bias=0.),
                dict(type='Constant', layer=['LayerNorm'], val=1., bias=0.),
            ]
        super().__init__(init_cfg=init_cfg)
        self.pretrained = pretrained
        self.in_channels = in_channels
        self.out_type = out_type
        self.frozen_stages = frozen_stages
        self.deploy = deploy

        widths = self.arch_settings['widths']
        depths = self.arch_settings['depths']
        attention_depths = self.arch_settings['attention_depths']
        ratios = self.arch_settings['ratios']
        total_blocks = sum(depths) + sum(attention_depths)
        rates = torch.linspace(0, drop_path_rate, total_blocks).tolist()

        self.stem = Downsample(in_channels, widths[0], kernel_size=7, stride=4)
        self.stages = nn.ModuleList()
        for i, width in enumerate(widths):
            blocks = [
                ModulationBlock(width, ratios[j % len(ratios)], kernel_size,
                                rates.pop(0), layer_scale_init_value, deploy)
                for j in range(depths[i])
            ] + [
                AttentionBlock(
                    width, self.arch_settings['attention_mlp_ratios'][i],
                    rates.pop(0), deploy) for _ in range(attention_depths[i])
            ]
            downsample = Downsample(widths[i - 1], width, 3, 2) if i else None
            self.stages.append(Stage(downsample, blocks, with_cp))
        if out_type == 'avg_featmap':
            self.norm = nn.LayerNorm(widths[-1])
        self._freeze_stages()

    @staticmethod
    def _pretrained_init_cfg(pretrained: str, init_cfg) -> Optional[Dict]:
        # What mmseg's ``pretrained`` argument stands for.
        if pretrained.startswith(MODEL_ZOO_SCHEMES):
            warnings.warn(
                f'EfficientMod ignores pretrained={pretrained!r}: it names '
                "another network's weights, inherited from the base config's "
                'model.pretrained. Set model.pretrained=None, and give '
                'EfficientMod weights with model.backbone.init_cfg='
                "dict(type='Pretrained', checkpoint=...) (a converted or "
                'released EfficientMod checkpoint).')
            return init_cfg
        if init_cfg is not None:
            raise ValueError(
                f'EfficientMod got both pretrained={pretrained!r} and '
                f'init_cfg={init_cfg!r}; give the weights in one place, '
                "init_cfg=dict(type='Pretrained', checkpoint=...).")
        return dict(type='Pretrained', checkpoint=pretrained)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = checked_image_batch(x, self.in_channels, self.stem.conv.weight)
        x = self.stem(x.permute(0, 2, 3, 1))
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(
                    self.norm(x).mean(dim=(1, 2)) if self.out_type ==
                    'avg_featmap' else x.permute(0, 3, 1, 2).contiguous())
        return tuple(outs)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Turn the backbone into its inference form, in place: every block
        folds its LayerNorms' affine parts into the linear layers that read
        them, and the layer scale into its last linear layer (see the
        blocks' ``switch_to_deploy``). Outputs are unchanged up to float
        rounding (the parity fixtures to 1e-4); the state dict changes, and
        loads into a backbone built with ``deploy=True``."""
        if self.deploy:
            return
        for stage in self.stages:
            for block in stage.blocks:
                block.switch_to_deploy()
        self.deploy = True

    def _freeze_stages(self):
        frozen = [self.stem] if self.frozen_stages >= 0 else []
        frozen += list(self.stages[:max(self.frozen_stages, 0)])
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    def _own_keys(self, state_dict: Dict, prefix: str) -> Dict:
        """The entries of ``state_dict`` under ``prefix``, unprefixed; a
        classifier's final norm is left out where this backbone has none."""
        own = strip_prefix(state_dict, prefix, drop_others=True)
        if not hasattr(self, 'norm'):
            own = {k: v for k, v in own.items() if not k.startswith('norm.')}
        return own

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Whoever loads (torch, mmengine, an inferencer), weights under this
        # backbone's prefix must be of this arch and network. strict=False
        # may leave some out; none may be another arch's or network's.
        given = self._own_keys(state_dict, prefix)
        if given:
            check_fit(
                self.state_dict(),
                given,
                f"the weights under '{prefix}'" if prefix else 'the weights',
                allow_missing=True,
                allow_unexpected=False)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def init_weights(self):
        init_cfg = self.init_cfg if isinstance(self.init_cfg, dict) else None
        if init_cfg is None or init_cfg.get('type') != 'Pretrained':
            super().init_weights()
            return
        # Loaded here rather than by mmengine's PretrainedInit, so that a
        # released upstream checkpoint works as well as a converted one, and
        # every backbone weight must be in the file.
        source = init_cfg['checkpoint']
        try:
            state_dict = self._own_keys(
                backbone_weights(source, init_cfg.get('prefix'),
                                 init_cfg.get('use_ema', False)), '')
        except NotEfficientModCheckpoint as error:
            if self.pretrained is None:
                raise
            raise NotEfficientModCheckpoint(
                f'{error} It came in as pretrained={self.pretrained!r} '
                '(model.pretrained of an mmseg config): set '
                'model.pretrained=None if it names weights of another '
                'backbone.') from None
        check_fit(self.state_dict(), state_dict, f'the backbone weights of '
                  f'{source}')
        self.load_state_dict(state_dict)
        MMLogger.get_current_instance().info(f'EfficientMod: loaded {source}')
        self._is_init = True

    def get_layer_depth(self,
                        param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """Layer id of a parameter for layer-wise learning-rate decay.

        The stem is layer 0, the blocks are 1..B in network order, a
        downsample shares the id of the first block after it, and everything
        else (final norm, neck, head) is the last layer B + 1.

        Args:
            param_name (str): The parameter's name.
            prefix (str): The backbone's prefix in ``param_name``.
                Defaults to ''.

        Returns:
            tuple[int, int]: The layer id and the number of layers.
        """
        block_counts = [len(stage.blocks) for stage in self.stages]
        num_layers = sum(block_counts) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):].split('.')
        if name[0] == 'stem':
            return 0, num_layers
        if name[0] == 'stages':
            stage_id = int(name[1])
            block_id = int(name[3]) if name[2] == 'blocks' else 0
            return sum(block_counts[:stage_id]) + block_id + 1, num_layers
        return num_layers - 1, num_layers

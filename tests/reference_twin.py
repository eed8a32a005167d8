"""Test-only twin: a straightforward eager implementation of EfficientMod.

An independent, plain implementation of the reference semantics, written the
obvious way and in the layout of the released model, against which the tests
check the optimised backbone (outputs and training gradients):

* the depthwise convolutions and the downsampling convolutions work on NCHW
  tensors, the linear layers and LayerNorms on channels-last ones, with a
  ``permute`` (and a copy) at every change of layout;
* the context of a modulation block is tiled explicitly with ``repeat``;
* attention is written out as ``softmax(q @ k^T * scale) @ v``;
* every linear layer is its own ``nn.Linear``; nothing is folded or fused.

It is not part of the package. It takes the same state dict as
:class:`mmefficientmod.models.EfficientMod` (keys ``stem.*``, ``stages.*``,
``norm.*``), so both can be loaded from one converted checkpoint, and a test
checks that it reproduces the parity fixtures as well.
"""
from typing import Dict, Sequence, Tuple, Union

import torch
import torch.nn as nn

from mmefficientmod.arch import parse_arch


class RefConvNorm(nn.Module):
    """Conv2d on NCHW, then LayerNorm over channels via two permutes."""

    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding=kernel_size // 2)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x):  # NCHW -> NCHW
        x = self.conv(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class RefContext(nn.Module):
    """f (Linear) -> depthwise conv (NCHW) -> GELU -> g (Linear)."""

    def __init__(self, channels, kernel_size):
        super().__init__()
        self.fc_in = nn.Linear(channels, channels)
        self.dwconv = nn.Conv2d(
            channels,
            channels,
            kernel_size,
            padding=kernel_size // 2,
            groups=channels)
        self.act = nn.GELU()
        self.fc_out = nn.Linear(channels, channels)

    def forward(self, x):  # NHWC -> NHWC
        x = self.fc_in(x)
        x = x.permute(0, 3, 1, 2).contiguous()
        x = self.act(self.dwconv(x))
        x = x.permute(0, 2, 3, 1).contiguous()
        return self.fc_out(x)


class RefModulationBlock(nn.Module):

    def __init__(self, channels, ratio, kernel_size):
        super().__init__()
        self.ratio = ratio
        self.layer_scale = nn.Parameter(torch.ones(channels))
        self.norm = nn.LayerNorm(channels)
        self.fc_value = nn.Linear(channels, ratio * channels)
        self.act = nn.GELU() if ratio != 1 else nn.Identity()
        self.context = RefContext(channels, kernel_size)
        self.fc_out = nn.Linear(ratio * channels, channels)

    def forward(self, x):  # NCHW -> NCHW
        shortcut = x
        y = self.norm(x.permute(0, 2, 3, 1))
        value = self.act(self.fc_value(y))
        context = self.context(y).repeat(1, 1, 1, self.ratio)
        out = self.fc_out(value * context)
        out = self.layer_scale * out
        return shortcut + out.permute(0, 3, 1, 2)


class RefAttention(nn.Module):

    def __init__(self, channels, num_heads=8, min_head_dims=32):
        super().__init__()
        self.num_heads = num_heads
        self.head_dims = max(channels // num_heads, min_head_dims)
        self.scale = self.head_dims**-0.5
        inner = num_heads * self.head_dims
        self.qkv = nn.Linear(channels, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, channels)

    def forward(self, x):  # (N, L, C) -> (N, L, C)
        n, length, _ = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.num_heads, self.head_dims)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(n, length, -1)
        return self.proj(out)


class RefMlp(nn.Module):

    def __init__(self, channels, hidden):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class RefAttentionBlock(nn.Module):

    def __init__(self, channels, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(channels)
        self.attn = RefAttention(channels)
        self.norm2 = nn.LayerNorm(channels)
        self.ffn = RefMlp(channels, mlp_ratio * channels)

    def forward(self, x):  # NCHW -> NCHW
        n, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        x = x + self.attn(self.norm1(x))
        x = x + self.ffn(self.norm2(x))
        return x.transpose(1, 2).reshape(n, c, h, w)


class RefStage(nn.Module):

    def __init__(self, downsample, blocks):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x):
        if self.downsample is not None:
            x = self.downsample(x)
        for block in self.blocks:
            x = block(x)
        return x


class ReferenceEfficientMod(nn.Module):
    """Plain eager EfficientMod (see the module docstring).

    Args:
        arch (str | dict): As for :class:`mmefficientmod.models.EfficientMod`.
        out_type (str): ``'featmap'`` (NCHW stage outputs) or
            ``'avg_featmap'`` (normed, pooled last stage).
        out_indices (Sequence[int]): Stages returned with ``'featmap'``.
    """

    def __init__(self,
                 arch: Union[str, Dict] = 'xxs',
                 out_type: str = 'featmap',
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 kernel_size: int = 7):
        super().__init__()
        s = parse_arch(arch)
        self.out_type = out_type
        self.out_indices = [i % 4 for i in out_indices]
        widths = s['widths']
        self.stem = RefConvNorm(3, widths[0], 7, 4)
        self.stages = nn.ModuleList()
        for i, width in enumerate(widths):
            blocks = [
                RefModulationBlock(width, s['ratios'][j % len(s['ratios'])],
                                   kernel_size) for j in range(s['depths'][i])
            ] + [
                RefAttentionBlock(width, s['attention_mlp_ratios'][i])
                for _ in range(s['attention_depths'][i])
            ]
            down = RefConvNorm(widths[i - 1], width, 3, 2) if i else None
            self.stages.append(RefStage(down, blocks))
        if out_type == 'avg_featmap':
            self.norm = nn.LayerNorm(widths[-1])

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        if self.out_type == 'avg_featmap':
            return (self.norm(x.permute(0, 2, 3, 1)).mean(dim=(1, 2)), )
        return tuple(outs)


class ReferenceClassifier(nn.Module):
    """:class:`ReferenceEfficientMod` + a linear head.

    Loads the state dict of an mmpretrain ``ImageClassifier`` built from this
    project's configs (``backbone.*`` and ``head.fc.*``).
    """

    def __init__(self, arch='xxs', num_classes=1000):
        super().__init__()
        self.backbone = ReferenceEfficientMod(arch, out_type='avg_featmap')
        width = self.backbone.norm.normalized_shape[0]
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.backbone(x)[0])

    def load_classifier_state_dict(self, state_dict: Dict[str, torch.Tensor]):
        mapped = {}
        for key, value in state_dict.items():
            if key.startswith('backbone.'):
                mapped[key] = value
            elif key.startswith('head.fc.'):
                mapped['fc.' + key[len('head.fc.'):]] = value
        return self.load_state_dict(mapped, strict=True)

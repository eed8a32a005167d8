"""Soft knowledge distillation from a frozen teacher classifier.

:class:`KnowledgeDistillationImageClassifier` is an mmpretrain
``ImageClassifier`` (the student) whose training loss adds
``w_kd * tau^2 * KL(softmax(t / tau) || softmax(s / tau))`` to
``w_cls * L_cls(s, y)``, with ``s`` and ``t`` the student's and teacher's
logits of the same (batch-augmented) images; ``tau = 1``, ``w_kd = w_cls =
0.5`` is DeiT's soft distillation, which the paper uses. The teacher (any
mmpretrain classifier: a config file, a model dict or a module, with an
optional checkpoint loaded by :meth:`init_weights`) runs only in
:meth:`loss`, in eval mode without gradients, on the batch renormalised with
its own ``data_preprocessor``. It is not a registered submodule: not in
``parameters()`` (nor the optimizer, nor DDP) nor ``state_dict()`` (nor
checkpoints, nor the EMA model), shared rather than copied by a deep copy,
yet it follows the student through ``.to()`` / ``.cuda()`` / ``.half()``.
"""
import copy
from typing import List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.logging import print_log
from mmengine.registry import MODELS
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmpretrain.structures import DataSample

from ...checkpoint import check_fit, read_checkpoint, strip_prefix


def soft_distillation_loss(student_logits: torch.Tensor,
                           teacher_logits: torch.Tensor,
                           temperature: float = 1.0,
                           reduction: str = 'batchmean') -> torch.Tensor:
    """``tau^2 * KL(softmax(t / tau) || softmax(s / tau))``, in float32.

    Args:
        student_logits (Tensor): (N, C) logits of the student.
        teacher_logits (Tensor): (N, C) logits of the teacher.
        temperature (float): The softmax temperature ``tau``.
        reduction (str): ``'batchmean'`` (sum over classes, mean over the
            batch: the KL divergence per sample) or ``'mean'`` (mean over
            all N*C elements, as DeiT's reference code does, which is the
            former divided by C).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            'The student and the teacher must predict the same classes, but '
            f'got logits of shape {tuple(student_logits.shape)} (student) '
            f'and {tuple(teacher_logits.shape)} (teacher).')
    tau = float(temperature)
    log_p_s = F.log_softmax(student_logits.float() / tau, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / tau, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction='sum', log_target=True)
    if reduction == 'batchmean':
        denom = student_logits.shape[0]
    elif reduction == 'mean':
        denom = student_logits.numel()
    else:
        raise ValueError(f'Unknown reduction {reduction!r}; use '
                         "'batchmean' or 'mean'.")
    return kl * (tau * tau) / max(denom, 1)


class _Unregistered:
    """Holds a module outside of the owner's module tree.

    ``nn.Module.__setattr__`` registers modules, not arbitrary objects, so a
    module kept in here is invisible to ``parameters()``, ``state_dict()``,
    ``train()``, ``apply()`` and DDP. ``copy.deepcopy`` returns the holder
    itself, so copies of the owner (e.g. the EMA model) share the teacher
    instead of duplicating it.
    """

    def __init__(self, module: nn.Module):
        self.module = module

    def __deepcopy__(self, memo):
        return self


def _normalisation(preprocessor, channels: int, like: torch.Tensor):
    """(mean, std, swaps_rb) of an mmpretrain data preprocessor; identity if
    it does not normalise."""
    if preprocessor is not None and getattr(preprocessor, '_enable_normalize',
                                            False):
        mean = preprocessor.mean.to(like).view(1, -1, 1, 1)
        std = preprocessor.std.to(like).view(1, -1, 1, 1)
    else:
        mean = like.new_zeros(1, channels, 1, 1)
        std = like.new_ones(1, channels, 1, 1)
    swaps = bool(getattr(preprocessor, 'to_rgb', False))
    return mean, std, swaps


@MODELS.register_module()
class KnowledgeDistillationImageClassifier(ImageClassifier):
    """An image classifier trained with soft distillation from a frozen
    teacher.

    Args:
        backbone, neck, head, pretrained, train_cfg, data_preprocessor,
        init_cfg: The student, as for mmpretrain's ``ImageClassifier``.
        teacher (dict | nn.Module): The teacher classifier. One of

            - ``dict(config='path/or/pkg::cfg.py', checkpoint=...)``: the
              ``model`` (and top-level ``data_preprocessor``) of a config
              file; ``pkg::`` paths are looked up in the installed package's
              configs (e.g. ``mmpretrain::convnext/...py``);
            - ``dict(model=dict(type=..., ...), checkpoint=...)``: a model
              config (built in the mmpretrain scope);
            - an ``nn.Module``.

            ``checkpoint`` (path or URL, optional) is loaded by
            :meth:`init_weights`; without it the teacher keeps the weights it
            was built or initialised with, which is only useful for tests.
            The teacher must predict the student's classes; in ``'tensor'``
            mode it must return logits (as mmpretrain classifiers do).
        distill_loss_weight (float): Weight of the distillation term
            (``alpha`` in DeiT). Defaults to 0.5.
        cls_loss_weight (float, optional): Weight of the head's own losses.
            Defaults to ``1 - distill_loss_weight``.
        temperature (float): Softmax temperature ``tau``. Defaults to 1.
        distill_reduction (str): ``'batchmean'`` (per-sample KL, default) or
            ``'mean'`` (DeiT's reference code, i.e. divided by the number of
            classes too).
        adapt_teacher_inputs (bool): Renormalise the student's inputs for
            the teacher's ``data_preprocessor``. Defaults to True.
    """

    def __init__(self,
                 backbone: dict,
                 neck: Optional[dict] = None,
                 head: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 train_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 teacher: Union[dict, nn.Module, None] = None,
                 distill_loss_weight: float = 0.5,
                 cls_loss_weight: Optional[float] = None,
                 temperature: float = 1.0,
                 distill_reduction: str = 'batchmean',
                 adapt_teacher_inputs: bool = True):
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            pretrained=pretrained,
            train_cfg=train_cfg,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        if teacher is None:
            raise ValueError('KnowledgeDistillationImageClassifier needs a '
                             '`teacher`.')
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}.')
        if distill_reduction not in ('batchmean', 'mean'):
            raise ValueError(
                f'Unknown distill_reduction {distill_reduction!r}')
        self.distill_loss_weight = float(distill_loss_weight)
        self.cls_loss_weight = (1.0 -
                                self.distill_loss_weight if cls_loss_weight
                                is None else float(cls_loss_weight))
        self.temperature = float(temperature)
        self.distill_reduction = distill_reduction
        self.adapt_teacher_inputs = adapt_teacher_inputs

        teacher_module, self.teacher_checkpoint = self._build_teacher(teacher)
        teacher_module.requires_grad_(False)
        teacher_module.eval()
        self._teacher = _Unregistered(teacher_module)

    # ------------------------------------------------------------------
    # The teacher
    # ------------------------------------------------------------------
    @staticmethod
    def _build_teacher(teacher):
        if isinstance(teacher, nn.Module):
            return teacher, None
        teacher = copy.deepcopy(dict(teacher))
        checkpoint = teacher.pop('checkpoint', None)
        if 'config' in teacher:
            path = teacher.pop('config')
            # mmengine.hub resolves `pkg::` names; Config.fromfile only
            # resolves them inside `_base_`.
            cfg = get_config(path) if '::' in path else Config.fromfile(path)
            if cfg.get('custom_imports'):
                from mmengine.utils import import_modules_from_strings
                import_modules_from_strings(**cfg['custom_imports'])
            model_cfg = copy.deepcopy(cfg.model)
            if cfg.get('data_preprocessor') is not None:
                model_cfg.setdefault('data_preprocessor',
                                     copy.deepcopy(cfg.data_preprocessor))
        elif 'model' in teacher:
            model_cfg = copy.deepcopy(teacher.pop('model'))
        else:
            raise ValueError(
                '`teacher` must be an nn.Module, dict(config=..., '
                f'checkpoint=...) or dict(model=..., checkpoint=...), got '
                f'keys {sorted(teacher)}.')
        if teacher:
            raise ValueError(f'Unknown teacher keys: {sorted(teacher)}')
        # The teacher is a frozen network; no need for its batch augments.
        model_cfg.pop('train_cfg', None)
        if isinstance(model_cfg.get('data_preprocessor'), dict):
            model_cfg['data_preprocessor'].pop('batch_augments', None)
        return MMPRETRAIN_MODELS.build(model_cfg), checkpoint

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher (not a registered submodule)."""
        return self._teacher.module

    def init_weights(self):
        """Initialise the student, then the teacher and load its
        checkpoint."""
        super().init_weights()
        teacher = self.teacher
        if hasattr(teacher, 'init_weights'):
            teacher.init_weights()
        if self.teacher_checkpoint:
            self.load_teacher_checkpoint(self.teacher_checkpoint)
        else:
            print_log(
                'KnowledgeDistillationImageClassifier: no teacher checkpoint '
                'given; the teacher keeps its initial (untrained) weights.',
                logger='current',
                level=30)
        teacher.requires_grad_(False)
        teacher.eval()

    def load_teacher_checkpoint(self, filename: str) -> None:
        """Load the teacher's weights; every teacher weight must be in the
        checkpoint (an incomplete teacher would silently teach noise)."""
        state = strip_prefix(read_checkpoint(filename)['state_dict'])
        check_fit(self.teacher.state_dict(), state,
                  f'the teacher checkpoint {filename}')
        self.teacher.load_state_dict(state, strict=False)
        print_log(
            f'Loaded the distillation teacher from {filename}.',
            logger='current')

    def _apply(self, fn, *args, **kwargs):
        # .to(), .cuda(), .cpu(), .half(), ... all end here: move the
        # teacher with the student.
        super()._apply(fn, *args, **kwargs)
        holder = self.__dict__.get('_teacher')
        if holder is not None:
            holder.module._apply(fn, *args, **kwargs)
        return self

    def _set_device(self, device: torch.device) -> None:
        super()._set_device(device)
        holder = self.__dict__.get('_teacher')
        if holder is not None and hasattr(holder.module, '_set_device'):
            holder.module._set_device(device)

    def teacher_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Map the student's normalised batch to the teacher's
        normalisation."""
        if not self.adapt_teacher_inputs or inputs.dim() != 4:
            return inputs
        channels = inputs.shape[1]
        s_mean, s_std, s_swaps = _normalisation(self.data_preprocessor,
                                                channels, inputs)
        t_mean, t_std, t_swaps = _normalisation(
            getattr(self.teacher, 'data_preprocessor', None), channels, inputs)
        flip = s_swaps != t_swaps and channels == 3
        if not flip and torch.equal(s_mean, t_mean) and torch.equal(
                s_std, t_std):
            return inputs
        pixels = inputs * s_std + s_mean
        if flip:
            pixels = pixels.flip(1)
        return (pixels - t_mean) / t_std

    @torch.no_grad()
    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The frozen teacher's logits for a batch of student inputs."""
        teacher = self.teacher
        if teacher.training:
            teacher.eval()
        out = teacher(self.teacher_inputs(inputs), mode='tensor')
        if isinstance(out, (tuple, list)):  # e.g. heads with two outputs
            out = torch.stack([o for o in out]).mean(0)
        return out.detach()

    # ------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------
    def loss(self, inputs: torch.Tensor,
             data_samples: List[DataSample]) -> dict:
        """The head's (weighted) losses plus ``loss_distill``."""
        feats = self.extract_feat(inputs)
        losses = self.head.loss(feats, data_samples)
        if self.cls_loss_weight != 1.0:
            losses = {
                k: (v * self.cls_loss_weight
                    if k.startswith('loss') and torch.is_tensor(v) else v)
                for k, v in losses.items()
            }
        if self.distill_loss_weight > 0:
            student_logits = self.head(feats)
            teacher_logits = self.teacher_logits(inputs)
            losses['loss_distill'] = self.distill_loss_weight * \
                soft_distillation_loss(student_logits, teacher_logits,
                                       self.temperature,
                                       self.distill_reduction)
        return losses

"""The fixes of mmefficientmod.stack_fixes, each shown to be needed."""
import pickle

import pytest
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner import checkpoint as mmengine_checkpoint

import mmefficientmod  # noqa: F401  (applies the fixes)
from mmefficientmod import EfficientMod

TINY_ARCH = dict(widths=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                 attention_depths=[0, 0, 1, 0], ratios=[2],
                 attention_mlp_ratios=[2] * 4)


class TinyClassifier(BaseModel):

    def __init__(self):
        super().__init__()
        self.backbone = EfficientMod(TINY_ARCH, out_indices=(3, ), out_type='avg_featmap')
        self.head = torch.nn.Linear(32, 2)

    def forward(self, inputs, labels=None, mode='tensor'):
        logits = self.head(self.backbone(inputs)[0])
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, labels))
        return logits


class ToyData(torch.utils.data.Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        return dict(inputs=torch.randn(3, 32, 32, generator=generator), labels=index % 2)


def make_runner(work_dir, max_iters, **kwargs):
    return Runner(
        model=TinyClassifier(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyData(), batch_size=2, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=True),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        **kwargs)


def test_training_checkpoint_loads_and_resumes(tmp_path):
    make_runner(tmp_path, max_iters=2).train()
    checkpoint = tmp_path / 'iter_2.pth'
    # The gap: mmengine's own loader cannot read its training checkpoints on torch >= 2.6.
    with pytest.raises(pickle.UnpicklingError):
        mmengine_checkpoint.load_from_local(str(checkpoint), map_location='cpu')

    saved = mmengine_checkpoint.CheckpointLoader.load_checkpoint(str(checkpoint))
    assert saved['meta']['iter'] == 2 and 'message_hub' in saved

    resumed = make_runner(tmp_path, max_iters=4, resume=True)
    resumed.train()
    assert resumed.iter == 4
    state = resumed.optim_wrapper.optimizer.state_dict()['state']
    assert all(s['step'].item() == 4 for s in state.values())

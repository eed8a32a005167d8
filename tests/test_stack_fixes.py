"""The fixes of mmefficientmod.stack_fixes: each shown to be needed, applied
only where the installed versions have the gap, and nothing else changed."""
import json
import pickle
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner import checkpoint as mmengine_checkpoint

import mmefficientmod  # noqa: F401  (applies the fixes)
from mmefficientmod import EfficientMod

TINY_ARCH = dict(
    widths=[8, 16, 24, 32],
    depths=[1, 1, 1, 1],
    attention_depths=[0, 0, 1, 0],
    ratios=[2],
    attention_mlp_ratios=[2] * 4)


class TinyClassifier(BaseModel):

    def __init__(self):
        super().__init__()
        self.backbone = EfficientMod(
            TINY_ARCH, out_indices=(3, ), out_type='avg_featmap')
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
        return dict(
            inputs=torch.randn(3, 32, 32, generator=generator),
            labels=index % 2)


def make_runner(work_dir, max_iters, **kwargs):
    return Runner(
        model=TinyClassifier(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=ToyData(),
            batch_size=2,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        **kwargs)


@pytest.mark.e2e
def test_training_checkpoint_loads_and_resumes(tmp_path):
    make_runner(tmp_path, max_iters=2).train()
    checkpoint = tmp_path / 'iter_2.pth'
    # The gap: stock mmengine's torch.load (weights_only by default on
    # torch >= 2.6, no allowlist) cannot read its own training checkpoints.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(str(checkpoint), map_location='cpu')

    saved = mmengine_checkpoint.CheckpointLoader.load_checkpoint(
        str(checkpoint))
    assert saved['meta']['iter'] == 2 and 'message_hub' in saved

    resumed = make_runner(tmp_path, max_iters=4, resume=True)
    resumed.train()
    assert resumed.iter == 4
    state = resumed.optim_wrapper.optimizer.state_dict()['state']
    assert all(s['step'].item() == 4 for s in state.values())


# Runs in a fresh interpreter: records every function and class attribute of
# mmengine's modules, imports the plugin, and prints what changed.
SNAPSHOT = r"""
import importlib, inspect, json, pkgutil, sys
import mmengine
names = sorted(m.name for m in pkgutil.walk_packages(
    mmengine.__path__, 'mmengine.') if '.tests' not in m.name)
modules = []
for name in names:
    try:
        modules.append(importlib.import_module(name))
    except Exception:
        pass  # optional dependencies of mmengine that are not installed

def snapshot():
    seen = {}
    for module in modules:
        for key, value in list(vars(module).items()):
            seen[f'{module.__name__}.{key}'] = id(value)
            if inspect.isclass(value) and value.__module__ == module.__name__:
                for attr, member in list(vars(value).items()):
                    seen[f'{module.__name__}.{key}.{attr}'] = id(member)
    from mmengine.runner.checkpoint import CheckpointLoader
    for prefix, loader in CheckpointLoader._schemes.items():
        seen[f'CheckpointLoader._schemes[{prefix!r}]'] = id(loader)
    return seen

before = snapshot()
import mmefficientmod
from mmefficientmod import stack_fixes
after = snapshot()
changed = sorted(k for k in before if after.get(k) != before[k])
print(json.dumps(dict(changed=changed, applied=[
    f.name for f in stack_fixes.FIXES if f.needed()])))
"""

# What each fix changes in mmengine; nothing else may change.
FIX_CHANGES = {
    'safe_checkpoints': {
        "CheckpointLoader._schemes['']",
        "CheckpointLoader._schemes['http://']",
        "CheckpointLoader._schemes['https://']",
        'mmengine.runner.checkpoint.load_from_local',
        'mmengine.runner.checkpoint.load_from_http',
    },
    'cpu_distributed': {
        'mmengine.dist.utils._init_dist_pytorch',
        'mmengine.model.wrappers.distributed.MMDistributedDataParallel'
        '.__init__',
    },
    'empty_dataset_error': {
        'mmengine.dataset.base_dataset.BaseDataset._serialize_data',
    },
}
# The mmdeploy fixes (tests/test_mmdeploy_fixes.py) change nothing in
# mmengine; they apply where mmdeploy 1.3.1 is installed.
MMDEPLOY_FIXES = ('mmdeploy_torchscript_export', 'mmdeploy_roi_align_symbolic',
                  'mmdeploy_openvino')


def run_snapshot(extra=''):
    proc = subprocess.run([sys.executable, '-c', extra + SNAPSHOT],
                          stdout=subprocess.PIPE,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.e2e
def test_import_changes_mmengine_only_by_the_listed_fixes():
    result = run_snapshot()
    # On this stack (torch >= 2.6, mmengine 0.10, no GPU) all three apply.
    applied = [f for f in result['applied'] if f not in MMDEPLOY_FIXES]
    assert applied == list(FIX_CHANGES)
    expected = set().union(*FIX_CHANGES.values())
    assert set(result['changed']) == expected


@pytest.mark.e2e
def test_no_fix_applies_to_a_stack_without_the_gaps():
    # A later mmengine (and a GPU for the distributed fix) has none of them,
    # nor a stack without mmdeploy any of the mmdeploy fixes.
    result = run_snapshot(
        'import mmengine; mmengine.__version__ = "0.11.0"\n'
        'import importlib.metadata as md; version = md.version\n'
        'def no_mmdeploy(name):\n'
        '    if name == "mmdeploy":\n'
        '        raise md.PackageNotFoundError(name)\n'
        '    return version(name)\n'
        'md.version = no_mmdeploy\n')
    assert result['applied'] == []
    assert result['changed'] == []

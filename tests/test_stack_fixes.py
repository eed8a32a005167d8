"""The fixes of mmefficientmod.stack_fixes: each shown to be needed, applied
by the opt-in (``import mmefficientmod.apply_stack_fixes``) only where the
installed versions have the gap, and nothing else changed; a plain
``import mmefficientmod`` changes nothing and loads no mmpretrain."""
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
from _detseg_utils import make_runner
from mmengine.runner import checkpoint as mmengine_checkpoint

import mmefficientmod.apply_stack_fixes  # noqa: F401


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


# Runs in a fresh interpreter: records every attribute of mmengine's modules
# (and of the classes they define), imports the plugin, then opts in to the
# fixes, and prints what changed at each step.
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
    for module in list(sys.modules.values()):
        if not getattr(module, '__name__', '').startswith('mmengine'):
            continue
        for key, value in list(vars(module).items()):
            seen[f'{module.__name__}.{key}'] = id(value)
            if inspect.isclass(value) and value.__module__ == module.__name__:
                for attr, member in list(vars(value).items()):
                    seen[f'{module.__name__}.{key}.{attr}'] = id(member)
    from mmengine.runner.checkpoint import CheckpointLoader
    for prefix, loader in CheckpointLoader._schemes.items():
        seen[f'CheckpointLoader._schemes[{prefix!r}]'] = id(loader)
    return seen

def changes(before, after):
    return sorted(k for k in set(before) | set(after)
                  if after.get(k) != before.get(k))

before = snapshot()
import mmefficientmod
plain = snapshot()
mmpretrain_loaded = sorted(m for m in sys.modules if m.startswith('mmpretrain'))
from mmefficientmod.apply_stack_fixes import APPLIED
fixed = snapshot()
print(json.dumps(dict(by_import=changes(before, plain),
                      mmpretrain_loaded=mmpretrain_loaded,
                      by_fixes=changes(plain, fixed), applied=APPLIED)))
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


def run_snapshot(extra='', **env):
    proc = subprocess.run([sys.executable, '-c', extra + SNAPSHOT],
                          stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE,
                          text=True,
                          env=dict(os.environ, **env),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.e2e
@pytest.mark.parametrize('gpu_visible', [True, False])
def test_import_registers_and_the_opt_in_applies_the_listed_fixes(gpu_visible):
    # On this stack (torch >= 2.6, mmengine 0.10) the checkpoint and dataset
    # fixes apply; the distributed one only where no accelerator is visible.
    result = run_snapshot(**({} if gpu_visible else {
        'CUDA_VISIBLE_DEVICES': ''
    }))
    assert result['by_import'] == []
    assert result['mmpretrain_loaded'] == []
    accelerator = gpu_visible and torch.cuda.is_available()
    expected = ['safe_checkpoints'] + \
        ([] if accelerator else ['cpu_distributed']) + ['empty_dataset_error']
    applied = [f for f in result['applied'] if f not in MMDEPLOY_FIXES]
    assert applied == expected
    assert set(result['by_fixes']) == set().union(*(FIX_CHANGES[name]
                                                    for name in expected))


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
    assert result['by_import'] == result['by_fixes'] == []

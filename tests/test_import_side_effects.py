"""``import mmefficientmod`` registers and changes nothing else: in a fresh
interpreter, torch's global hook tables, ``sys.meta_path`` and every
attribute of torch, mmengine, mmdet, mmseg and mmpretrain (and of the
classes they define) are the same objects after the import as before.
Registering adds entries to MMEngine's registries, which are the same
objects throughout."""
import json
import subprocess
import sys

import pytest

SNAPSHOT = r"""
import importlib, inspect, json, sys
import torch, mmengine, mmcv.cnn, mmdet.apis, mmseg.apis, mmpretrain.apis
import mmpretrain.apis.model
LIBRARIES = ('torch', 'mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain')

def hook_tables():
    import torch.nn.modules.module as module
    import torch.utils.hooks
    tables = {name: len(value) for name, value in vars(module).items()
              if name.startswith('_global') and hasattr(value, '__len__')}
    tables['sys.meta_path'] = [id(f) for f in sys.meta_path]
    tables['sys.path_hooks'] = [id(f) for f in sys.path_hooks]
    return tables

def snapshot():
    seen = {}
    for name, module in list(sys.modules.items()):
        if name.split('.')[0] not in LIBRARIES or module is None:
            continue
        for key, value in list(vars(module).items()):
            if inspect.ismodule(value):
                continue  # a submodule imported later is not a change
            seen[f'{name}:{key}'] = id(value)
            if inspect.isclass(value) and value.__module__ == name:
                for attr, member in list(vars(value).items()):
                    seen[f'{name}:{key}.{attr}'] = id(member)
    return seen

before, tables = snapshot(), hook_tables()
modules_before = set(sys.modules)
import mmefficientmod
after = snapshot()
changed = sorted(k for k in before if after.get(k) != before[k])
# New attributes of modules that were there before the import.
added = sorted(k for k in after
               if k not in before and k.split(':')[0] in modules_before)
print(json.dumps(dict(changed=changed, added=added,
                      tables_before=tables, tables_after=hook_tables(),
                      checked=len(before))))
"""


@pytest.mark.e2e
def test_import_changes_nothing_but_the_registries():
    proc = subprocess.run([sys.executable, '-c', SNAPSHOT],
                          stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['checked'] > 10000  # the libraries were all looked at
    assert result['tables_after'] == result['tables_before']
    assert result['changed'] == []
    assert result['added'] == [], result['added'][:20]

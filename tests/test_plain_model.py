"""The model files hold one forward pass of public PyTorch ops.

The model is the reference that training, evaluation, export and the
libraries' tools all run, so its source is read for what would make it a
different function in some of them: private ops (``torch.ops.*``), branches
on tracing, compiling or autograd state, row chunking, and in-place ops in a
forward pass. Engines that need such things live in ``mmefficientmod.deploy``.
"""
import ast
import glob
import os.path as osp

import pytest
from parity import REPO

MODEL_FILES = sorted(
    glob.glob(osp.join(REPO, 'mmefficientmod', 'models', 'layers', '*.py')) +
    glob.glob(osp.join(REPO, 'mmefficientmod', 'models', 'backbones', '*.py')))
# Names that only a second, state-dependent path would need.
FORBIDDEN_NAMES = {
    'is_tracing', 'is_scripting', 'is_compiling', 'is_grad_enabled',
    'enable_grad', 'set_grad_enabled', 'is_inference_mode_enabled',
    'inference_mode', 'mkldnn'
}


def forbidden_constructs(source: str):
    """(line, what) of every forbidden construct in ``source``."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if node.attr == 'ops' and isinstance(
                    node.value, ast.Name) and node.value.id == 'torch':
                found.append((node.lineno, 'torch.ops'))
            if node.attr in FORBIDDEN_NAMES:
                found.append((node.lineno, node.attr))
        name = getattr(node, 'id', None) or getattr(node, 'name', None)
        if isinstance(name, str) and (name in FORBIDDEN_NAMES
                                      or 'chunk' in name.lower()):
            found.append((node.lineno, name))
        if isinstance(node, ast.FunctionDef) and node.name == 'forward':
            found += in_place_calls(node)
    return found


def in_place_calls(forward: ast.FunctionDef):
    """In-place tensor methods (``x.add_(...)``) and ``inplace=True``."""
    found = []
    for node in ast.walk(forward):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr.endswith('_') \
                and not func.attr.startswith('_'):
            found.append((node.lineno, f'in-place {func.attr}'))
        for keyword in node.keywords:
            if keyword.arg == 'inplace':
                found.append((node.lineno, 'inplace='))
    return found


def test_the_checker_sees_each_construct():
    source = '''
import torch
def helper(x):
    if torch.jit.is_tracing() or torch.is_grad_enabled():
        return torch.ops.mkldnn._linear_pointwise(x)
    return map_row_chunks(x)
class Block:
    def forward(self, x):
        return x.add_(1) + torch.nn.functional.gelu(x, inplace=True)
'''
    found = {what for _, what in forbidden_constructs(source)}
    assert found == {
        'is_tracing', 'is_grad_enabled', 'torch.ops', 'mkldnn',
        'map_row_chunks', 'in-place add_', 'inplace='
    }


@pytest.mark.parametrize(
    'path', MODEL_FILES, ids=[osp.basename(p) for p in MODEL_FILES])
def test_model_file_is_plain(path):
    with open(path) as f:
        found = forbidden_constructs(f.read())
    assert not found, (f'{osp.relpath(path, REPO)}: {found}; the model keeps '
                       'one forward pass of public ops (engines belong in '
                       'mmefficientmod/deploy).')


def test_the_model_files_are_found():
    names = {osp.basename(p) for p in MODEL_FILES}
    assert {'efficientmod.py', 'modulation.py', 'attention.py'} <= names

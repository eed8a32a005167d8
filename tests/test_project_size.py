"""The size bars of the plugin: the machinery must not outgrow the model.

The package holds what a user imports and stays at most 3,800 lines of
Python; checkpoint handling (``checkpoint/`` and the loading checks in the
backbone and the config hook) at most 700; the tools' Python stays smaller
than the package.
"""
import ast
import glob
import os.path as osp

from _detseg_utils import REPO

PACKAGE_LIMIT = 3800
CHECKPOINT_LIMIT = 700
# The loading checks outside checkpoint/ (file, class, methods): the
# backbone's own refusal of unfitting weights and the config hook's refusal
# of unfitting checkpoints in test and val runs. The checks they call
# (check_fit, ...) are in checkpoint/.
LOADING_CHECKS = (
    ('mmefficientmod/models/backbones/efficientmod.py', 'EfficientMod',
     ('_own_keys', '_load_from_state_dict')),
    ('mmefficientmod/engine/config_check_hook.py',
     'EfficientModConfigCheckHook', ('after_load_checkpoint', )),
)


def python_lines(folder: str) -> int:
    files = glob.glob(osp.join(REPO, folder, '**', '*.py'), recursive=True)
    assert files, f'no Python under {folder}'
    total = 0
    for path in files:
        with open(path) as f:
            total += len(f.read().splitlines())
    return total


def method_lines(path: str, cls: str, names) -> int:
    with open(osp.join(REPO, path)) as f:
        tree = ast.parse(f.read())
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name in names:
                    found[item.name] = item.end_lineno - item.lineno + 1
    assert set(found) == set(names), (path, cls, names, found)
    return sum(found.values())


def test_package_stays_small():
    assert python_lines('mmefficientmod') <= PACKAGE_LIMIT


def test_checkpoint_handling_stays_small():
    checks = sum(method_lines(*entry) for entry in LOADING_CHECKS)
    assert python_lines('mmefficientmod/checkpoint') + checks <= \
        CHECKPOINT_LIMIT, checks


def test_tools_smaller_than_package():
    assert python_lines('tools') < python_lines('mmefficientmod')


def test_line_count_sees_every_file(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'a' / 'x.py').write_text('1\n2\n')
    (tmp_path / 'a' / 'y.py').write_text('3\n')
    (tmp_path / 'a' / 'z.sh').write_text('4\n')
    assert python_lines(str(tmp_path / 'a')) == 3

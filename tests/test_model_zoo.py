"""The model zoo: model-index.yml and the metafiles cover every config,
mmpretrain finds the ImageNet models by name after
``mmefficientmod.register_model_index()``, the wheel carries
``mmefficientmod/.mim``, and ``mim train`` runs a config."""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest
from _detseg_utils import REPO, load_tool, run

import mmefficientmod

synthetic_data = load_tool('dataset_converters/synthetic_data')

CONFIGS = sorted(
    osp.relpath(p, REPO)
    for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py')))


@pytest.fixture(scope='module', autouse=True)
def hub():
    mmefficientmod.register_model_index()


def load_index():
    from modelindex.load_model_index import load
    index = load(osp.join(REPO, 'model-index.yml'))
    index.build_models_with_collections()
    return index


def in1k_models(index):
    """The models trained (or fine-tuned) on ImageNet-1k."""
    return [
        m for m in index.models
        if m.metadata.data['Training Data'] == 'ImageNet-1k'
    ]


def test_model_index_covers_every_config_once():
    index = load_index()
    models = {m.name: m for m in index.models}
    assert len(models) == len(index.models), 'duplicate model names'
    assert sorted(m.config for m in index.models) == CONFIGS
    for name, m in models.items():
        # mmpretrain's convention: the model is named after its config
        assert osp.splitext(osp.basename(m.config))[0] == name
        meta = m.metadata.data
        for key in ('FLOPs', 'Parameters', 'Training Data'):
            assert meta.get(key), f'{name}: Metadata lacks {key}'
        assert m.data['Converted From']['Code'].startswith(
            'https://github.com/ma-xu/EfficientMod'), name
        # no weights published by this project (the metafile says null)
        assert m.weights is None, name


def test_paper_results_are_marked_as_the_papers():
    index = load_index()
    with_results = [m for m in index.models if m.results]
    # every ImageNet classifier, and the s / s-conv COCO and ADE20K models
    assert len(with_results) == 8 + 2 + 2
    for m in with_results:
        assert m.data.get('Results Source') == 'Paper', m.name
        for result in m.results:
            assert result.task and result.dataset and result.metrics
    released = [
        m for m in with_results if m.data['Converted From'].get('Weights')
    ]
    assert all('drive.google.com' in m.data['Converted From']['Weights']
               for m in released)


def test_metafile_parameters_match_the_configs():
    """The Parameters in the metafile are those of the model the config
    builds (FLOPs come from the same tool, get_flops.py)."""
    from mmengine.analysis import parameter_count
    from mmpretrain import get_model
    for m in in1k_models(load_index()):
        model = get_model(m.name)
        assert parameter_count(model)[''] == m.metadata.data['Parameters'], \
            m.name


def test_get_model_builds_every_imagenet_model_by_name():
    import torch
    from mmpretrain import get_model, list_models
    names = [m.name for m in in1k_models(load_index())]
    assert len(names) == 9
    assert sorted(list_models('efficientmod*in1k')) == sorted(names)
    for name in names:
        model = get_model(name)
        assert type(model.backbone).__name__ == 'EfficientMod', name
        with torch.no_grad():
            logits = model(torch.randn(1, 3, 64, 64), mode='tensor')
        assert logits.shape == (1, 1000), name


def test_classification_inferencer_by_name(tmp_path):
    """``ImageClassificationInferencer('<name>', pretrained=CKPT)``: a
    checkpoint with four class names comes back with those names."""
    import numpy as np
    import torch
    from mmengine.registry import init_default_scope
    from mmpretrain import ImageClassificationInferencer, get_model
    name = 'efficientmod-xxs_1xb32_embedded-64px'
    model = get_model(name)
    classes = ['circle', 'square', 'triangle', 'stripes']
    ckpt = str(tmp_path / 'ckpt.pth')
    torch.save(
        {
            'state_dict': model.state_dict(),
            'meta': {
                'dataset_meta': {
                    'classes': classes
                }
            }
        }, ckpt)
    # As in a fresh process: earlier tests' runners leave mmengine's scope.
    init_default_scope('mmpretrain')
    inferencer = ImageClassificationInferencer(name, pretrained=ckpt)
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    result = inferencer(image)[0]
    assert result['pred_class'] in classes
    assert len(result['pred_scores']) == len(classes)


def test_unknown_name_says_so():
    from mmpretrain import get_model
    with pytest.raises(ValueError, match='efficientmod-xxxl'):
        get_model('efficientmod-xxxl_8xb256_in1k')


def test_hub_knows_the_models_after_the_explicit_call():
    """``import mmefficientmod`` loads no mmpretrain and registers nothing
    with its hub; ``register_model_index()`` does, once."""
    lines = [
        'import sys', 'import mmefficientmod',
        'assert "mmpretrain" not in sys.modules, "imported mmpretrain"',
        'from mmpretrain import list_models',
        'assert not list_models("efficientmod*"), "registered on import"',
        'assert mmefficientmod.register_model_index()',
        'assert not mmefficientmod.register_model_index()',
        'print(sorted(list_models("efficientmod-xxs_8xb256")))'
    ]
    proc = run([sys.executable, '-c', '\n'.join(lines)], timeout=300)
    assert proc.stdout.strip().splitlines()[-1] == \
        "['efficientmod-xxs_8xb256_in1k']"


def _checkout_copy(dst):
    """The tracked and untracked-but-not-ignored files of the checkout, so
    that building a wheel leaves the checkout itself untouched."""
    files = subprocess.run(
        ['git', 'ls-files', '--cached', '--others', '--exclude-standard'],
        cwd=REPO,
        check=True,
        stdout=subprocess.PIPE,
        text=True).stdout.split()
    for rel in files:
        if osp.isfile(osp.join(REPO, rel)):
            os.makedirs(osp.dirname(osp.join(dst, rel)), exist_ok=True)
            shutil.copy2(osp.join(REPO, rel), osp.join(dst, rel))
    return dst


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    if shutil.which('git') is None:
        pytest.skip('git is needed to list the checkout')
    root = tmp_path_factory.mktemp('wheel')
    src = _checkout_copy(str(root / 'src'))
    subprocess.run([
        sys.executable, '-m', 'pip', 'wheel', '--no-deps',
        '--no-build-isolation', '-q', '-w',
        str(root / 'dist'), src
    ],
                   check=True,
                   stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT)
    (path, ) = glob.glob(str(root / 'dist' / 'mmefficientmod-*.whl'))
    return path


@pytest.mark.e2e
def test_wheel_carries_configs_tools_and_model_index(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    mim = 'mmefficientmod/.mim/'
    assert mim + 'model-index.yml' in names
    for config in CONFIGS:
        assert mim + config in names, config
    for folder in ('efficientmod', 'mask_rcnn', 'sem_fpn'):
        assert f'{mim}configs/{folder}/metafile.yml' in names
    for tool in ('train.py', 'test.py', '_runner_utils.py'):
        assert f'{mim}tools/{tool}' in names


@pytest.mark.e2e
def test_mim_train_runs_a_config_from_the_installed_wheel(wheel, tmp_path):
    """``mim train mmefficientmod CONFIG_NAME`` finds the config inside the
    installed package (not the checkout) and trains on the embedded data."""
    pytest.importorskip('mim', reason='openmim is not installed')
    site = tmp_path / 'site'
    subprocess.run([
        sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target',
        str(site), wheel
    ],
                   check=True)
    data = str(tmp_path / 'imagenet')
    synthetic_data.make_imagenet(
        data, num_per_class_train=4, num_per_class_val=2)
    work = tmp_path / 'work'
    bin_dir = osp.dirname(sys.executable)
    opts = [
        f'{s}_dataloader.dataset.data_root={data}'
        for s in ('train', 'val', 'test')
    ]
    proc = run([
        sys.executable, '-m', 'mim', 'train', 'mmefficientmod',
        'efficientmod-xxs_1xb32_embedded-64px.py', '--work-dir',
        str(work), '--cfg-options', 'train_cfg.max_epochs=1', *opts
    ],
               cwd=str(tmp_path),
               PYTHONPATH=str(site),
               PATH=bin_dir + os.pathsep + os.environ.get('PATH', ''))
    assert str(site) in proc.stdout, 'the config was not taken from .mim'
    assert osp.isfile(work / 'epoch_1.pth'), proc.stdout[-3000:]
    assert 'accuracy/top1' in proc.stdout


@pytest.mark.e2e
def test_mim_train_and_test_after_the_readme_setup(tmp_path):
    """After ``tools/install.sh`` (an editable install), ``mim train`` and
    ``mim test`` find our config by name, in the checkout, from any folder."""
    pytest.importorskip('mim', reason='openmim is not installed')
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    assert osp.isfile(mim), 'openmim has no `mim` command in this environment'
    data = str(tmp_path / 'imagenet')
    synthetic_data.make_imagenet(
        data, num_per_class_train=4, num_per_class_val=2)
    config = 'efficientmod-xxs_1xb32_embedded-64px.py'
    roots = [
        f'{s}_dataloader.dataset.data_root={data}'
        for s in ('train', 'val', 'test')
    ]
    train = run(
        [
            mim, 'train', 'mmefficientmod', config, '--work-dir',
            str(tmp_path / 'train'), '--cfg-options', 'train_cfg.max_epochs=1'
        ] + roots,
        cwd=str(tmp_path),
        PYTHONWARNINGS='ignore')
    found = osp.realpath(osp.join(REPO, 'configs', 'efficientmod', config))
    assert f'will use {found}' in train.stdout, (
        'mim did not find the config in this checkout; run tools/install.sh, '
        'which links the package where mim looks:\n' + train.stdout[-2000:])
    checkpoint = tmp_path / 'train' / 'epoch_1.pth'
    assert checkpoint.is_file(), train.stdout[-3000:]
    test = run([
        mim, 'test', 'mmefficientmod', config, '--checkpoint',
        str(checkpoint), '--work-dir',
        str(tmp_path / 'test'), '--cfg-options', roots[-1]
    ],
               cwd=str(tmp_path),
               PYTHONWARNINGS='ignore')
    assert f'will use {found}' in test.stdout
    assert 'accuracy/top1' in test.stdout, test.stdout[-3000:]

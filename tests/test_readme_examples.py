"""The README's Python examples run as written.

They read what the main job writes: its checkpoints under
``work_dirs/main_job/`` and its data under ``data/embedded/``. Here the data
comes from the documented generator
(``tools/dataset_converters/make_embedded_data.py``, the same images the main
job writes), and each checkpoint is an untrained model of the config the main
job trains for that path, saved with its dataset's classes and palette as a trained one
would be, so the examples' code, paths, configs and APIs are what is tested,
not the main job's accuracy. Each example runs in a fresh
interpreter from a folder laid out like the repository root after the main
job.
"""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from doc_commands import snippets, string_constants

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MAKE_DATA = osp.join(REPO, 'tools', 'dataset_converters',
                     'make_embedded_data.py')
# What the main job writes at each path the README names, and from which
# config (tools/main_job.py: PRETRAIN_CONFIG and TASKS).
MAIN_JOB_CHECKPOINTS = {
    'work_dirs/main_job/pretrain/efficientmod-xxs_embedded-pretrain.pth':
    'configs/efficientmod/efficientmod-xxs_1xb32_embedded-64px.py',
    'work_dirs/main_job/det/imagenet/epoch_2.pth':
    'configs/mask_rcnn/mask-rcnn_efficientmod-xxs_fpn_embedded.py',
    'work_dirs/main_job/seg/imagenet/iter_60.pth':
    'configs/sem_fpn/fpn_efficientmod-xxs_embedded-shapes.py',
}


def readme_examples_on_main_job_outputs():
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    return [
        pytest.param(snippet.code, id=f'README.md:{snippet.line}')
        for snippet in snippets('README.md', text)
        if snippet.kind == 'python' and any(
            value.startswith(('work_dirs/main_job/', 'data/embedded/'))
            for value in string_constants(snippet.code))
    ]


def make_data(root):
    embedded = osp.join(root, 'data', 'embedded')
    for name in ('coco', 'ade20k_shapes'):
        subprocess.run(
            [sys.executable, MAKE_DATA, '--root', embedded, '--only', name],
            check=True,
            capture_output=True)
    # The main job writes its ImageNet-layout set to imagenet_pretrain.
    other = osp.join(root, 'imagenet_root')
    subprocess.run(
        [sys.executable, MAKE_DATA, '--root', other, '--only', 'imagenet'],
        check=True,
        capture_output=True)
    os.rename(
        osp.join(other, 'imagenet'), osp.join(embedded, 'imagenet_pretrain'))


@pytest.fixture(scope='module')
def after_main_job(tmp_path_factory):
    """A folder laid out like the repository root after the main job."""
    from mmengine.config import Config

    from mmefficientmod.models.from_config import build_model_from_config
    root = str(tmp_path_factory.mktemp('after_main_job'))
    os.symlink(osp.join(REPO, 'configs'), osp.join(root, 'configs'))
    make_data(root)
    for path, config in MAIN_JOB_CHECKPOINTS.items():
        cfg = Config.fromfile(osp.join(REPO, config))
        model = build_model_from_config(cfg)
        # The runner saves the dataset's metainfo; the inferencers read the
        # class names and the palette from it.
        metainfo = cfg.train_dataloader.dataset.get('metainfo', {})
        os.makedirs(osp.dirname(osp.join(root, path)), exist_ok=True)
        torch.save(
            {
                'state_dict': model.state_dict(),
                'meta': {
                    'dataset_meta': dict(metainfo)
                }
            }, osp.join(root, path))
    return root


def test_readme_has_examples_on_main_job_outputs():
    assert len(readme_examples_on_main_job_outputs()) >= 3


@pytest.mark.e2e
@pytest.mark.parametrize('code', readme_examples_on_main_job_outputs())
def test_readme_example_runs(code, after_main_job):
    for value in string_constants(code):
        if value.startswith('work_dirs/main_job/'):
            assert value in MAIN_JOB_CHECKPOINTS, (
                f'{value}: add the config the main job trains for it to '
                'MAIN_JOB_CHECKPOINTS')
    done = subprocess.run([sys.executable, '-c', code],
                          cwd=after_main_job,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

# What `mim train/test mmefficientmod ...` and mmpretrain's model hub read
# from the installed package, under mmefficientmod/.mim, as in the
# OpenMMLab packages.
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def add_mim_extension():
    """Put configs, tools and model-index.yml under mmefficientmod/.mim.

    Wheels and source distributions get copies; an editable install gets
    symlinks to the checkout (copies on Windows), so edits show at once.
    Other setup.py commands (egg_info, dist_info) leave .mim alone.
    """
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'copy' if os.name == 'nt' else 'symlink'
    elif 'sdist' in sys.argv or 'bdist_wheel' in sys.argv:
        mode = 'copy'
    else:
        return
    repo = osp.dirname(osp.abspath(__file__))
    mim = osp.join(repo, 'mmefficientmod', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(repo, name), osp.join(mim, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim), dst)
        elif osp.isdir(src):
            shutil.copytree(
                src,
                dst,
                ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)


add_mim_extension()
setup(
    name='mmefficientmod',
    version='0.1.0',
    description='EfficientMod backbones for OpenMMLab 2.0 '
    '(MMDetection, MMSegmentation, MMPretrain)',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['mmefficientmod', 'mmefficientmod.*']),
    # mmefficientmod/.mim, listed in MANIFEST.in
    include_package_data=True,
    python_requires='>=3.8',
    # The heavy stack (torch, mmcv with compiled ops) is set up by
    # tools/install.sh, which pins a combination known to work together.
    install_requires=[
        'mmengine>=0.10.0,<1.0', 'mmcv>=2.0.0,<2.2.0', 'mmdet>=3.0.0',
        'mmsegmentation>=1.0.0', 'mmpretrain>=1.0.0'
    ],
    zip_safe=False,
)

from setuptools import find_packages, setup

setup(
    name='mmefficientmod',
    version='0.1.0',
    description='EfficientMod backbones for OpenMMLab 2.0 '
    '(MMDetection, MMSegmentation, MMPretrain)',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['mmefficientmod', 'mmefficientmod.*']),
    python_requires='>=3.8',
    # The heavy stack (torch, mmcv with compiled ops) is set up by
    # tools/install.sh, which pins a combination known to work together.
    install_requires=[
        'mmengine>=0.10.0,<1.0', 'mmcv>=2.0.0,<2.2.0', 'mmdet>=3.0.0',
        'mmsegmentation>=1.0.0', 'mmpretrain>=1.0.0'
    ],
)

"""This project's ImageNet models in mmpretrain's model hub.

mmpretrain's :class:`~mmpretrain.apis.ModelHub` knows the models of
mmpretrain's own ``.mim/model-index.yml`` and those registered with
``ModelHub.register_model_index``; it does not look for plugins. So
``configs/efficientmod/metafile.yml`` is registered with it, and then
``mmpretrain.get_model``, ``mmpretrain.list_models`` and
``ImageClassificationInferencer`` know the EfficientMod classifiers by name
(``'efficientmod-xxs_8xb256_in1k'``).

``import mmefficientmod`` does not do it (it would import mmpretrain, which
takes seconds and which a detection or segmentation user does not need):
call :func:`register_model_index` once before ``get_model``.

The files are read from the checkout when the package is imported from one
(an editable install), else from ``.mim`` inside the installed package, where
a wheel carries copies of them as OpenMMLab packages do. Only the
classification metafile is registered: the hub builds every model with
mmpretrain's registry, which the detectors and segmentors of
``model-index.yml`` are not in (``mim search`` reads those).
"""
import os.path as osp
from typing import Optional

_PACKAGE_DIR = osp.dirname(osp.realpath(__file__))
CLASSIFICATION_METAFILE = osp.join('configs', 'efficientmod', 'metafile.yml')
# Present once the metafile is registered.
CHECK_NAME = 'efficientmod-xxs_8xb256_in1k'


def model_zoo_root() -> Optional[str]:
    """The folder holding ``model-index.yml`` and ``configs/``, or None."""
    # The checkout first: a wheel built in it leaves copies in .mim that its
    # later edits would not reach.
    for root in (osp.dirname(_PACKAGE_DIR), osp.join(_PACKAGE_DIR, '.mim')):
        if osp.isfile(osp.join(root, 'model-index.yml')) and osp.isfile(
                osp.join(root, CLASSIFICATION_METAFILE)):
            return root
    return None


def register_model_index() -> bool:
    """Register the EfficientMod classifiers with mmpretrain's model hub
    (imports mmpretrain), so that ``mmpretrain.get_model``,
    ``list_models`` and the inferencers know them by name. Registering
    again does nothing.

    Returns:
        bool: Whether this call registered the models.
    """
    from mmpretrain.apis.model import ModelHub
    root = model_zoo_root()
    if root is None or ModelHub.has(CHECK_NAME):
        return False
    ModelHub.register_model_index(
        osp.join(root, CLASSIFICATION_METAFILE), config_prefix=root)
    return True

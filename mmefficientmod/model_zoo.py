"""This project's ImageNet models in mmpretrain's model hub.

mmpretrain's ``ModelHub`` knows its own ``.mim/model-index.yml`` and what
``ModelHub.register_model_index`` adds; it does not look for plugins.
:func:`register_model_index` adds ``configs/efficientmod/metafile.yml``
(from the checkout of an editable install, else from the ``.mim`` copy a
wheel carries), so that ``get_model``, ``list_models`` and the inferencers
know the classifiers by name. ``import mmefficientmod`` does not call it: it
would import mmpretrain, which a detection or segmentation user does not
need. Only classifiers are registered: the hub builds with mmpretrain's
registry (``mim search`` reads the detectors and segmentors).
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

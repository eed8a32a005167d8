"""This project's ImageNet models in mmpretrain's model hub.

mmpretrain's :class:`~mmpretrain.apis.ModelHub` knows the models of
mmpretrain's own ``.mim/model-index.yml`` and those registered with
``ModelHub.register_model_index``; it does not look for plugins. So
``configs/efficientmod/metafile.yml`` is registered with it, and then
``mmpretrain.get_model``, ``mmpretrain.list_models`` and
``ImageClassificationInferencer`` know the EfficientMod classifiers by name
(``'efficientmod-xxs_8xb256_in1k'``).

``import mmefficientmod`` does not import mmpretrain for this (it takes
seconds, and a detection or segmentation user does not need it): when
mmpretrain is already imported the metafile is registered at once, otherwise
when mmpretrain's hub module (``mmpretrain.apis.model``) is first imported.
That is done by a finder on ``sys.meta_path`` which answers for that one
module only, lets Python's own finders find it, registers the metafile right
after the module has run, and removes itself.

The files are read from the checkout when the package is imported from one
(an editable install), else from ``.mim`` inside the installed package, where
a wheel carries copies of them as OpenMMLab packages do. Only the
classification metafile is registered: the hub builds every model with
mmpretrain's registry, which the detectors and segmentors of
``model-index.yml`` are not in (``mim search`` reads those).
"""
import importlib.abc
import os.path as osp
import sys
from typing import Optional

_PACKAGE_DIR = osp.dirname(osp.realpath(__file__))
CLASSIFICATION_METAFILE = osp.join('configs', 'efficientmod', 'metafile.yml')
# Present once the metafile is registered.
CHECK_NAME = 'efficientmod-xxs_8xb256_in1k'
# The module that defines mmpretrain's ModelHub.
HUB_MODULE = 'mmpretrain.apis.model'


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
    (imports mmpretrain). Registering again does nothing.

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


class _RegisterAfterLoading(importlib.abc.Loader):
    """Runs the hub module with its own loader, then registers."""

    def __init__(self, loader, finder):
        self._loader = loader
        self._finder = finder

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        register_model_index()

    def __getattr__(self, name):
        # get_source, get_code, ... for inspect, linecache and tracebacks.
        return getattr(self._loader, name)


class _HubModuleFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader of ``HUB_MODULE`` that the
    other finders return."""

    def find_spec(self, fullname, path, target=None):
        if fullname != HUB_MODULE:
            return None
        for finder in sys.meta_path:
            find_spec = getattr(finder, 'find_spec', None)
            if finder is self or find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisterAfterLoading(spec.loader, self)
                return spec
        return None


def register_model_index_when_mmpretrain_loads() -> None:
    """Register now if mmpretrain's hub is imported, else when it is."""
    if HUB_MODULE in sys.modules:
        register_model_index()
    elif not any(isinstance(f, _HubModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _HubModuleFinder())

"""Loading checkpoints without running code carried by them.

A ``.pth`` file is a pickle: loading it with ``weights_only=False`` calls
whatever functions the file names, so a crafted file runs its own code.
torch's ``weights_only`` unpickler refuses every function or class that is
not on an allowlist. Besides tensors, OpenMMLab 2.0 training checkpoints and
the authors' released EfficientMod checkpoints hold a handful of harmless
types; :data:`CHECKPOINT_GLOBALS` allows exactly those, and everything else is
refused before any of it runs.

A file the user trusts can be loaded with full unpickling by listing it in the
``MMEFFICIENTMOD_TRUSTED_CHECKPOINTS`` environment variable (or ``trusted=True``
in Python). That runs any code the file carries: only do it for files you
made or got from someone you trust.
"""
import argparse
import os
import os.path as osp
import pickle
import re
from typing import List, Optional
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.logging import HistoryBuffer, MMLogger

from .bad_files import unreadable_checkpoint_error
from .strict_loading import tag_source

TRUSTED_CHECKPOINTS_ENV = 'MMEFFICIENTMOD_TRUSTED_CHECKPOINTS'


def _numpy_globals() -> List:
    """numpy's pickling entry points under both of their module names.

    Arrays and scalars pickle as calls to ``_reconstruct``/``scalar``, which
    numpy 2 moved from ``numpy.core`` to ``numpy._core``; files written with
    either version name their own module.
    """
    multiarray = np._core.multiarray
    found = [np.ndarray, np.dtype]
    for func in (multiarray._reconstruct, multiarray.scalar):
        for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
            found.append((func, f'{module}.{func.__name__}'))
    # Each dtype pickles as an instance of its own class (numpy >= 1.25).
    found += sorted({type(np.dtype(code))
                     for code in np.typecodes['All']},
                    key=lambda cls: cls.__name__)
    return found


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint names a function or class outside the allowlist."""


def _statistics_method(owner, name: str):
    """``getattr`` restricted to what mmengine's message hub pickles with it.

    Pickle protocol 2 writes a nested function such as ``HistoryBuffer.min``
    (kept in every buffer's statistics methods) as ``getattr(HistoryBuffer,
    'min')``. A general ``getattr`` would reach any method of any allowed
    class, so only the buffer's statistics methods are handed out.
    """
    allowed = {'min', 'max', 'current', 'mean'}
    allowed |= set(HistoryBuffer._statistics_methods)
    if owner is not HistoryBuffer or name not in allowed:
        owner_name = getattr(owner, '__qualname__', type(owner).__name__)
        raise UnsafeCheckpointError(f'refused getattr({owner_name}, {name!r})')
    return getattr(owner, name)


#: What OpenMMLab 2.0 training checkpoints (the message hub's history
#: buffers with their statistics methods, numpy scalars and arrays in logs
#: and metrics) and the released EfficientMod checkpoints (the training
#: script's ``argparse.Namespace``) hold besides tensors and the containers
#: torch allows by default.
CHECKPOINT_GLOBALS = [
    HistoryBuffer,
    (_statistics_method, '__builtin__.getattr'),
    (_statistics_method, 'builtins.getattr'),
    argparse.Namespace,
] + _numpy_globals()

ALLOWED_NAMES = {
    item[1]
    if isinstance(item, tuple) else f'{item.__module__}.{item.__qualname__}'
    for item in CHECKPOINT_GLOBALS
}


def _refused_globals(path: str, error: Exception) -> List[str]:
    """The globals of ``path`` that neither torch nor we allow."""
    try:
        with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (ValueError, RuntimeError, OSError):
        names = []  # not a zip checkpoint: only the error names one
    names = [name for name in names if name not in ALLOWED_NAMES]
    # torch re-raises what the unpickler refused inside its own message.
    found = re.findall(
        r'GLOBAL (\S+) was not an allowed global|refused (getattr\(.*?\))',
        str(error))
    return names or [name or call for name, call in found]


def _trusted(source: str) -> bool:
    listed = os.environ.get(TRUSTED_CHECKPOINTS_ENV, '')
    return any(entry == source or (osp.exists(entry) and osp.exists(source)
                                   and osp.samefile(entry, source))
               for entry in (e.strip() for e in listed.split(',')) if entry)


def load_checkpoint(filename: str,
                    map_location='cpu',
                    trusted: bool = False,
                    source: Optional[str] = None):
    """``torch.load`` in ``weights_only`` mode with the checkpoint allowlist.

    Args:
        filename (str): Local file to load.
        map_location: As for ``torch.load``. Defaults to ``'cpu'``.
        trusted (bool): Load with full unpickling, which runs any code the
            file carries. Also enabled by listing the file (or ``source``) in
            ``MMEFFICIENTMOD_TRUSTED_CHECKPOINTS`` (comma-separated).
            Defaults to False.
        source (str, optional): Where the file came from (a URL), for
            messages and the trust list. Defaults to ``filename``.

    Returns:
        The loaded object.

    Raises:
        UnsafeCheckpointError: The file names a function or class that is not
            allowed; nothing from it was run.
        UnreadableCheckpointError: The file is empty, cut short or not a
            checkpoint (an HTML page, text...); the message says which.
    """
    source = source or filename
    return tag_source(_load(filename, map_location, trusted, source), source)


def _load(filename: str, map_location, trusted: bool, source: str):
    try:
        if trusted or _trusted(source):
            MMLogger.get_current_instance().warning(
                f'Loading {source} with full unpickling (trusted by the '
                'user): any code it carries runs.')
            return torch.load(
                filename, map_location=map_location, weights_only=False)
        with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except Exception as error:
        refused = _refused_globals(filename, error) if isinstance(
            error, pickle.UnpicklingError) else []
        if not refused:
            # An empty, truncated or non-checkpoint file gets one error
            # naming it; other failures (a missing device...) stay as they
            # are.
            unreadable = unreadable_checkpoint_error(filename, source, error)
            if unreadable is None:
                raise
            raise unreadable from None
        refused = ', '.join(refused)
        raise UnsafeCheckpointError(
            f'Refused to load the checkpoint {source}: it names {refused}, '
            'which is none of the types that OpenMMLab training checkpoints '
            'and the released EfficientMod checkpoints hold (tensors, numpy '
            'arrays and scalars, argparse.Namespace, mmengine '
            'HistoryBuffer). Unpickling it could run code from the file, so '
            'nothing from it was run. If you trust this file (you made it, '
            'or it comes from someone you trust), allow it explicitly with '
            f'{TRUSTED_CHECKPOINTS_ENV}={source} in the environment: it is '
            'then loaded with full unpickling, which runs any code it '
            'carries.') from None


def _local_path(filename: str) -> str:
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return filename


def _cached_download(url: str, model_dir: Optional[str] = None) -> str:
    """Download ``url`` once into torch hub's checkpoint cache."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    path = osp.join(model_dir, osp.basename(urlparse(url).path))
    if not osp.isfile(path):
        torch.hub.download_url_to_file(url, path)
    return path


def load_local_checkpoint(filename: str, map_location=None):
    """mmengine ``CheckpointLoader`` scheme ``''``: a local file, safely."""
    return load_checkpoint(_local_path(filename), map_location)


def load_url_checkpoint(url: str,
                        map_location=None,
                        model_dir: Optional[str] = None,
                        progress: bool = True):
    """mmengine ``CheckpointLoader`` scheme ``http(s)://``, safely.

    As mmengine's loader, rank 0 downloads first and the other ranks read the
    cached file after a barrier. ``progress`` is accepted for mmengine's
    signature; torch hub's download always reports progress.
    """
    rank, world_size = get_dist_info()
    if rank == 0:
        path = _cached_download(url, model_dir)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            path = _cached_download(url, model_dir)
    return load_checkpoint(path, map_location, source=url)


def open_checkpoint(filename: str, map_location='cpu'):
    """Load a checkpoint for the plugin, always through the allowlist.

    Local files and http(s) URLs are loaded here; other mmengine schemes
    (``open-mmlab://``, ``torchvision://``, ...) go through mmengine's
    ``CheckpointLoader``, whose loaders end in the two safe ones once
    :mod:`mmefficientmod.stack_fixes` has registered them.
    """
    if filename.startswith(('http://', 'https://')):
        return load_url_checkpoint(filename, map_location)
    if '://' in filename:
        from mmengine.runner.checkpoint import CheckpointLoader
        return CheckpointLoader.load_checkpoint(filename, map_location)
    return load_local_checkpoint(filename, map_location)

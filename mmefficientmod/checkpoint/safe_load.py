"""Loading checkpoints without running code carried by them: a ``.pth``
file is a pickle, which can name any function to call. Every load goes
through torch's ``weights_only`` unpickler with :data:`CHECKPOINT_GLOBALS`;
anything else is refused before any of it runs, unless the user trusts the
file's bytes (their SHA-256 in ``MMEFFICIENTMOD_TRUSTED_CHECKPOINTS``)."""
import argparse
import hashlib
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

TRUSTED_CHECKPOINTS_ENV = 'MMEFFICIENTMOD_TRUSTED_CHECKPOINTS'


def _numpy_globals() -> List:
    """numpy's pickling entry points under both module names (numpy 2 moved
    ``numpy.core`` to ``numpy._core``) and every dtype class."""
    multiarray = np._core.multiarray
    found = [np.ndarray, np.dtype] + [
        (func, f'{module}.{func.__name__}')
        for func in (multiarray._reconstruct, multiarray.scalar)
        for module in ('numpy.core.multiarray', 'numpy._core.multiarray')
    ]
    found += sorted({type(np.dtype(code))
                     for code in np.typecodes['All']},
                    key=lambda cls: cls.__name__)
    return found


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint names a function or class outside the allowlist."""


def _statistics_method(owner, name: str):
    """``getattr`` restricted to the statistics methods of mmengine's
    ``HistoryBuffer``, which pickle protocol 2 writes as ``getattr(cls,
    name)``; a general ``getattr`` would reach any method of any class."""
    allowed = {
        'min', 'max', 'current', 'mean', *HistoryBuffer._statistics_methods
    }
    if owner is not HistoryBuffer or name not in allowed:
        owner_name = getattr(owner, '__qualname__', type(owner).__name__)
        raise UnsafeCheckpointError(f'refused getattr({owner_name}, {name!r})')
    return getattr(owner, name)


#: Besides tensors: the message hub's history buffers, numpy values in logs
#: and metrics, and the released files' ``argparse.Namespace``.
CHECKPOINT_GLOBALS = [
    HistoryBuffer,
    (_statistics_method, '__builtin__.getattr'),
    (_statistics_method, 'builtins.getattr'),
    argparse.Namespace,
] + _numpy_globals()


def _refused_globals(path: str, error: Exception) -> List[str]:
    """The globals of ``path`` that neither torch nor we allow."""
    try:
        with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (ValueError, RuntimeError, OSError):
        names = []  # not a zip checkpoint: only the error names one
    # torch re-raises what the unpickler refused inside its own message.
    found = re.findall(
        r'GLOBAL (\S+) was not an allowed global|refused (getattr\(.*?\))',
        str(error))
    return names or [name or call for name, call in found]


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _trusted(path: str) -> bool:
    listed = os.environ.get(TRUSTED_CHECKPOINTS_ENV, '').lower()
    listed = {entry.strip() for entry in listed.split(',')} - {''}
    return bool(listed) and f'sha256:{file_sha256(path)}' in listed


def load_checkpoint(filename: str,
                    map_location='cpu',
                    trusted: bool = False,
                    source: Optional[str] = None):
    """``torch.load`` in ``weights_only`` mode with the checkpoint allowlist
    (:class:`UnsafeCheckpointError` for anything else, nothing run;
    :class:`UnreadableCheckpointError` for a file that is no checkpoint);
    ``trusted`` (or the file's ``sha256:<hex>`` listed in the environment):
    full unpickling. ``source`` (a URL) names the file in messages."""
    source = source or filename
    try:
        if trusted or _trusted(filename):
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
            # Other failures (a missing device...) stay as they are.
            unreadable = unreadable_checkpoint_error(filename, source, error)
            if unreadable is None:
                raise
            raise unreadable from None
        raise UnsafeCheckpointError(
            f'Refused to load the checkpoint {source}: it names '
            f'{", ".join(refused)}, which is none of the types that '
            'OpenMMLab training checkpoints and the released EfficientMod '
            'checkpoints hold (tensors, numpy arrays and scalars, '
            'argparse.Namespace, mmengine HistoryBuffer). Unpickling it '
            'could run code from the file, so nothing from it was run. If '
            'you trust this file (you made it, or it comes from someone you '
            'trust), allow these bytes explicitly with '
            f'{TRUSTED_CHECKPOINTS_ENV}=sha256:{file_sha256(filename)} in '
            'the environment: they are then loaded with full unpickling, '
            'which runs any code they carry.') from None


def load_local_checkpoint(filename: str, map_location=None):
    """mmengine ``CheckpointLoader`` scheme ``''``: a local file, safely."""
    return load_checkpoint(osp.expanduser(filename), map_location)


def cached_path(url: str, model_dir: Optional[str] = None) -> str:
    """``url``'s file in torch hub's folder, prefixed by a hash of the URL."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    return osp.join(model_dir, f'{key}-{osp.basename(urlparse(url).path)}')


def load_url_checkpoint(url: str,
                        map_location=None,
                        model_dir: Optional[str] = None,
                        progress: bool = True):
    """mmengine's ``http(s)://`` scheme, safely; rank 0 downloads."""
    path = cached_path(url, model_dir)
    rank, world_size = get_dist_info()
    if rank == 0 and not osp.isfile(path):
        os.makedirs(osp.dirname(path), exist_ok=True)
        torch.hub.download_url_to_file(url, path, progress=progress)
    if world_size > 1:
        torch.distributed.barrier()
    return load_checkpoint(path, map_location, source=url)


def open_checkpoint(filename: str, map_location='cpu'):
    """Load a checkpoint through the allowlist; other schemes
    (``open-mmlab://``...) go through mmengine's ``CheckpointLoader``, whose
    loaders end in the two above once the stack fixes registered them."""
    if filename.startswith(('http://', 'https://')):
        return load_url_checkpoint(filename, map_location)
    if '://' in filename:
        from mmengine.runner.checkpoint import CheckpointLoader
        return CheckpointLoader.load_checkpoint(filename, map_location)
    return load_local_checkpoint(filename, map_location)

"""One clear error for a file that is not a readable PyTorch checkpoint,
where torch names neither the file nor the cause (a bare ``EOFError`` for a
0-byte download, advice to use ``weights_only=False`` for an HTML page):
:func:`describe_bad_file` says what the file is from its first bytes."""
import os.path as osp
import pickle
import struct
import zipfile
from typing import Optional


class UnreadableCheckpointError(ValueError):
    """A checkpoint file that is empty, cut short or not a checkpoint."""


def _zip_finding(path: str) -> Optional[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return ('a zip archive cut short (its end, which lists its content, '
                'is missing): the file is truncated, e.g. by an interrupted '
                'download or a full disk while it was saved')
    outside = [n for n in names if n.startswith('/') or '..' in n.split('/')]
    if outside:
        return (f'a zip archive with an entry outside it ({outside[0]}), '
                'which torch.save never writes: not a checkpoint')
    if any(name.endswith('/constants.pkl') for name in names):
        return ('a TorchScript archive (torch.jit.save), not a checkpoint: '
                "load it with torch.jit.load, or save the model's "
                'state_dict() with torch.save')
    if not any(name.endswith('data.pkl') for name in names):
        return f'a zip archive that is not a PyTorch checkpoint ({names[:5]})'
    return None


def describe_bad_file(path: str) -> Optional[str]:
    """What ``path`` holds when it cannot be a checkpoint; None when its
    beginning looks like one (a zip or a pickle)."""
    size = osp.getsize(path)
    if size == 0:
        return ('an empty file (0 bytes): the download or copy that made it '
                'did not finish')
    with open(path, 'rb') as f:
        head = f.read(4096)
    if head.startswith(b'PK'):
        return _zip_finding(path)
    if head[:1] == b'\x80':  # a pickle (protocol 2+): torch's legacy format
        return None
    lowered = head.lstrip().lower()
    if lowered.startswith((b'<!doctype html', b'<html', b'<?xml', b'<head')):
        return (f'an HTML page ({size} bytes), not a checkpoint: the '
                'download saved a web page (a sign-in, error or redirect '
                'page) instead of the file')
    if head.startswith(b'version https://git-lfs'):
        return ('a Git LFS pointer, not the checkpoint itself: fetch the '
                'file with "git lfs pull"')
    if head.startswith(b'\x1f\x8b'):
        return 'a gzip archive: unpack it first'
    if head.startswith(b'\x93NUMPY'):
        return 'a NumPy .npy array, not a PyTorch checkpoint'
    if len(head) > 8 and head[8:9] == b'{' and \
            int.from_bytes(head[:8], 'little') < size:
        return ('a safetensors file: load it with '
                'safetensors.torch.load_file and save the result with '
                'torch.save')
    text = head.decode('utf-8', errors='replace')
    if '\ufffd' not in text and all(c.isprintable() or c in '\r\n\t'
                                    for c in text[:512]):
        first = (text.strip().splitlines() or [''])[0][:80]
        return (f'a text file ({size} bytes, starting {first!r}), not a '
                'checkpoint')
    return (f'{size} bytes that are neither a PyTorch checkpoint (a zip '
            'archive or a pickle) nor a known format')


def unreadable_checkpoint_error(
    path: str,
    source: Optional[str] = None,
    error: Optional[BaseException] = None
) -> Optional[UnreadableCheckpointError]:
    """The error for ``path`` (downloaded from ``source``) when it is no
    checkpoint or ``error`` (``torch.load``'s) says it is cut short; None
    when the file looks sound (``error`` has another cause)."""
    if not osp.isfile(path):
        return None
    found = describe_bad_file(path)
    # How torch reports content that stops or is damaged.
    damaged = isinstance(
        error,
        (EOFError, pickle.UnpicklingError, IndexError, struct.error,
         zipfile.BadZipFile)) or isinstance(error, RuntimeError) and any(
             sign in str(error)
             for sign in ('PytorchStreamReader', 'corrupt', 'EOF'))
    if found is None and damaged:
        found = (f'a file of {osp.getsize(path)} bytes whose content stops '
                 f'or breaks off ({type(error).__name__}: '
                 f'{str(error).strip() or "no detail"}): it is truncated or '
                 'corrupt')
    if found is None:
        return None
    where, cached = path, ''
    if source not in (None, path):  # a download, cached at path
        where = f'{source} (read from {path})'
        cached = (f' The download is cached: delete {path} so that it is '
                  'fetched anew.')
    return UnreadableCheckpointError(
        f'Cannot read the checkpoint {where}: it is {found}. Download or copy '
        'it again (compare its size and checksum with the source), or point '
        f'to another checkpoint.{cached}')


def check_readable(path: str) -> None:
    """Refuse a ``path`` that is visibly no complete checkpoint, unloaded."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'The checkpoint {path} does not exist.')
    error = unreadable_checkpoint_error(path)
    if error is not None:
        raise error

"""One clear error for a file that is not a readable PyTorch checkpoint.

torch reports such files with messages that name neither the file nor the
cause: a 0-byte file (an interrupted download) gives a bare ``EOFError``, a
truncated one "failed finding central directory", an HTML page saved as
``.pth`` an unpickling error that advises ``weights_only=False``.
:func:`unreadable_checkpoint_error` looks at the file's first bytes and
size, and names the file, what it holds and what to do.
"""
import os.path as osp
import pickle
import struct
import zipfile
from typing import Optional

#: What to do about a file that is damaged or not what was meant.
REDOWNLOAD = ('Download or copy it again (compare its size and checksum with '
              'the source), or point to another checkpoint.')


class UnreadableCheckpointError(ValueError):
    """A checkpoint file that is empty, cut short or not a checkpoint."""


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode('utf-8')
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in '\r\n\t' for c in text[:512])


def _zip_finding(path: str) -> Optional[str]:
    """What is wrong with a zip file, or None for a complete PyTorch one."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return ('a zip archive cut short (its end, which lists its content, '
                'is missing): the file is truncated, e.g. by an interrupted '
                'download or a full disk while it was saved')
    if any(name.endswith('/constants.pkl') for name in names):
        return ('a TorchScript archive (torch.jit.save), not a checkpoint: '
                "load it with torch.jit.load, or save the model's "
                'state_dict() with torch.save')
    if not any(name.endswith('data.pkl') for name in names):
        shown = ', '.join(names[:5]) + (', ...' if len(names) > 5 else '')
        return f'a zip archive that is not a PyTorch checkpoint ({shown})'
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
    if head[:1] == b'\x80':  # a pickle (protocol 2+): torch's legacy format
        return None
    if _is_text(head):
        first = head.decode('utf-8').strip().splitlines()
        first = first[0][:80] if first else ''
        return (f'a text file ({size} bytes, starting {first!r}), not a '
                'checkpoint')
    return (f'{size} bytes that are neither a PyTorch checkpoint (a zip '
            'archive or a pickle) nor a known format')


def _breaks_off(error: BaseException) -> bool:
    """Whether ``error`` is how torch reports content that stops or is
    damaged (rather than, say, a device that is missing)."""
    if isinstance(error, (EOFError, pickle.UnpicklingError, IndexError,
                          struct.error, zipfile.BadZipFile)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        sign in text for sign in ('PytorchStreamReader', 'corrupt', 'EOF'))


def unreadable_checkpoint_error(
        path: str, source: str,
        error: BaseException) -> Optional[UnreadableCheckpointError]:
    """The error to raise instead of ``error`` (what ``torch.load`` raised
    for ``path``), or None when the file looks sound and ``error`` has
    another cause (a device that is missing, say), which is re-raised.

    Args:
        path (str): The local file that was read.
        source (str): What the user gave (a URL, or ``path``).
        error (BaseException): What torch raised.
    """
    if not osp.isfile(path):
        return None
    found = describe_bad_file(path)
    if found is None and _breaks_off(error):
        found = (f'a file of {osp.getsize(path)} bytes whose content stops '
                 f'or breaks off ({type(error).__name__}: '
                 f'{str(error).strip() or "no detail"}): it is truncated or '
                 'corrupt')
    if found is None:
        return None
    where = source if source == path else f'{source} (read from {path})'
    cached = '' if source == path else (
        f' The download is cached: delete {path} so that it is fetched '
        'anew.')
    return UnreadableCheckpointError(
        f'Cannot read the checkpoint {where}: it is {found}. {REDOWNLOAD}'
        f'{cached}')


def check_readable(path: str) -> None:
    """Raise :class:`UnreadableCheckpointError` when ``path`` is visibly
    not a complete checkpoint (empty, truncated zip, not a checkpoint),
    without loading it."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'The checkpoint {path} does not exist.')
    found = describe_bad_file(path)
    if found is not None:
        raise UnreadableCheckpointError(
            f'Cannot read the checkpoint {path}: it is {found}. {REDOWNLOAD}')


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` passes :func:`check_readable`."""
    try:
        check_readable(path)
    except (UnreadableCheckpointError, OSError):
        return False
    return True

"""A file that is not a readable checkpoint gives one error that names it,
says what it holds and what to do, through every reader: the plugin's
loader, ``init_cfg``, mmengine's ``load_checkpoint`` (the inferencers and
the runner), tools/test.py and the publish tool (the converter and resume:
test_bad_inputs_e2e.py)."""
import io
import zipfile

import pytest
import torch
from mmengine.runner import load_checkpoint as mmengine_load_checkpoint

from mmefficientmod import EfficientMod
from mmefficientmod.checkpoint.bad_files import (UnreadableCheckpointError,
                                                 check_readable)
from mmefficientmod.checkpoint.safe_load import load_checkpoint


def _checkpoint_bytes(legacy=False):
    buffer = io.BytesIO()
    torch.save({'state_dict': EfficientMod('xxs').state_dict()},
               buffer,
               _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def _lfs_pointer():
    return (b'version https://git-lfs.github.com/spec/v1\n'
            b'oid sha256:' + b'0' * 64 + b'\nsize 19000000\n')


def _zip_without_weights():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        archive.writestr('readme.txt', 'hello')
    return buffer.getvalue()


#: name -> (content maker, words the message must contain)
BAD_FILES = {
    'empty': (lambda: b'', 'empty file (0 bytes)'),
    'truncated': (lambda: _checkpoint_bytes()[:5000], 'truncated'),
    'truncated_legacy':
    (lambda: _checkpoint_bytes(legacy=True)[:5000], 'truncated'),
    'html':
    (lambda: b'<!DOCTYPE html><html><body>Sign in</body></html>', 'HTML page'),
    'text': (lambda: b'model weights will be uploaded soon\n', 'text file'),
    'lfs': (_lfs_pointer, 'Git LFS pointer'),
    'zip': (_zip_without_weights, 'not a PyTorch checkpoint'),
    'random': (lambda: bytes(range(7, 256)) * 4, 'neither a PyTorch'),
}


@pytest.fixture(params=sorted(BAD_FILES))
def bad_file(request, tmp_path):
    make, words = BAD_FILES[request.param]
    path = tmp_path / f'{request.param}.pth'
    path.write_bytes(make())
    return str(path), words


def assert_clear(error, path, words):
    message = str(error)
    assert path in message, message
    assert words in message, message
    assert 'again' in message or 'fetch' in message, message  # the fix
    assert message.count('\n') == 0


def test_the_loader(bad_file):
    path, words = bad_file
    with pytest.raises(UnreadableCheckpointError) as info:
        load_checkpoint(path)
    assert_clear(info.value, path, words)


def test_mmengine_load_checkpoint(bad_file):
    """What the inferencers, get_model and the runner call."""
    path, words = bad_file
    with pytest.raises(UnreadableCheckpointError) as info:
        mmengine_load_checkpoint(EfficientMod('xxs'), path)
    assert_clear(info.value, path, words)


def test_init_cfg(bad_file):
    path, words = bad_file
    backbone = EfficientMod(
        'xxs', init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(UnreadableCheckpointError) as info:
        backbone.init_weights()
    assert_clear(info.value, path, words)


def test_publish_tool(bad_file, load_tool, tmp_path):
    path, words = bad_file
    publish = load_tool('model_converters/publish_ema')
    with pytest.raises(SystemExit) as info:
        publish.main([path, str(tmp_path / 'out.pth')])
    assert_clear(info.value.code, path, words)


def test_sound_files_pass(tmp_path):
    for legacy in (False, True):
        path = tmp_path / f'good_{legacy}.pth'
        path.write_bytes(_checkpoint_bytes(legacy))
        check_readable(str(path))
        assert 'state_dict' in load_checkpoint(str(path))


def test_torchscript_archive_is_named(tmp_path):
    path = tmp_path / 'scripted.pth'
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(UnreadableCheckpointError, match='TorchScript'):
        load_checkpoint(str(path))

"""Checkpoints are loaded in torch's ``weights_only`` mode with an allowlist.

A checkpoint carrying a pickle payload (here: code that writes a marker file)
is refused, naming the file, the refused type and the opt-in, through every
path that loads checkpoints: the plugin's loader, ``init_cfg`` Pretrained,
mmengine's ``load_checkpoint`` and ``resume``, http(s) URLs, the converter
and the publish tool (the test tools and mmpretrain's own are in
``test_classification_mim_tools.py``). Nothing of it runs. The stack's own
checkpoints and released-style upstream ones load with no opt-in.
"""
import argparse
import functools
import http.server
import os
import pickle
import re
import sys
import threading

import numpy as np
import pytest
import torch
from _detseg_utils import run
from mmengine.runner import load_checkpoint as mmengine_load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader
from parity import load_parity_fixture

import mmefficientmod  # noqa: F401  (registers the safe loaders)
from mmefficientmod import EfficientMod
from mmefficientmod.checkpoint import convert_released
from mmefficientmod.checkpoint.safe_load import (TRUSTED_CHECKPOINTS_ENV,
                                                 UnsafeCheckpointError,
                                                 cached_path, file_sha256,
                                                 load_checkpoint)


class Payload:
    """Unpickling this calls ``exec`` on code that writes ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f'open({self.marker!r}, "w").write("ran")', )


@pytest.fixture
def evil(tmp_path):
    """A released-looking checkpoint whose ``args`` carry the payload."""
    marker = tmp_path / 'payload_ran'
    weights = load_parity_fixture('xxs')['checkpoint']['model']
    path = tmp_path / 'efficientmod_xxs.pth'
    torch.save({'model': weights, 'args': Payload(marker)}, path)
    return path, marker


@pytest.fixture
def released(tmp_path):
    """A checkpoint as the authors' training script saved it."""
    weights = load_parity_fixture('xxs')['checkpoint']['model']
    path = tmp_path / 'efficientmod_xxs_released.pth'
    torch.save(
        {
            'model':
            weights,
            'state_dict_ema': {
                k: v.clone()
                for k, v in weights.items()
            },
            'args':
            argparse.Namespace(
                model='efficientmod_xxs',
                lr=4e-3,
                input_size=224,
                mixup=0.8,
                drop_path=0.0,
                model_ema=True,
                output_dir='out'),
            'epoch':
            299,
            'max_accuracy':
            np.float64(76.0),
            'n_parameters':
            np.int64(4736264),
        }, path)
    return path


def assert_refused(error_text, path, marker):
    assert 'builtins.exec' in error_text
    assert str(path) in error_text
    assert TRUSTED_CHECKPOINTS_ENV in error_text
    assert not marker.exists(), 'the payload ran'


def test_payload_refused_by_the_loader(evil):
    path, marker = evil
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint(str(path))
    assert_refused(str(info.value), path, marker)


def test_payload_refused_through_init_cfg(evil):
    path, marker = evil
    backbone = EfficientMod(
        'xxs', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(UnsafeCheckpointError) as info:
        backbone.init_weights()
    assert_refused(str(info.value), path, marker)


def test_payload_refused_through_mmengine_load_checkpoint(evil):
    path, marker = evil
    with pytest.raises(UnsafeCheckpointError) as info:
        mmengine_load_checkpoint(torch.nn.Linear(2, 2), str(path))
    assert_refused(str(info.value), path, marker)


@pytest.mark.e2e
def test_payload_refused_through_resume(evil, tmp_path):
    from _detseg_utils import make_runner
    path, marker = evil
    runner = make_runner(
        tmp_path / 'work', max_iters=2, resume=True, load_from=str(path))
    with pytest.raises(UnsafeCheckpointError) as info:
        runner.train()
    assert_refused(str(info.value), path, marker)


@pytest.fixture
def http_root(tmp_path, monkeypatch):
    """A loopback HTTP server over ``tmp_path/www``, with torch hub's
    download cache under ``tmp_path``."""
    root = tmp_path / 'www'
    root.mkdir()
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


def test_urls_go_through_the_allowlist(evil, released, http_root):
    path, marker = evil
    root, base = http_root
    os.replace(path, root / 'evil.pth')
    os.replace(released, root / 'released.pth')
    with pytest.raises(UnsafeCheckpointError) as info:
        CheckpointLoader.load_checkpoint(f'{base}/evil.pth')
    assert f'{base}/evil.pth' in str(info.value)
    assert not marker.exists()
    loaded = CheckpointLoader.load_checkpoint(f'{base}/released.pth')
    assert loaded['epoch'] == 299


def test_urls_are_cached_by_the_whole_url(evil, released, http_root,
                                          monkeypatch):
    """Same file name, other URL: other bytes. Trusting URL B never runs
    the payload that URL A served under the same name."""
    path, marker = evil
    root, base = http_root
    (root / 'a').mkdir()
    (root / 'b').mkdir()
    os.replace(path, root / 'a' / 'model.pth')
    os.replace(released, root / 'b' / 'model.pth')
    with pytest.raises(UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(f'{base}/a/model.pth')
    loaded = CheckpointLoader.load_checkpoint(f'{base}/b/model.pth')
    assert loaded['epoch'] == 299
    trusted = file_sha256(cached_path(f'{base}/b/model.pth'))
    monkeypatch.setenv(TRUSTED_CHECKPOINTS_ENV, f'sha256:{trusted}')
    assert CheckpointLoader.load_checkpoint(
        f'{base}/b/model.pth')['epoch'] == 299
    with pytest.raises(UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(f'{base}/a/model.pth')
    assert not marker.exists()


def run_tool(*args):
    return run([sys.executable, *args], check=False)


@pytest.mark.e2e
def test_payload_refused_by_the_converter_and_publish_tools(evil, tmp_path):
    path, marker = evil
    for tool in ('efficientmod_to_mm.py', 'publish_ema.py'):
        dst = tmp_path / f'out_{tool}.pth'
        proc = run_tool(f'tools/model_converters/{tool}', str(path), str(dst))
        assert proc.returncode != 0
        assert_refused(proc.stdout, path, marker)
        assert not dst.exists()


def test_trust_is_in_the_bytes_named_by_the_refusal(evil, monkeypatch):
    path, marker = evil
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint(str(path))
    entry = re.search(r'sha256:[0-9a-f]{64}', str(info.value)).group(0)
    # Trusting the path is not trusting whatever lies there.
    monkeypatch.setenv(TRUSTED_CHECKPOINTS_ENV, f'other.pth,{path}')
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(str(path))
    monkeypatch.setenv(TRUSTED_CHECKPOINTS_ENV, f'other.pth,{entry}')
    load_checkpoint(str(path))
    assert marker.read_text() == 'ran'  # full unpickling, as documented
    # Other bytes at the same path are checked anew.
    marker.unlink()
    with open(path, 'ab') as f:
        f.write(b'\0')
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(str(path))
    assert not marker.exists()


def test_released_checkpoint_needs_no_opt_in(released, tmp_path):
    checkpoint = load_checkpoint(str(released))
    assert isinstance(checkpoint['args'], argparse.Namespace)
    assert checkpoint['max_accuracy'] == 76.0
    converted = convert_released(checkpoint, use_ema=True)
    assert converted['meta']['arch'] == 'xxs'
    backbone = EfficientMod(
        'xxs',
        init_cfg=dict(
            type='Pretrained', checkpoint=str(released), use_ema=True))
    backbone.init_weights()
    expected = converted['state_dict']['backbone.stem.conv.weight']
    assert torch.equal(backbone.stem.conv.weight, expected)


@pytest.mark.e2e
def test_converter_and_publish_take_released_and_own_checkpoints(
        released, tmp_path):
    converted = tmp_path / 'converted.pth'
    proc = run_tool('tools/model_converters/efficientmod_to_mm.py',
                    str(released), str(converted), '--ema')
    assert proc.returncode == 0, proc.stdout
    # A training checkpoint of mmengine (message hub, history buffers,
    # numpy scalars, optimizer and scheduler state) publishes without opt-in.
    from _detseg_utils import make_runner
    make_runner(tmp_path / 'work', max_iters=2).train()
    proc = run_tool('tools/model_converters/publish_ema.py',
                    str(tmp_path / 'work' / 'iter_2.pth'),
                    str(tmp_path / 'published.pth'))
    assert proc.returncode == 0, proc.stdout
    published = load_checkpoint(proc.stdout.strip().splitlines()[-1])
    assert 'backbone.stem.conv.weight' in published['state_dict']


def test_numpy_values_of_either_numpy_name_load(tmp_path):
    """numpy 2 pickles arrays and scalars through ``numpy._core``; files
    written with numpy 1 name ``numpy.core``. Both are allowed."""
    path = tmp_path / 'numpy.pth'
    torch.save({'array': np.arange(3.0), 'scalar': np.float32(0.5)}, path)
    data = path.read_bytes()
    assert b'numpy' in data
    loaded = load_checkpoint(str(path))
    assert loaded['scalar'] == np.float32(0.5)
    assert loaded['array'].tolist() == [0.0, 1.0, 2.0]
    import zipfile
    renamed = tmp_path / 'numpy1.pth'
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(renamed, 'w') as dst:
        for item in src.infolist():
            content = src.read(item)
            if item.filename.endswith('data.pkl'):
                content = content.replace(b'numpy._core.multiarray',
                                          b'numpy.core.multiarray')
                assert b'numpy.core.multiarray' in content
            dst.writestr(item, content)
    assert load_checkpoint(str(renamed))['scalar'] == np.float32(0.5)


def test_refusal_lists_every_refused_type(tmp_path):
    path = tmp_path / 'two.pth'
    torch.save(
        {
            'a': pickle.loads(pickle.dumps(argparse.Namespace())),
            'b': functools.partial(print, 'x')
        }, path)
    with pytest.raises(UnsafeCheckpointError, match='functools.partial'):
        load_checkpoint(str(path))


class MethodPayload:
    """Reaches a method of an allowed class through ``getattr``."""

    def __reduce__(self):
        return getattr, (np.ndarray, 'tofile')


def test_getattr_reaches_only_history_buffer_statistics(tmp_path):
    path = tmp_path / 'getattr.pth'
    torch.save({'x': MethodPayload()}, path)
    with pytest.raises(UnsafeCheckpointError, match='tofile'):
        load_checkpoint(str(path))

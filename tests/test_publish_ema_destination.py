"""publish_ema.py never replaces its input, nor an existing output without
--force."""
import os

import pytest
import torch


@pytest.fixture
def publish_ema(load_tool):
    return load_tool('model_converters/publish_ema')


@pytest.fixture
def src(tmp_path):
    path = tmp_path / 'epoch_2.pth'
    torch.save({'state_dict': {'w': torch.ones(3)}, 'meta': {}}, path)
    return path


def refused(publish_ema, *args):
    with pytest.raises(SystemExit) as exit_info:
        publish_ema.main([str(a) for a in args])
    return str(exit_info.value.code)


@pytest.mark.parametrize('flags',
                         [[], ['--no-hash'], ['--no-hash', '--force']])
def test_the_input_is_never_the_output(publish_ema, src, tmp_path, flags):
    before = src.read_bytes()
    other_spelling = tmp_path / 'sub' / '..' / src.name
    (tmp_path / 'sub').mkdir()
    for dst in (src, other_spelling):
        message = refused(publish_ema, src, dst, *flags)
        assert 'is the input checkpoint itself' in message, message
    assert src.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ['epoch_2.pth', 'sub']


@pytest.mark.parametrize('add_hash', [True, False])
def test_an_existing_output_needs_force(publish_ema, src, tmp_path, add_hash):
    dst = tmp_path / 'out.pth'
    flags = [] if add_hash else ['--no-hash']
    written = publish_ema.publish(str(src), str(dst), add_hash=add_hash)
    assert written != str(src) and os.path.isfile(written)
    before = os.stat(written).st_mtime_ns
    message = refused(publish_ema, src, dst, *flags)
    assert f'{written} already exists' in message and '--force' in message
    assert os.stat(written).st_mtime_ns == before
    assert not [n for n in os.listdir(tmp_path) if n.endswith('.tmp')]
    publish_ema.main([str(src), str(dst), '--force', *flags])
    assert torch.load(written, weights_only=True)['meta']['weights'] == 'plain'

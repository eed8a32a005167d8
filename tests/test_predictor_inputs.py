"""cpu_predictor's inputs: calibration batches checked, nan in gives nan out
at int8, one predictor shared by two threads, OpenVINO's cache checked."""
import glob
import os
import threading
import warnings

import pytest
import torch
from _detseg_utils import TINY_ARCH

from mmefficientmod import EfficientMod
from mmefficientmod.deploy import cpu_predictor
from mmefficientmod.deploy.predictor import calibration_inputs

pytest.importorskip('onnxruntime')


@pytest.fixture(scope='module')
def backbone():
    torch.manual_seed(0)
    return EfficientMod(TINY_ARCH, out_indices=(3, )).eval()


@pytest.fixture(scope='module')
def classifier():
    from mmengine.registry import init_default_scope
    from mmpretrain.models import ImageClassifier
    init_default_scope('mmpretrain')  # earlier tests may leave another
    torch.manual_seed(0)
    return ImageClassifier(
        backbone=dict(type='EfficientMod', arch=TINY_ARCH, out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=2, in_channels=32),
        data_preprocessor=dict(
            type='ClsDataPreprocessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            to_rgb=True)).eval()


def normalised(n=2, seed=0):
    return torch.randn(
        n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize('bad,message', [
    (torch.zeros(2, 3, 32, 32,
                 dtype=torch.uint8), 'batch 1 is torch.uint8: raw pixels'),
    (torch.full((2, 3, 32, 32), 200.0), 'batch 1 reaches 200: raw 0-255'),
    (normalised().index_fill_(0, torch.tensor([1]),
                              float('nan')), 'batch 1 holds nan or inf'),
    (normalised()[:, :1], 'batch 1 has 1 channels; the model takes 3'),
    (normalised()[0], 'batch 1 is a 3-D tensor'),
    (dict(img=normalised()), r"batch 1 is a dict with keys \['img'\]"),
])
def test_bad_calibration_batches_are_named(classifier, bad, message):
    with pytest.raises(ValueError, match=message + '.*normalised as'):
        calibration_inputs([normalised(), bad], classifier, 8)


def test_dataloader_batches_are_normalised_by_the_preprocessor(classifier):
    images = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)] * 2
    batches = calibration_inputs([dict(inputs=images, data_samples=None)],
                                 classifier, 8)
    assert batches[0].dtype == torch.float32
    assert batches[0].shape == (2, 3, 32, 32)
    assert batches[0].abs().max() < 3


def int8_engines():
    engines = [('onnxruntime', None)]
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
        engines.append(('openvino', [normalised(4, seed=s) for s in (1, 2)]))
    except ImportError:
        pass
    return engines


@pytest.mark.parametrize('engine,calibration', int8_engines())
def test_int8_gives_nan_for_a_nan_pixel(backbone, engine, calibration):
    predict = cpu_predictor(
        backbone,
        'int8',
        engine,
        calibration_data=calibration,
        example_shape=(1, 3, 32, 32))
    x = normalised(3)
    without = predict(x[0::2])[0]
    x[1, 0, 5, 5] = float('nan')
    out = predict(x)[0]
    assert torch.isnan(out[1]).all()
    # The others are as if the batch were without it (ONNX Runtime's int8
    # quantises the activations per batch).
    torch.testing.assert_close(out[0::2], without)
    x[0, 1, 2, 3] = float('inf')
    x[2, 2, 0, 0] = float('-inf')
    assert torch.isnan(predict(x)[0]).all()


def test_one_predictor_serves_two_threads(backbone):
    pytest.importorskip('openvino')
    predict = cpu_predictor(
        backbone, 'fp32', 'openvino', example_shape=(1, 3, 32, 32))
    inputs = [normalised(4, seed=s) for s in range(2)]
    expected = [predict(x)[0] for x in inputs]
    errors, mismatches = [], []

    def work(i):
        for _ in range(25):
            try:
                if not torch.equal(predict(inputs[i])[0], expected[i]):
                    mismatches.append(i)
            except Exception as error:  # collected, asserted below
                errors.append(repr(error))

    threads = [threading.Thread(target=work, args=(i, )) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and mismatches == []


def test_corrupted_openvino_cache_is_compiled_again(backbone, tmp_path):
    pytest.importorskip('openvino')
    cache = str(tmp_path)
    x = normalised()
    expected = cpu_predictor(
        backbone,
        'fp32',
        'openvino',
        cache_dir=cache,
        example_shape=(1, 3, 32, 32))(x)[0]
    blobs = glob.glob(os.path.join(cache, '*.blob'))
    assert len(blobs) == 1 and os.path.isfile(blobs[0] + '.sha256')
    with open(blobs[0], 'r+b') as f:
        # a quarter in: the loaded model's outputs change (measured)
        f.seek(os.path.getsize(blobs[0]) // 4)
        chunk = f.read(4096)
        f.seek(-len(chunk), os.SEEK_CUR)
        f.write(bytes(b ^ 0xFF for b in chunk))
    with pytest.warns(UserWarning, match='does not match its checksum'):
        again = cpu_predictor(
            backbone,
            'fp32',
            'openvino',
            cache_dir=cache,
            example_shape=(1, 3, 32, 32))
    torch.testing.assert_close(again(x)[0], expected)
    # The rebuilt blob is recorded, and loads without a warning.
    assert os.path.isfile(blobs[0] + '.sha256')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        cpu_predictor(
            backbone,
            'fp32',
            'openvino',
            cache_dir=cache,
            example_shape=(1, 3, 32, 32))
    assert not [w for w in caught if 'checksum' in str(w.message)]

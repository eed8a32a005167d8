"""ONNX export (tools/deployment/pytorch2onnx.py): dynamic shapes, agreement
with PyTorch and with the reference fixtures through ONNX Runtime."""
import os.path as osp

import pytest
import torch
from _detseg_utils import load_tool
from parity import REPO, load_parity_fixture

from mmefficientmod.checkpoint import convert_released

synthetic_data = load_tool('dataset_converters/synthetic_data')

ort = pytest.importorskip('onnxruntime')
CONFIG = osp.join(REPO, 'configs/efficientmod/efficientmod-xxs_8xb256_in1k.py')


@pytest.fixture(scope='module')
def xxs_checkpoint(tmp_path_factory):
    fixture = load_parity_fixture('xxs')
    path = tmp_path_factory.mktemp('ckpt') / 'xxs.pth'
    torch.save(convert_released(fixture['checkpoint']), path)
    return fixture, str(path)


@pytest.mark.parametrize('deploy', [False, True])
def test_classifier_export_matches_reference_logits(xxs_checkpoint, tmp_path,
                                                    deploy, load_tool):
    fixture, ckpt = xxs_checkpoint
    out = str(tmp_path / 'xxs.onnx')
    argv = [CONFIG, ckpt, '--out', out, '--shape', '224', '224', '--verify']
    if deploy:
        argv.append('--deploy')
    assert load_tool('deployment/pytorch2onnx').main(
        argv) == 0  # ORT vs PyTorch at two sizes, 1e-4
    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    # Both fixture inputs (2x224x224 and 1x193x259) through one dynamic graph.
    for x, logits in zip(fixture['inputs'], fixture['logits']):
        got = session.run(None, {'input': x.float().numpy()})[0]
        torch.testing.assert_close(
            torch.from_numpy(got), logits.float(), rtol=0, atol=1e-4)


def test_dense_backbone_export_has_dynamic_maps(xxs_checkpoint, tmp_path,
                                                load_tool):
    fixture, ckpt = xxs_checkpoint
    tool = load_tool('deployment/pytorch2onnx')
    out = str(tmp_path / 'xxs_dense.onnx')
    argv = [CONFIG, ckpt, '--out', out, '--backbone-only', '--deploy']
    # The classifier config's backbone gives the pooled feature; export the
    # dense one by building it from the same weights.
    from mmefficientmod import EfficientMod
    from mmefficientmod.deploy import export_onnx
    state = convert_released(fixture['checkpoint'])['state_dict']
    dense = EfficientMod('xxs').eval()
    dense.load_state_dict(
        {
            k[len('backbone.'):]: v
            for k, v in state.items()
            if k.startswith('backbone.') and not k.startswith('backbone.norm.')
        },
        strict=True)
    dense.switch_to_deploy()
    names = export_onnx(dense, out, (1, 3, 224, 224))
    assert names == ['output0', 'output1', 'output2', 'output3']
    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    for x, features in zip(fixture['inputs'], fixture['features']):
        got = session.run(None, {'input': x.float().numpy()})
        assert len(got) == 4
        for g, ref in zip(got, features):
            assert g.shape == tuple(ref.shape)
            torch.testing.assert_close(
                torch.from_numpy(g), ref.float(), rtol=0, atol=1e-4)
    # The tool's own backbone-only path (pooled feature for this config).
    assert tool.main(argv + ['--verify']) == 0


def test_int8_export_calibrates_on_the_config_val_set(tmp_path, load_tool):
    """--int8 writes cpu_predictor's quantised model, calibrated on the
    config's val dataloader, and --verify checks its cosine with float32."""
    root = str(tmp_path / 'imagenet')
    synthetic_data.make_imagenet(
        root, num_per_class_train=1, num_per_class_val=2, img_size=64)
    base = osp.join(REPO, 'configs', 'efficientmod',
                    'efficientmod-xxs_distill_1xb8_embedded-64px.py')
    config = tmp_path / 'int8.py'
    config.write_text(f'_base_ = {base!r}\n'
                      f'val_dataloader = dict(batch_size=4, num_workers=0, '
                      f'dataset=dict(data_root={root!r}))\n')
    out = str(tmp_path / 'xxs_int8.onnx')
    assert load_tool('deployment/pytorch2onnx').main([
        str(config), '--out', out, '--int8', '--shape', '64', '64',
        '--calib-batches', '2', '--verify', '--min-cosine', '0.99'
    ]) == 0
    import onnx
    ops = {node.op_type for node in onnx.load(out).graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear'} <= ops
    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    got = session.run(None, {'input': torch.randn(3, 3, 64, 80).numpy()})[0]
    assert got.shape == (3, 1000)


def test_int8_export_refuses_static_shapes(capsys, load_tool):
    with pytest.raises(SystemExit):
        load_tool('deployment/pytorch2onnx').parse_args(
            [CONFIG, '--out', 'x.onnx', '--int8', '--static'])
    assert '--int8 exports dynamic shapes only' in capsys.readouterr().err


@pytest.mark.parametrize('deploy', [False, True])
def test_export_computes_every_block(deploy, tmp_path):
    """The exported graph computes what the model does, with random weights
    and layer scales large enough that a block left out of the graph would
    show (the default 1e-4 would hide it)."""
    from mmefficientmod import EfficientMod
    from mmefficientmod.deploy import export_onnx, onnxruntime_session
    model = EfficientMod('xxs').eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(
                torch.randn(param.shape, generator=gen) * 0.2 +
                (0.5 if param.dim() == 1 else 0.0))
    if deploy:
        model.switch_to_deploy()
    path = str(tmp_path / 'xxs.onnx')
    export_onnx(model, path, (1, 3, 64, 64))
    x = torch.randn(2, 3, 64, 80, generator=gen)
    got = onnxruntime_session(path).run(None, {'input': x.numpy()})
    with torch.no_grad():
        expected = model(x)
    for a, b in zip(got, expected):
        torch.testing.assert_close(
            torch.from_numpy(a),
            b,
            rtol=0,
            atol=1e-5 * max(b.abs().max().item(), 1.0))

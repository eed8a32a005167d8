"""The mmdeploy fixes of mmefficientmod.stack_fixes: each applied only where
the installed versions have its gap, each shown to work through mmdeploy's
own functions, and nothing else changed.

The tests that use mmdeploy (or OpenVINO) skip where it is not installed;
``tools/install.sh`` installs both."""
import json
import subprocess
import sys

import pytest
import torch

import mmefficientmod  # noqa: F401  (applies the fixes)
from mmefficientmod import stack_fixes

STACK = {'mmdeploy': '1.3.1', 'openvino': '2026.4.1'}
MMDEPLOY_FIXES = ('mmdeploy_torchscript_export', 'mmdeploy_roi_align_symbolic',
                  'mmdeploy_openvino')


def needed(name):
    (fix, ) = [f for f in stack_fixes.FIXES if f.name == name]
    return fix.needed()


@pytest.fixture
def installed(monkeypatch):
    """Pretend the given distributions (name to version, None: absent) are
    the installed ones."""

    def pretend(**versions):
        table = dict(STACK, **versions)
        monkeypatch.setattr(stack_fixes, '_installed_version', table.get)

    return pretend


@pytest.fixture
def without_cast_long(monkeypatch):
    from torch.onnx import symbolic_opset9
    monkeypatch.delattr(symbolic_opset9, '_cast_Long', raising=False)


def test_every_mmdeploy_fix_applies_to_mmdeploy_1_3_1_on_this_stack(
        installed, monkeypatch, without_cast_long):
    installed()
    monkeypatch.setattr(torch, '__version__', '2.13.0')
    assert all(needed(name) for name in MMDEPLOY_FIXES)


def test_no_mmdeploy_fix_without_mmdeploy_or_after_1_3_1(
        installed, monkeypatch, without_cast_long):
    monkeypatch.setattr(torch, '__version__', '2.13.0')
    for mmdeploy in (None, '1.4.0'):
        installed(mmdeploy=mmdeploy)
        assert not any(needed(name) for name in MMDEPLOY_FIXES), mmdeploy


def test_torchscript_export_fix_only_where_dynamo_is_the_default(
        installed, monkeypatch):
    installed()
    monkeypatch.setattr(torch, '__version__', '2.8.1')
    assert not needed('mmdeploy_torchscript_export')
    monkeypatch.setattr(torch, '__version__', '2.9.0')
    assert needed('mmdeploy_torchscript_export')


def test_roi_align_fix_only_where_cast_long_is_missing(installed, monkeypatch):
    from torch.onnx import symbolic_opset9
    installed()
    torchs_own = object()
    monkeypatch.setattr(
        symbolic_opset9, '_cast_Long', torchs_own, raising=False)
    assert not needed('mmdeploy_roi_align_symbolic')
    stack_fixes.apply_mmdeploy_roi_align_symbolic()
    assert symbolic_opset9._cast_Long is torchs_own


def test_openvino_fix_only_with_openvino_2024_or_later(installed):
    for openvino, expected in ((None, False), ('2023.3.0', False),
                               ('2024.0.0', True), ('2026.4.1', True)):
        installed(openvino=openvino)
        assert needed('mmdeploy_openvino') == expected, openvino


# ---------------------------------------------------------------------------
# What the fixes do, through mmdeploy's own functions
# ---------------------------------------------------------------------------
def onnx_deploy_cfg(backend, **onnx_config):
    from mmengine import Config
    return Config(
        dict(
            onnx_config=dict(
                dict(
                    type='onnx',
                    opset_version=11,
                    save_file='end2end.onnx',
                    input_names=['input'],
                    output_names=['output']), **onnx_config),
            backend_config=dict(type=backend),
            codebase_config=dict(type='mmdet', task='ObjectDetection')))


def test_mmdeploy_export_uses_the_torchscript_exporter(tmp_path):
    pytest.importorskip('mmdeploy')
    from mmdeploy.apis.onnx import export
    onnxruntime = pytest.importorskip('onnxruntime')
    original = torch.onnx.export
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GELU())
    x = torch.rand(1, 3, 16, 16)
    export(
        model,
        x,
        str(tmp_path / 'model'),
        context_info=dict(deploy_cfg=onnx_deploy_cfg('onnxruntime')),
        backend='onnxruntime',
        input_names=['input'],
        output_names=['output'],
        opset_version=11)
    # The rewriter acts only inside mmdeploy's export.
    assert torch.onnx.export is original
    session = onnxruntime.InferenceSession(str(tmp_path / 'model.onnx'))
    (out, ) = session.run(None, {'input': x.numpy()})
    torch.testing.assert_close(
        torch.from_numpy(out), model(x), rtol=1e-4, atol=1e-5)


def test_mmdeploy_roi_align_symbolic_exports_and_matches_mmcv(tmp_path):
    pytest.importorskip('mmdeploy')
    onnxruntime = pytest.importorskip('onnxruntime')
    from mmcv.ops import RoIAlign
    from mmdeploy.apis.onnx import export
    from mmdeploy.core import RewriterContext  # noqa: F401  (registers)

    class RoIs(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.roi_align = RoIAlign((7, 7), 0.5, 2, 'avg', True)

        def forward(self, feats, rois):
            return self.roi_align(feats, rois)

    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(2, 4, 16, 16, generator=gen)
    rois = torch.tensor([[0, 2., 3., 20., 25.], [1, 0., 0., 31., 31.],
                         [1, 5., 6., 9., 30.]])
    model = RoIs().eval()
    export(
        model, (feats, rois),
        str(tmp_path / 'roi'),
        context_info=dict(
            deploy_cfg=onnx_deploy_cfg(
                'onnxruntime', input_names=['feats', 'rois'])),
        backend='onnxruntime',
        input_names=['feats', 'rois'],
        output_names=['output'],
        opset_version=11)
    session = onnxruntime.InferenceSession(str(tmp_path / 'roi.onnx'))
    (out, ) = session.run(None, {'feats': feats.numpy(), 'rois': rois.numpy()})
    torch.testing.assert_close(
        torch.from_numpy(out), model(feats, rois), rtol=1e-4, atol=1e-5)


@pytest.fixture
def tiny_onnx(tmp_path):
    """A conv net (dynamic height and width) exported to ONNX, and the
    model."""
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 2, 1)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    path = str(tmp_path / 'end2end.onnx')
    torch.onnx.export(
        model,
        torch.rand(1, 3, 32, 32),
        path,
        input_names=['input'],
        output_names=['output'],
        dynamic_axes=dict(input={
            2: 'height',
            3: 'width'
        }),
        opset_version=11,
        dynamo=False)
    return path, model


def test_openvino_backend_converts_and_runs_like_pytorch(tiny_onnx, tmp_path):
    pytest.importorskip('mmdeploy')
    pytest.importorskip('openvino')
    from mmdeploy.backend.base import get_backend_manager
    path, model = tiny_onnx
    deploy_cfg = onnx_deploy_cfg('openvino')
    deploy_cfg.backend_config.model_inputs = [
        dict(opt_shapes=dict(input=[1, 3, 32, 32]))
    ]
    manager = get_backend_manager('openvino')
    (xml, ) = manager.to_backend([path], str(tmp_path / 'ov'), deploy_cfg)
    backend = manager.build_wrapper([xml], output_names=['output'])
    # The converted shape, then another one (reshaped and compiled again).
    for shape in ((1, 3, 32, 32), (1, 3, 24, 40)):
        x = torch.rand(*shape)
        out = backend({'input': x})['output']
        with torch.no_grad():
            torch.testing.assert_close(out, model(x), rtol=1e-4, atol=1e-4)


def test_openvino_backend_refuses_model_optimizer_options(tiny_onnx, tmp_path):
    pytest.importorskip('mmdeploy')
    pytest.importorskip('openvino')
    from mmdeploy.backend.base import get_backend_manager
    path, _ = tiny_onnx
    deploy_cfg = onnx_deploy_cfg('openvino')
    deploy_cfg.backend_config.model_inputs = [
        dict(opt_shapes=dict(input=[1, 3, 32, 32]))
    ]
    deploy_cfg.backend_config.mo_options = dict(flags=['--compress_to_fp16'])
    with pytest.raises(ValueError, match='mo_options.*--compress_to_fp16'):
        get_backend_manager('openvino').to_backend([path], str(tmp_path),
                                                   deploy_cfg)


# Runs in a fresh interpreter: records the attributes of the modules the
# mmdeploy fixes touch and mmdeploy's rewriter registry, imports the plugin,
# then the stack fixes' opt-in, and prints what each import changed.
SNAPSHOT = r"""
import importlib, json
import mmdeploy.backend.openvino.onnx2openvino
import mmdeploy.backend.openvino.wrapper
import torch.onnx
from mmdeploy.core import FUNCTION_REWRITER, SYMBOLIC_REWRITER
modules = [torch.onnx] + [importlib.import_module(f'torch.onnx.{name}') for
    name in ('symbolic_helper', 'utils', 'symbolic_opset9',
             'symbolic_opset10', 'symbolic_opset11')] + [
    mmdeploy.backend.openvino.onnx2openvino, mmdeploy.backend.openvino.wrapper]

def snapshot():
    seen = {f'{m.__name__}.{k}': id(v) for m in modules
            for k, v in list(vars(m).items())}
    for name, registry in (('function', FUNCTION_REWRITER),
                           ('symbolic', SYMBOLIC_REWRITER)):
        for key, records in registry._registry._rewrite_records.items():
            seen[f'{name} rewriter {key}'] = len(records)
    return seen

def changes(before, after):
    return sorted(
        k for k in set(before) | set(after) if before.get(k) != after.get(k))

plain = snapshot()
import mmefficientmod
registered = snapshot()
import mmefficientmod.apply_stack_fixes
fixed = snapshot()
print(json.dumps(dict(by_import=changes(plain, registered),
                      by_fixes=changes(registered, fixed))))
"""


@pytest.mark.e2e
def test_only_the_opt_in_changes_torch_and_mmdeploy_by_the_listed_fixes():
    pytest.importorskip('mmdeploy')
    pytest.importorskip('openvino')
    from torch.onnx import symbolic_opset9
    if not (needed('mmdeploy_torchscript_export')
            and needed('mmdeploy_openvino')
            and symbolic_opset9._cast_Long is stack_fixes._cast_long):
        pytest.skip('the installed versions do not have every gap')
    proc = subprocess.run([sys.executable, '-c', SNAPSHOT],
                          stdout=subprocess.PIPE,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['by_import'] == []
    assert set(result['by_fixes']) == {
        'function rewriter torch.onnx.export',
        'torch.onnx.symbolic_opset9._cast_Long',
        'mmdeploy.backend.openvino.onnx2openvino.from_onnx',
        'mmdeploy.backend.openvino.wrapper.OpenVINOWrapper',
    }

"""Stochastic depth and layer scale folded into one residual multiply-add."""
import torch
from mmcv.cnn.bricks import DropPath as MMCVDropPath

from mmefficientmod.models.layers.residual import DropPath, scaled_residual


def test_drop_path_draws_as_mmcv_does():
    x = torch.randn(64, 3, 4, 5)
    ours, theirs = DropPath(0.3).train(), MMCVDropPath(0.3).train()
    torch.manual_seed(0)
    expected = theirs(x)
    torch.manual_seed(0)
    keep = ours.keep_scale(x)
    assert keep.shape == (64, 1, 1, 1)
    torch.testing.assert_close(x * keep, expected)
    dropped = (keep == 0).flatten()
    assert 0 < dropped.sum() < 64  # some samples dropped, not all
    assert torch.equal(expected[dropped], torch.zeros_like(x[dropped]))
    torch.manual_seed(0)
    torch.testing.assert_close(ours(x), expected)


def test_no_factor_in_eval_or_without_rate():
    x = torch.randn(4, 3, 3, 2)
    assert DropPath(0.3).eval().keep_scale(x) is None
    assert DropPath(0.).train().keep_scale(x) is None
    assert torch.equal(DropPath(0.3).eval()(x), x)


def test_scaled_residual_and_its_gradients():
    x = torch.randn(4, 3, 3, 8, requires_grad=True)
    branch = torch.randn(4, 3, 3, 8, requires_grad=True)
    scale = torch.rand(8, requires_grad=True)
    keep = torch.tensor([0., 2., 2., 0.]).view(4, 1, 1, 1)
    out = scaled_residual(x, branch, scale, keep)
    expected = x + branch * scale * keep
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.square().sum(), (x, branch, scale))
    expected_grads = torch.autograd.grad(expected.square().sum(),
                                         (x, branch, scale))
    for a, b in zip(grads, expected_grads):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(scaled_residual(x, branch), x + branch)
    with torch.no_grad():
        fresh = branch.clone()
        assert scaled_residual(x, fresh) is fresh  # summed in place
        torch.testing.assert_close(fresh, x + branch)

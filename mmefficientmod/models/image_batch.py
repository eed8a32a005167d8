"""The check of the image batch a backbone is given."""
import torch


def checked_image_batch(x: torch.Tensor, in_channels: int,
                        weight: torch.Tensor) -> torch.Tensor:
    """``x`` as a backbone whose first weight is ``weight`` computes it: a
    wrong shape, an empty batch or integer images are refused with the fix;
    another float precision is cast to the weights' (unless autocast is on).
    Traced or compiled it passes as it is (checks would become constants)."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return x
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f'EfficientMod expects an N x {in_channels} x H x W image batch, '
            f'got shape {tuple(x.shape)}; convert the input to {in_channels} '
            'channels or set in_channels to match it.')
    if x.shape[0] == 0:
        raise ValueError(
            f'EfficientMod got an empty batch (shape {tuple(x.shape)}): pass '
            'at least one image (check the dataloader or the list of '
            'inputs).')
    if not x.is_floating_point():
        raise TypeError(
            f'EfficientMod takes floating-point images, got {x.dtype}: '
            'normalise them first (the data preprocessor does), e.g. '
            '(x.float() - mean) / std.')
    autocast = torch.is_autocast_enabled(x.device.type)
    return x if x.dtype == weight.dtype or autocast else x.to(weight.dtype)

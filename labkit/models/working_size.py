"""A network that runs at its own working size, whatever size it is given: ``WorkingSize(model, (128, 256))``.

The course grades Cityscapes at 256x512, batch 1. A model trained at 128x256 (the CPU recipe of
notebook 05) and handed in as it is would meet frames four times larger than any it saw in training.
Wrapped, it owns its internal resolution: each input ``(N, 3, H, W)`` is resized to the working size
(bilinear, antialiased as an image library shrinks a photo), the model runs there, and its logits are
resized back to ``(N, C, H, W)`` (bilinear), so a prediction has the size of the label it is graded on.

The cost follows: the MACs counted on the course's 1x3x256x512 input are the model's MACs at its
working size (resizing is not counted, as the course's thop counts no functional call). The weights
file is unchanged: ``state_dict`` and ``load_state_dict`` are the inner model's (same keys), so the
``model_task1.pth`` of a wrapped model loads into the bare model too.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = WorkingSize(nn.Conv2d(3, 8, kernel_size=1), size=(64, 128))
    >>> net(torch.rand(1, 3, 256, 512)).shape
    torch.Size([1, 8, 256, 512])
    >>> sorted(net.state_dict())
    ['bias', 'weight']
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def height_width(size, *, name: str = "size") -> tuple[int, int]:
    """``(H, W)`` of an int (a square) or a pair; ``ValueError`` naming ``name`` unless both are > 0.

    >>> height_width(64), height_width([128, 256])
    ((64, 64), (128, 256))
    """
    height, width = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if height <= 0 or width <= 0:
        raise ValueError(f"{name} must be (H, W) > 0, got {size!r}")
    return height, width


class WorkingSize(nn.Module):
    """``model`` run at ``size = (H, W)``: inputs resized to it, logits resized back to the input's size.

    Args:
        model: any network ``(N, 3, h, w) -> (N, C, h, w)``, float or INT8 (the resizing is done in
            float, outside its quantization stubs).
        size: ``(H, W)`` the model works at, e.g. the size it was trained at.
    """

    def __init__(self, model: nn.Module, size: tuple[int, int]):
        super().__init__()
        self.model = model
        self.size = height_width(size, name="the working size")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == self.size:
            return self.model(x)
        shrink = x.shape[-2] >= self.size[0] and x.shape[-1] >= self.size[1]
        inside = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=shrink)
        logits = self.model(inside)
        return F.interpolate(logits, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)

    def state_dict(self, *args, **kwargs):
        """The inner model's: the same keys, so the weights file does not depend on the wrapper."""
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        return f"size={self.size}"


def at_working_size(model: nn.Module, size, *, graded_at) -> nn.Module:
    """``model`` itself when it works at the graded size ``graded_at`` already, else ``WorkingSize(model, size)``.

    Example:
        >>> from torch import nn
        >>> conv = nn.Conv2d(3, 8, 1)
        >>> at_working_size(conv, (256, 512), graded_at=(256, 512)) is conv
        True
        >>> at_working_size(conv, (128, 256), graded_at=(256, 512))
        WorkingSize(
          size=(128, 256)
          (model): Conv2d(3, 8, kernel_size=(1, 1), stride=(1, 1))
        )
    """
    size = height_width(size, name="the working size")
    return model if size == height_width(graded_at, name="graded_at") else WorkingSize(model, size)

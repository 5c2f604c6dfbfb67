"""Encoder blocks with their Jacobian's transpose, for Grad-CAM below z without autograd (export).

With ``model.attention_layer`` k > 0, Grad-CAM's gradient dS/dF runs back from mu through the last
k encoder blocks.  In eval mode those blocks are piecewise linear: convolutions and batch norm are
affine, ReLU, ReLU6 and LeakyReLU scale each value by 0, 1 or a slope that depends on the image
only through which side of their kinks it lies.  So at one input x the gradient is

    dS/dF = J_1(x)^T ... J_k(x)^T g

a product of transposed convolutions (``conv_transpose2d`` with the same weights), per-channel
scales (batch norm) and the activations' 0/1/slope masks taken from the forward pass: forward-only
operations that ``torch.jit.trace`` and the ONNX exporter record, which autograd's backward is not.
:func:`linearise` runs a block forward and returns the map g -> J(x)^T g; every layer type the
encoders use has its rule here, and any other stops the export with a one-line error.
tests/test_export.py checks the result against autograd's Grad-CAM for CAVGA-D's, ResNet-18's
and EfficientNet-Lite0's blocks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from ..backbones import MBConv, SameConv2d
from ..errors import CavgaError

Transpose = Callable[[Tensor], Tensor]  # g (B or 1, *output shape) -> J^T g (B, *input shape)


_LEAVES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Identity, nn.Dropout)


def check_linearisable(module: nn.Module) -> None:
    """A one-line CavgaError, before any tracing, where :func:`linearise` has no rule for a layer."""
    if isinstance(module, nn.Sequential):
        for child in module:
            check_linearisable(child)
    elif isinstance(module, BasicBlock) and module.downsample is not None:
        check_linearisable(module.downsample)
    elif not isinstance(module, (MBConv, BasicBlock, *_LEAVES)):
        raise CavgaError(
            f"cannot export Grad-CAM below z through a {type(module).__name__} block: it has no transpose "
            "rule in cavga.export.transpose (use a smaller model.attention_layer)"
        )


def linearise(module: nn.Module, x: Tensor) -> tuple[Tensor, Transpose]:
    """``module(x)`` (eval mode) and the transpose of its Jacobian at ``x``."""
    if isinstance(module, nn.Sequential):
        return _chain(list(module), x)
    if isinstance(module, MBConv):
        return _mbconv(module, x)
    if isinstance(module, BasicBlock):
        return _basic_block(module, x)
    if isinstance(module, SameConv2d):
        pads = module.same_pads(x)  # [left, right, top, bottom]
        padded = F.pad(x, pads)
        y, back = _conv(module, padded)
        h, w = x.shape[2], x.shape[3]
        return y, lambda g: back(g)[:, :, pads[2] : pads[2] + h, pads[0] : pads[0] + w]
    if isinstance(module, nn.Conv2d):
        return _conv(module, x)
    if isinstance(module, nn.BatchNorm2d):
        return _batch_norm(module, x)
    if isinstance(module, (nn.ReLU, nn.ReLU6, nn.LeakyReLU)):
        return _activation(module, x)
    if isinstance(module, (nn.Identity, nn.Dropout)):
        return x, lambda g: g
    check_linearisable(module)  # raises: no rule for this layer
    raise AssertionError(type(module).__name__)


def _chain(modules: list[nn.Module], x: Tensor) -> tuple[Tensor, Transpose]:
    transposes = []
    for module in modules:
        x, back = linearise(module, x)
        transposes.append(back)

    def back(g: Tensor) -> Tensor:
        for t in reversed(transposes):
            g = t(g)
        return g

    return x, back


def _conv(conv: nn.Conv2d, x: Tensor) -> tuple[Tensor, Transpose]:
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        raise CavgaError(f"cannot export Grad-CAM through a Conv2d with padding {conv.padding!r} ({conv.padding_mode})")
    y = nn.Conv2d.forward(conv, x)  # (B, cout, h', w'): SameConv2d's padding is done by the caller
    # output_padding gives back x's exact size where the stride dropped a remainder
    extra = []
    for i in range(2):
        reach = conv.dilation[i] * (conv.kernel_size[i] - 1) + 1  # the kernel's extent
        extra.append(x.shape[2 + i] - ((y.shape[2 + i] - 1) * conv.stride[i] - 2 * conv.padding[i] + reach))

    def back(g: Tensor) -> Tensor:
        # (B, cin, H, W): the convolution's adjoint, the same weights
        return F.conv_transpose2d(g, conv.weight, None, conv.stride, conv.padding, extra, conv.groups, conv.dilation)

    return y, back


def _batch_norm(bn: nn.BatchNorm2d, x: Tensor) -> tuple[Tensor, Transpose]:
    if bn.training or bn.running_var is None:
        raise CavgaError("cannot export Grad-CAM through a batch norm without running statistics in eval mode")
    scale = torch.rsqrt(bn.running_var + bn.eps)  # (C,)
    if bn.weight is not None:
        scale = scale * bn.weight
    return bn(x), lambda g: g * scale[:, None, None]  # (B, C, H, W)


def _activation(act: nn.Module, x: Tensor) -> tuple[Tensor, Transpose]:
    """ReLU, ReLU6, LeakyReLU: the slope at each value, 0, 1 or LeakyReLU's (applied out of place)."""
    if isinstance(act, nn.LeakyReLU):
        slope = torch.where(x > 0, torch.ones_like(x), torch.full_like(x, act.negative_slope))  # (B, C, H, W)
        return F.leaky_relu(x, act.negative_slope), lambda g: g * slope
    if isinstance(act, nn.ReLU6):
        inside = ((x > 0) & (x < 6)).to(x.dtype)  # (B, C, H, W)
        return F.relu6(x), lambda g: g * inside
    return F.relu(x), lambda g: g * (x > 0).to(x.dtype)


def _mbconv(block: MBConv, x: Tensor) -> tuple[Tensor, Transpose]:
    """EfficientNet-Lite0's inverted residual: its forward, layer by layer (MBConv.forward)."""
    layers: list[nn.Module] = []
    if block.expansion != 1:
        layers += [block._expand_conv, block._bn0, nn.ReLU6()]
    layers += [block._depthwise_conv, block._bn1, nn.ReLU6(), block._project_conv, block._bn2]
    h, back = _chain(layers, x)
    if not block.residual:
        return h, back
    return x + h, lambda g: g + back(g)


def _basic_block(block: BasicBlock, x: Tensor) -> tuple[Tensor, Transpose]:
    """ResNet-18's block: ReLU(bn2(conv2(ReLU(bn1(conv1 x)))) + shortcut(x)) (torchvision's forward)."""
    h, back_main = _chain([block.conv1, block.bn1, nn.ReLU(), block.conv2, block.bn2], x)
    if block.downsample is not None:
        shortcut, back_short = linearise(block.downsample, x)
    else:
        shortcut, back_short = x, (lambda g: g)
    y, back_out = _activation(nn.ReLU(), h + shortcut)

    def back(g: Tensor) -> Tensor:
        g = back_out(g)
        return back_main(g) + back_short(g)

    return y, back

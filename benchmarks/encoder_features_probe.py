"""Do a CAVGA-D run's distilled encoder features still tell real defects apart? A diagnosis only.

CAVGA-Du reaches pixel AUROC 0.53 on MTD while a nearest-neighbour memory bank on the ImageNet
Lite0 teacher's patch features (the PatchCore-like reference) reaches 0.85. Either the distilled
DCGAN encoder lost what the teacher's features hold, or CAVGA's attention does not use it. This
script asks the first question directly: the same nearest-neighbour scoring on two feature sets,
the teacher's (Lite0 at strides 8 and 16, as ``cavga.baselines.patchcore``) and the run's own
encoder's (its blocks at the same strides), fitted on the run's training normals, read on its test
split. It trains nothing and chooses no setting; it reads test labels to diagnose, which is why no
default may be set from it.

    OMP_NUM_THREADS=2 python benchmarks/encoder_features_probe.py runs/s54/mtd-Du-seed0 \
        --out benchmarks/results/issue8/encoder-features-probe-s56.json

Both banks are the same seeded random 10 % of the training patches (not a greedy coreset, to keep
it to minutes on two cores), the map is the nearest-bank distance upsampled to the model's size
and blurred by 4 px, scored at each image's own size as ``cavga evaluate`` scores maps; the image
score is the map's maximum.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from cavga import data as D
from cavga.baselines.patchcore import PatchCore, patch_descriptors
from cavga.distill import block_outputs
from cavga.evaluate import native_mask
from cavga.inference import Predictor, eval_loader
from cavga.io_utils import atomic_write_json
from cavga.metrics import image_auroc, pixel_auroc
from cavga.runfolder import RunData


class EncoderPatches(nn.Module):
    """A CAVGA-D encoder's last two blocks as PatchCore's patch vectors (the layout of the
    reference's Lite0 features, :func:`cavga.baselines.patchcore.patch_descriptors`)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder.eval()

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        last = len(self.encoder.body) - 1
        return patch_descriptors(block_outputs(self.encoder, x, [last - 1, last]))  # (B, C1 + C2, h, w)


@torch.no_grad()
def probe(model: PatchCore, run_data: RunData, cfg, share: float, seed: int) -> dict:
    """Test image and pixel AUROC of ``model``'s nearest-bank distance, its bank a seeded random
    ``share`` of the training normals' patches."""
    t0 = time.perf_counter()
    normals = [r for r in run_data.train if r.label == 0]
    patches = torch.cat([model.patches(b.image) for b in eval_loader(normals, cfg)])  # (N, C)
    g = torch.Generator().manual_seed(seed)
    model.bank = patches[torch.randperm(len(patches), generator=g)[: max(1, int(share * len(patches)))]]  # (M, C)
    maps, masks, labels, scores = [], [], [], []
    records = iter(run_data.test)
    for b in eval_loader(run_data.test, cfg):
        d = model.distance_map(b.image)  # (B, S, S)
        for i in range(len(d)):
            gt, _ = native_mask(next(records))  # (H, W)
            maps.append(D.from_canvas(d[i], gt.shape, cfg.data.resize).numpy())  # (H, W)
            masks.append(gt)
        scores.append(d.amax(dim=(1, 2)))
        labels.append(b.label)
    return {
        "image_auroc": image_auroc(torch.cat(scores).numpy(), torch.cat(labels).numpy()),
        "pixel_auroc": pixel_auroc(maps, masks),
        "feature_dim": int(patches.shape[1]),
        "n_patches": len(patches),
        "bank": len(model.bank),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="CAVGA-D run folders with a distilled encoder")
    ap.add_argument("--share", type=float, default=0.1, help="share of training patches in the bank")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = []
    print("| run | features | dim | test image AUROC | test pixel AUROC | seconds |\n|---|---|---|---|---|---|")
    for run in args.runs:
        predictor = Predictor.from_run(run, "cpu")
        cfg, run_data = predictor.cfg, RunData.load(run)
        stride = cfg.model.latent_stride
        own = PatchCore(cfg.data.image_size)  # the map's 4 px blur, as the reference's
        own.features = EncoderPatches(predictor.model.encoder)
        for name, model in (
            ("Lite0 teacher (strides 8, 16)", PatchCore(cfg.data.image_size)),
            (f"the run's distilled encoder (strides {stride // 2}, {stride})", own),
        ):
            row = {"run": str(run), "features": name, **probe(model, run_data, cfg, args.share, args.seed)}
            rows.append(row)
            print(
                f"| {run.name} | {name} | {row['feature_dim']} | {row['image_auroc']:.3f} | "
                f"{row['pixel_auroc']:.3f} | {row['seconds']} |",
                flush=True,
            )
    if args.out:
        atomic_write_json(args.out, {"share": args.share, "seed": args.seed, "rows": rows})
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()

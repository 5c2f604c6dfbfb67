"""Would CAVGA-u's map localise better as the attention's departure from its normal level, either way?

``infer.attention_direction`` reads the unsupervised attention A one way: 1 - A (the paper's) or A,
whichever ranks painted defects on the held-out normals higher. On MTD the painted check of CAVGA-Du
splits by defect kind: stains 0.99, scratches 0.25 (session 54's run): large blotches lower A,
thin scratches raise it, so either single direction misses a kind. This probe reads, on one finished
CAVGA-u run, A's scale-free value s = Grad-CAM / running peak (averaged over half-cell shifts where
the run decided so, upsampled, not clamped) four ways, each then blurred as the map is, on the same
painted held-out set (so its inverse and direct numbers are close to, not the same as, the run's
stored check, which scores all its held-out normals and averages the shifted maps, not s):

* ``inverse``: 1 - min(s, 1) (the paper's 1 - A);
* ``direct``: s / (1 + s) (the package's unclamped A);
* ``two_sided``: |s - m|, m the median of s over the clean fitting images' pixels;
* ``two_sided_position``: |s - m(p)|, m(p) the median at each pixel over the clean fitting images
  (meant for aligned objects).

The held-out normals are split in two: the even-indexed ones fit the medians, the odd-indexed ones are
painted (2 copies each, the package's painters, seed 0) and scored, so no map is scored on the
images its level was fitted on; every way is scored on the same images. The run's test split is then
scored the same four ways, separately (``--test``), at each test image's own resolution as
``cavga evaluate`` does; it decides nothing here.

    PYTHONPATH=src python benchmarks/two_sided_probe.py RUN [RUN ...] [--test] --out probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from cavga.attention import gaussian_blur
from cavga.config.resolve import map_blur
from cavga.data.geometry import box_mask
from cavga.evaluate import native_mask
from cavga.image_scores import native_map
from cavga.inference import Predictor, eval_loader
from cavga.map_choice import resolved_enlarged, resolved_shifted
from cavga.metrics import pixel_auroc
from cavga.normal_level import median_level, scale_free_maps
from cavga.painting import content_only, held_out_images, held_out_normals, painted_set, protocol_text
from cavga.runfolder import RunData

WAYS = ("inverse", "direct", "two_sided", "two_sided_position")


def scale_free(predictor: Predictor, x: torch.Tensor) -> torch.Tensor:
    """s, (B, S, S): averaged over half-cell shifts where the run decided so and upsampled as the map
    is, unclamped and not yet blurred (the package's own reading, :func:`cavga.normal_level.scale_free_maps`)."""
    cfg = predictor.cfg
    return scale_free_maps(predictor.model, x, resolved_shifted(cfg), resolved_enlarged(cfg))  # (B, S, S)


def batched(predictor: Predictor, x: torch.Tensor) -> torch.Tensor:
    b = predictor.cfg.infer.batch_size
    return torch.cat([scale_free(predictor, x[i : i + b]) for i in range(0, len(x), b)])  # (M, S, S)


def ways(predictor: Predictor, s: torch.Tensor, level: float, level_map: torch.Tensor) -> dict[str, torch.Tensor]:
    """The four maps (M, S, S) in [0, 1] of scale-free attention ``s`` (M, S, S): each read, then
    blurred by ``infer.map_blur`` as the package blurs its maps (rank-preserving squashes)."""
    d, dp = (s - level).abs(), (s - level_map).abs()  # (M, S, S)
    read = {
        "inverse": 1 - s.clamp(0, 1),
        "direct": s.clamp_min(0) / (1 + s.clamp_min(0)),
        "two_sided": d / (1 + d),
        "two_sided_position": dp / (1 + dp),
    }
    cfg = predictor.cfg
    return {k: gaussian_blur(m, map_blur(cfg), cfg.data.image_size) for k, m in read.items()}


def levels(s_fit: torch.Tensor, inside: torch.Tensor | None) -> tuple[float, torch.Tensor]:
    """The normal level of s from clean images (N, S, S): the median over their content pixels
    (``inside`` (N, S, S) bool, None: all), and the median at each pixel over the images (S, S)."""
    level = float(s_fit[inside].median()) if inside is not None else float(s_fit.median())
    return level, median_level(s_fit, inside)  # (S, S)


def probe(run: Path, test: bool, fade: float = 1.0) -> dict:
    predictor = Predictor.from_run(run, "cpu")  # the map as decided (enlargement: off for every run here)
    cfg = predictor.cfg
    images, boxes = held_out_images(held_out_normals(run), cfg.data.image_size, cfg.data.resize)
    fit, scored = images[0::2], images[1::2]
    fit_boxes = boxes[0::2] if boxes else None
    scored_boxes = boxes[1::2] if boxes else None
    s_fit = batched(predictor, fit)  # (N/2, S, S)
    inside = torch.cat([box_mask(b, s_fit.shape[-1]) > 0.5 for b in fit_boxes]) if fit_boxes else None  # (N/2, S, S)
    level, level_map = levels(s_fit, inside)
    x, masks, labels, kinds, pboxes, _ = painted_set(scored, scored_boxes, 0, 2, fade)
    maps = ways(predictor, batched(predictor, x), level, level_map)
    out = {
        "run": str(run),
        "model": cfg.model.variant,
        "attention_direction_decided": cfg.infer.attention_direction,
        "level": round(level, 4),
        "fit_images": len(fit),
        "painted": protocol_text(len(scored), 2, 0, fade) + " (the odd-indexed held-out normals)",
        "painted_pixel_auroc": {},
        "painted_pixel_auroc_by_kind": {},
    }
    gts = content_only(masks, pboxes)
    for name, m in maps.items():
        cropped = content_only(m.numpy(), pboxes)
        out["painted_pixel_auroc"][name] = round(pixel_auroc(cropped, gts), 4)
        by_kind = {}
        for kind in sorted(set(kinds) - {"good"}):
            keep = [i for i, k in enumerate(kinds) if k in (kind, "good")]
            by_kind[kind] = round(pixel_auroc([cropped[i] for i in keep], [gts[i] for i in keep]), 4)
        out["painted_pixel_auroc_by_kind"][name] = by_kind
    if test:
        out["test_pixel_auroc"] = _test(predictor, run, level, level_map)
    return out


def _test(predictor: Predictor, run: Path, level: float, level_map: torch.Tensor) -> dict[str, float]:
    """Pixel AUROC of each way on the run's test split, maps at each image's own size (as evaluate)."""
    cfg, records = predictor.cfg, RunData.load(run).test
    cols: dict[str, list] = {w: [] for w in WAYS}
    gts, k = [], 0
    for batch in eval_loader(records, cfg):
        maps = ways(predictor, scale_free(predictor, batch.image), level, level_map)
        for i in range(len(batch.image)):
            gt, real = native_mask(records[k])  # (H, W)
            k += 1
            if not real:  # an anomalous image without a mask: no pixel ground truth
                continue
            gts.append(gt)
            for w in WAYS:
                cols[w].append(native_map(maps[w][i], gt.shape, cfg.data.resize))
    return {w: round(pixel_auroc(cols[w], gts), 4) for w in WAYS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--test", action="store_true", help="also score the test split (reported, decides nothing)")
    ap.add_argument("--fade", type=float, default=1.0, help="paint faded to U(FADE, 1), as infer.mask_fade")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    results = [probe(r, args.test, args.fade) for r in args.runs]
    for r in results:
        print(r["run"], "painted", r["painted_pixel_auroc"], "test", r.get("test_pixel_auroc"))
        print("  by kind", r["painted_pixel_auroc_by_kind"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

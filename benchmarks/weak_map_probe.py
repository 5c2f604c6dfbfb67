"""CAVGA-w's maps on painted held-out normals: the classifier's A_ca and 1 - A_cn, and the latent Grad-CAM.

CAVGA-w's anomaly map comes from its classifier (the paper's A_ca; or 1 - A_cn, ``infer.weak_map``).
The same network also has CAVGA-u's attention, the Grad-CAM of its latent score
(``model.attention_score``, ``mu_energy`` on a frozen encoder), which CAVGA-w trains without L_ae.
This scores each map by pixel AUROC on the painted held-out normals of each finished run (the set and
seed ``cavga validate`` uses; no test image is read), the latent one read both ways (A and 1 - A), all
without half-cell shifts; trains nothing.

    python benchmarks/weak_map_probe.py runs/bottle-Dw-seed0 runs/bottle-Dw-seed1 --out weak-maps.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from cavga.attention import unsupervised_cam_raw, upsample
from cavga.config.resolve import map_blur
from cavga.evidence import anomaly_evidence
from cavga.inference import Predictor
from cavga.io_utils import atomic_write_json
from cavga.metrics import pixel_auroc
from cavga.painting import at_size, content_only, held_out_images, painted_set
from cavga.runfolder import RunData

MAPS = ("anomalous", "normal", "latent_direct", "latent_inverse")


def latent_cam(model, x: torch.Tensor, score: str) -> torch.Tensor:
    """The raw latent Grad-CAM of ``x`` (B, 3, S, S) upsampled to it, (B, S, S): CAVGA-u's A before scaling."""
    model.eval()
    with torch.no_grad():
        features = model.encode_features(x)  # (B, K, h, w)
    with torch.enable_grad():
        features.requires_grad_(True)
        raw = unsupervised_cam_raw(model.latent(features), score, create_graph=False).detach()  # (B, 1, h, w)
    return upsample(raw, x.shape[-1]).squeeze(1)  # (B, S, S)


def probe(run: Path, batch_size: int = 16) -> dict[str, float]:
    predictor = Predictor.from_run(run, "cpu")
    model, cfg = predictor.model, predictor.cfg
    if not cfg.model.weakly_supervised:
        raise SystemExit(f"{run}: not a CAVGA-w run")
    images, boxes = held_out_images(RunData.load(run).val, cfg.data.image_size, cfg.data.resize)  # (N, 3, S, S)
    x, masks, _, _, boxes, _ = painted_set(images, boxes, 0, 2)  # the set `cavga validate` scores
    masks = content_only(masks, boxes)
    maps: dict[str, list[np.ndarray]] = {k: [] for k in MAPS}
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]  # (B, 3, S, S)
        for weak in ("anomalous", "normal"):
            amap = anomaly_evidence(model, xb, "inverse", weak)[0]  # (B, 1, h, w)
            maps[weak].append(at_size(amap, xb.shape[-1], map_blur(cfg)))  # blurred, as training read it
        raw = latent_cam(model, xb, cfg.model.attention_score).numpy()  # (B, S, S)
        maps["latent_direct"].append(raw)
        maps["latent_inverse"].append(-raw)  # 1 - A up to a monotone map: the same ranking
    return {k: round(pixel_auroc(content_only(np.concatenate(v), boxes), masks), 4) for k, v in maps.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    rows = {str(run): probe(run) for run in args.runs}
    print("| run | " + " | ".join(MAPS) + " |")
    print("|---|" + "---|" * len(MAPS))
    for run, r in rows.items():
        print(f"| {run} | " + " | ".join(f"{r[k]:.3f}" for k in MAPS) + " |")
    if args.out:
        atomic_write_json(args.out, {"painted_pixel_auroc": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

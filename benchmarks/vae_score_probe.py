"""Which VAE image score separates painted defects best, on a run's held-out normals only.

For CAVGA-u runs whose image score is the mean reconstruction residual (the one-class MNIST grid):
the validation image AUROC of four per-image scores of the same forward pass (z = mu), on the
run's held-out normal images clean and with painted defects (`cavga validate`'s set; no test
image is read):

* ``l1``: mean |x - x_hat|, the score in use (the paper's reconstruction score);
* ``bce``: the summed binary cross-entropy of Eq. 1's reconstruction term;
* ``bce_excess``: the same above its floor BCE(x, x) (``infer.image_score: bce``, averaged there);
* ``kl``: the KL term of Eq. 1 (the posterior's distance from the prior);
* ``elbo``: bce + kl, the negative evidence lower bound, the textbook VAE anomaly score.

    PYTHONPATH=src python benchmarks/vae_score_probe.py runs/grid-mnist/Du/2/seed0 ... --out probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from cavga.image_scores import bce_score, reconstruction_score
from cavga.inference import Predictor
from cavga.losses import kl_terms, reconstruction_terms
from cavga.metrics import image_auroc
from cavga.painting import held_out_images, paint_validation_set
from cavga.runfolder import RunData


@torch.no_grad()
def probe(run: Path, batch: int = 64) -> dict[str, float]:
    """Validation image AUROC of each score for one run."""
    predictor = Predictor.from_run(run, "cpu")
    cfg, model = predictor.cfg, predictor.model.eval()
    held = [r for r in RunData.load(run).val if r.label == 0]
    images, _ = held_out_images(held, cfg.data.image_size, cfg.data.resize)  # (N, 3, S, S)
    x, _, labels, _ = paint_validation_set(images)  # (M, 3, S, S), M = 3N
    cols: dict[str, list[torch.Tensor]] = {"l1": [], "bce": [], "bce_excess": [], "kl": []}
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]  # (B, 3, S, S)
        enc = model.latent(model.encode_features(xb))
        x_hat = model.decode(enc.mu)  # (B, 3, S, S)
        cols["l1"].append(reconstruction_score(xb, x_hat)[1])  # (B,)
        cols["bce"].append(reconstruction_terms(xb, x_hat).flatten(1).sum(1))  # (B,)
        cols["bce_excess"].append(bce_score(xb, x_hat))  # (B,)
        cols["kl"].append(kl_terms(enc.mu, enc.logvar).flatten(1).sum(1))  # (B,)
    scores = {k: torch.cat(v).numpy() for k, v in cols.items()}
    scores["elbo"] = scores["bce"] + scores["kl"]
    return {k: round(float(image_auroc(v, np.asarray(labels))), 4) for k, v in scores.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    results = {str(run): probe(run) for run in args.runs}
    print("| run | l1 | bce | bce_excess | kl | elbo |\n|---|---|---|---|---|---|")
    for run, r in results.items():
        print(f"| {run} | {r['l1']} | {r['bce']} | {r['bce_excess']} | {r['kl']} | {r['elbo']} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

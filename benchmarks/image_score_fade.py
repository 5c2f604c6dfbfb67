"""Would the image score be chosen better on faded paint? One pass per image, every candidate score.

``infer.image_score: auto`` picks, among the paper's score (C's probability for CAVGA-w, the
reconstruction difference for CAVGA-u), the map's peak and the reconstruction BCE, the one that ranks
the run's painted held-out normals best (cavga.validation). For CAVGA-R on bottle that ranking
saturates: most runs score 0.97-1.0 with the BCE, and it predicts the test poorly (docs/method.md).
The mask threshold is already decided on paint faded to U(``infer.mask_fade``, 1) for that reason.
This probe scores, for each finished run folder, the three candidates' image AUROC on the painted
held-out set at each fade in ``--fades`` and, separately and afterwards, on the run's test split, and
writes which score each fade would choose and what that choice tests at. ``--cutpaste`` adds one
more set, exploratory: each held-out normal clean and in ``copies`` versions carrying a rectangle
cut from another held-out normal and pasted elsewhere (:func:`cavga.distill.cut_paste`: content out
of place rather than a stain; CAVGA-R never trains on it, CAVGA-D's distillation does).

    PYTHONPATH=src python benchmarks/image_score_fade.py RUN [RUN ...] --fades 1,0.3 --out probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from cavga.distill import cut_paste
from cavga.image_scores import bce_score, map_peak
from cavga.inference import Predictor, eval_loader
from cavga.metrics import image_auroc
from cavga.painting import held_out_images, painted_set
from cavga.runfolder import RunData

SCORES = ("paper", "map", "bce")


def _scores(predictor: Predictor, x: torch.Tensor, valid: torch.Tensor | None) -> dict[str, np.ndarray]:
    """The three candidate scores (B,) of one batch (B, 3, S, S), from one prediction."""
    pred = predictor.predict_batch(x, valid)  # infer.image_score paper: raw_score is the paper's score
    return {
        "paper": pred.raw_score.numpy(),
        "map": map_peak(pred.anomaly_map, valid).numpy(),
        "bce": bce_score(x, pred.reconstruction, valid).numpy(),
    }


def _aurocs(cols: list[dict[str, np.ndarray]], labels: np.ndarray) -> dict[str, float]:
    return {k: round(image_auroc(np.concatenate([c[k] for c in cols]), labels), 4) for k in SCORES}


def _cut_pasted(images: torch.Tensor, seed: int, copies: int) -> tuple[torch.Tensor, np.ndarray]:
    """The held-out normals (N, 3, S, S) clean, then ``copies`` cut-and-pasted versions of each; labels."""
    generator = torch.Generator().manual_seed(seed)
    pasted = [cut_paste(images, 1.0, generator)[0] for _ in range(copies)]  # each (N, 3, S, S)
    return torch.cat([images, *pasted]), np.repeat([0] + [1] * copies, len(images))


def probe(run: Path, fades: list[float], seed: int = 0, copies: int = 2, cutpaste: bool = False) -> dict:
    """Painted image AUROC of each score at each fade, which score each fade chooses, and the test's."""
    predictor = Predictor.from_run(run, "cpu", ["infer.image_score=paper"])
    cfg, data = predictor.cfg, RunData.load(run)
    held = [r for r in data.val if r.label == 0]
    images, boxes = held_out_images(held, cfg.data.image_size, cfg.data.resize)  # (N, 3, S, S)
    out: dict = {"run": str(run), "painted": {}, "chosen": {}}
    b = cfg.infer.batch_size
    sets = {str(fade): painted_set(images, boxes, seed, copies, fade) for fade in fades}  # (x, masks, labels, ...)
    if cutpaste:
        if cfg.data.resize != "stretch":
            raise SystemExit(f"{run}: --cutpaste reads unpadded images only (data.resize stretch)")
        x, labels = _cut_pasted(images, seed, copies)
        sets["cutpaste"] = (x, None, labels, None, None, None)
    for name, (x, _, labels, _, _, valid) in sets.items():  # x: (M, 3, S, S)
        batches = range(0, len(x), b)
        cols = [_scores(predictor, x[i : i + b], None if valid is None else valid[i : i + b]) for i in batches]
        aurocs = _aurocs(cols, np.asarray(labels))
        out["painted"][name] = aurocs
        out["chosen"][name] = max(SCORES, key=lambda k: (aurocs[k], -SCORES.index(k)))  # ties: the earlier
    cols, labels = [], []
    for batch in eval_loader(data.test, cfg):  # read after the choices above are made
        cols.append(_scores(predictor, batch.image, batch.valid))
        labels.append(batch.label.numpy())
    out["test"] = _aurocs(cols, np.concatenate(labels))
    out["test_of_chosen"] = {f: out["test"][k] for f, k in out["chosen"].items()}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--fades", default="1,0.3")
    p.add_argument("--cutpaste", action="store_true", help="also rank on cut-and-pasted held-out normals")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    fades = [float(f) for f in args.fades.split(",")]
    rows = []
    for run in args.runs:
        rows.append(probe(run, fades, cutpaste=args.cutpaste))
        args.out.write_text(json.dumps({"fades": fades, "runs": rows}, indent=1))  # after each run: resumable by eye
        r = rows[-1]
        chosen = " ".join(f"{f}:{k}({r['test_of_chosen'][f]:.3f})" for f, k in r["chosen"].items())
        painted = " ".join(f"{f}:" + "/".join(f"{r['painted'][f][k]:.3f}" for k in SCORES) for f in r["painted"])
        test = "/".join(f"{r['test'][k]:.3f}" for k in SCORES)
        print(f"| {run} | {painted} | {test} | {chosen} |", flush=True)
    means = {f: round(float(np.mean([r["test_of_chosen"][f] for r in rows])), 4) for f in rows[0]["chosen"]}
    print(f"mean test image AUROC of the chosen score (paper/map/bce order above), by painted set: {means}")


if __name__ == "__main__":
    main()

"""Exported (TorchScript, ONNX Runtime) against eager ``Predictor.predict_batch`` on the CPU.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/export_speed.py --size 128 --batch 16 --repeats 5

Trains a 1-epoch CAVGA-Du (and -Dw) on a small generated demo set (the weights do not change the
cost), exports it both ways, and times the same batch of images (score, map and mask; images
already decoded). A model may carry settings after ``+``: ``--models Dw,Dw+model.attention_layer=1``
(Grad-CAM one encoder block below z, its gradient exported through that block).
Prints images/s and the largest score/map difference to the checkpoint; writes
benchmarks/results/export_speed.json. Quoted in docs/performance.md (Deployable inference).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from cavga.cli import main as cli
from cavga.demo_data import generate_demo_dataset
from cavga.export import ExportedPredictor, export_run
from cavga.inference import Predictor
from cavga.io_utils import atomic_write_json


def _ips(predict, x: torch.Tensor, repeats: int) -> float:
    predict(x)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(x)
        best = min(best, time.perf_counter() - t0)
    return len(x) / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="Du,Dw")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "export_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp())
    root = generate_demo_dataset(tmp / "data", seed=0, n_train=24, n_test_good=2, n_test_defect=4, crop=args.size)
    x = torch.rand(args.batch, 3, args.size, args.size)  # (B, 3, S, S)
    rows = []
    for i, spec in enumerate(args.models.split(",")):
        model, *settings = spec.split("+")
        run = tmp / f"{i}-{model}"
        cli([
            "train", "--data", str(root.parent), "--category", "brick", "--model", model, "--out", str(run),
            "--epochs", "1", "--image-size", str(args.size), "--batch-size", "8", "--device", "cpu",
            "--no-progress", "--set", "data.anomalous_fraction=0.5", *(a for kv in settings for a in ("--set", kv)),
        ])  # fmt: skip
        eager = Predictor.from_run(run, "cpu")
        ref = eager.predict_batch(x)
        row = {"model": spec, "eager": round(_ips(eager.predict_batch, x, args.repeats), 1)}
        for fmt, ext in (("torchscript", "pt"), ("onnx", "onnx")):
            exported = ExportedPredictor(export_run(run, tmp / f"{i}-{model}.{ext}", fmt))
            got = exported.predict_batch(x)
            row[fmt] = round(_ips(exported.predict_batch, x, args.repeats), 1)
            row[f"{fmt}_max_diff"] = float(
                max((got.score - ref.score).abs().max(), (got.anomaly_map - ref.anomaly_map).abs().max())
            )
        rows.append(row)
        print(row, flush=True)
    result = {"image_size": args.size, "batch": args.batch, "threads": args.threads, "images_per_s": rows}
    atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()

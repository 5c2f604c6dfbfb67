"""Exported (TorchScript, ONNX Runtime) against eager ``Predictor.predict_batch`` on the CPU.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/export_speed.py --size 128 --batch 16 --repeats 5

Trains a 1-epoch CAVGA-Du (and -Dw) on a small generated demo set (the weights do not change the
cost), exports it both ways, and times the same batch of images (score, map and mask; images
already decoded). A model may carry settings after ``+``: ``--models Dw,Dw+model.attention_layer=1``
(Grad-CAM one encoder block below z, its gradient exported through that block).
The three predictors of a model are timed in turns (``cavga.speed.ab.alternate``: one untimed
round, then --repeats rounds, the order reversed every other round), and each one's median round
is reported. Prints images/s and the largest score/map difference to the checkpoint; writes
benchmarks/results/export_speed.json (with every round's seconds). The demo data, runs and
exported files live in a temporary folder, removed at the end.
Quoted in docs/performance.md (Deployable inference).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from cavga.cli import main as cli
from cavga.demo_data import generate_demo_dataset
from cavga.export import ExportedPredictor, export_run
from cavga.inference import Predictor
from cavga.io_utils import atomic_write_json
from cavga.speed import ab


def images_per_s(predictors: dict, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """images/s of each ``predictors[name](x)``: the median of ``repeats`` rounds taken in turns."""
    seconds = ab.alternate({name: (lambda f=f: f(x)) for name, f in predictors.items()}, repeats)
    return {name: round(len(x) / s, 1) for name, s in seconds.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=ab.image_size, default=128)
    ap.add_argument("--batch", type=ab.at_least(1), default=16)
    ap.add_argument("--repeats", type=ab.at_least(1), default=5, help="timed rounds (the median is kept)")
    ap.add_argument("--threads", type=ab.at_least(1), default=2)
    ap.add_argument("--models", default="Du,Dw")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "export_speed.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ab.ROUNDS.clear()
    with tempfile.TemporaryDirectory(prefix="export_speed-") as tmp:
        rows = _measure(args, Path(tmp))
    result = {"image_size": args.size, "batch": args.batch, "threads": args.threads, "repeats": args.repeats}
    rounds = [{k: [round(t, 5) for t in v] for k, v in r.items()} for r in ab.ROUNDS]  # one per model, in order
    result |= {"images_per_s": rows, "seconds_per_round": rounds}
    print(f"written: {atomic_write_json(args.out, result)}")


def _measure(args: argparse.Namespace, tmp: Path) -> list[dict]:
    """Train, export and time each of ``args.models`` in ``tmp``: one row each."""
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
        predictors = {"eager": eager.predict_batch}
        row = {"model": spec}
        for fmt, ext in (("torchscript", "pt"), ("onnx", "onnx")):
            exported = ExportedPredictor(export_run(run, tmp / f"{i}-{model}.{ext}", fmt))
            got = exported.predict_batch(x)
            predictors[fmt] = exported.predict_batch
            row[f"{fmt}_max_diff"] = float(
                max((got.score - ref.score).abs().max(), (got.anomaly_map - ref.anomaly_map).abs().max())
            )
        row |= images_per_s(predictors, x, args.repeats)
        rows.append(row)
        print(row, flush=True)
    return rows


if __name__ == "__main__":
    main()

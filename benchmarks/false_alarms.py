"""How often the verdict threshold flags a normal image it was not fitted on, for each normaliser rank.

    python benchmarks/false_alarms.py [--out benchmarks/results/issue8/conformal-s42/false-alarms.json]
        [SCORES.json ...]

Reads stored ``scores.json`` files (``cavga evaluate`` writes one per run; by default the five bottle
CAVGA-Du runs of sessions 40-42 under ``benchmarks/results/issue8/conformal-s42/``) and trains
nothing. The main figure needs no test image: each held-out normal image in turn is left out, the
threshold (``infer.normalizer_quantile`` 0.95 of the others' raw scores, read at each
``infer.normalizer_rank``) is fitted on the rest, and the image counts as a false alarm when its raw
score reaches it. Beside it, for reading only (no setting is chosen on it), the share of the test
split's normal images each rank's threshold on all the held-out scores flags.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cavga.config import NORMALIZER_RANKS
from cavga.image_scores import held_out_quantile
from cavga.io_utils import atomic_write_json

QUANTILE = 0.95
STORED = Path(__file__).resolve().parent / "results" / "issue8" / "conformal-s42"


def leave_one_out(held: np.ndarray, rank: str) -> list[bool]:
    """For each held-out score: whether it reaches the threshold fitted on the other scores."""
    return [held[i] >= held_out_quantile(np.delete(held, i), QUANTILE, rank) for i in range(len(held))]


def rates(scores_file: Path) -> dict:
    stored = json.loads(scores_file.read_text())
    held = np.asarray(stored["held_out_raw_scores"], dtype=np.float64)
    test_normal = np.asarray([im["raw_score"] for im in stored["images"] if im["label"] == 0], dtype=np.float64)
    out = {"run": scores_file.parent.name, "n_held_out": len(held), "n_test_normal": len(test_normal)}
    for rank in NORMALIZER_RANKS:
        out[rank] = {
            "held_out_flagged": int(sum(leave_one_out(held, rank))),
            "test_normal_flagged": int((test_normal >= held_out_quantile(held, QUANTILE, rank)).sum()),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scores", nargs="*", type=Path, help="scores.json files (default: the stored bottle runs)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    files = args.scores or sorted(STORED.glob("*/scores.json"))
    runs = [rates(f) for f in files]
    print("| run | held-out | rank | held-out flagged, left out in turn | test normals flagged |")
    print("|---|---|---|---|---|")
    for r in runs:
        for rank in NORMALIZER_RANKS:
            c = r[rank]
            print(
                f"| {r['run']} | {r['n_held_out']} | {rank} | {c['held_out_flagged']} / {r['n_held_out']} | "
                f"{c['test_normal_flagged']} / {r['n_test_normal']} |"
            )
    total = {}
    for rank in NORMALIZER_RANKS:
        held = sum(r[rank]["held_out_flagged"] for r in runs), sum(r["n_held_out"] for r in runs)
        test = sum(r[rank]["test_normal_flagged"] for r in runs), sum(r["n_test_normal"] for r in runs)
        total[rank] = {"held_out": held, "test_normal": test}
        print(f"| all | {held[1]} | {rank} | {held[0]} / {held[1]} = {held[0] / held[1]:.3f} | "
              f"{test[0]} / {test[1]} = {test[0] / test[1]:.3f} |")  # fmt: skip
    if args.out:
        atomic_write_json(args.out, {"quantile": QUANTILE, "runs": runs, "total": total})
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()

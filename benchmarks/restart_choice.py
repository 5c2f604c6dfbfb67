"""What ``train.restarts`` would choose, from plain runs of several seeds, and session 32's rule on it.

A run with ``train.restarts K`` and seed b trains the seeds b*K + r (r < K) to the first painted check
and trains on the best (:mod:`cavga.restarts`), so it is the plain run of that seed. From plain runs
of each seed, each given as ``SEED=PATH``, this prints each seed's checks and, for every base seed
whose K candidates are all given, the seed chosen and its run's numbers; trains nothing.

PATH is a run folder trained with ``train.validate_every`` (its history.jsonl holds the painted
checks; metrics.json, where ``cavga evaluate`` wrote one, the test numbers of the epoch it ended on),
or a trajectory JSON of ``benchmarks/epoch_trajectory.py`` (copies of a run at several epochs).

    python benchmarks/restart_choice.py 0=benchmarks/results/issue8/epoch-trajectory-s31/seed0.json \\
        1=benchmarks/results/issue8/epoch-trajectory-s31/seed1.json 2=runs/du-seed2 3=runs/du-seed3 \\
        --restarts 2 --out restart-choice.json

The rule (written before the seeds 2 and 3 had trained): adopt restarts (``auto`` -> K) iff the mean
final painted check (the best of a run's checks) of the chosen candidates, over the base seeds,
exceeds the mean final painted check of all the plain seeds by more than ``--margin``. Painted
numbers only; the test numbers are printed beside them and play no part in it.

What more candidates would buy (session 34): for each K from 1 to the number of seeds given, the mean
test numbers of the seed that K candidates would train on, over every K-subset of the given seeds
(each subset as likely as any other: the expected outcome of ``--restarts K`` on a fresh base seed,
as far as these seeds sample the seeds), and Spearman's rank correlation between the check at the
first epoch and each test number (``scipy.stats.spearmanr``). It decides nothing; it says how far
the choice at the first check carries to the test split, and where more candidates stop helping.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

from scipy.stats import spearmanr

from cavga.io_utils import atomic_write_json
from cavga.runfolder import painted_scores, read_history

TEST_KEYS = ("image_auroc", "pixel_auroc", "iou", "detection_accuracy", "aupro")


def _seed_run(path: Path, every: int) -> dict:
    """{checks: {epoch: painted}, chosen_epoch, test} of one seed's plain run."""
    if path.is_dir():
        checks = painted_scores(read_history(path))
        metrics = path / "metrics.json"
        test = json.loads(metrics.read_text())["metrics"] if metrics.is_file() else {}
    else:
        traj = json.loads(path.read_text())
        last = max(r["epoch"] for r in traj["rows"])
        rows = {r["epoch"]: r for r in traj["rows"] if r["epoch"] % every == 0 or r["epoch"] == last}
        checks = {e: r["painted_pixel_auroc"] for e, r in rows.items()}
        test = rows[traj["chosen_epoch"]].get("test", {})
    chosen = max(checks, key=lambda e: (checks[e], e))  # ties: the later epoch, as training chooses
    return {"checks": checks, "chosen_epoch": chosen, "test": {k: test[k] for k in TEST_KEYS if k in test}}


def _pick(seeds: dict[int, dict], candidates, first: int) -> int:
    """The candidate that restarts trains on: the best check at epoch ``first``; ties: the lower seed."""
    return max(candidates, key=lambda c: (seeds[c]["checks"][first], -c))


def expected_by_k(seeds: dict[int, dict], first: int) -> dict[int, dict[str, float]]:
    """For each K, the mean final painted check and test numbers of the seed chosen from each K-subset
    of ``seeds``, over all K-subsets (for a test number, of the seeds that have it)."""
    out: dict[int, dict[str, float]] = {}
    for key in ("final_painted", *TEST_KEYS):
        have = sorted(s for s, r in seeds.items() if key == "final_painted" or key in r["test"])
        for k in range(1, len(have) + 1):
            picks = [_pick(seeds, sub, first) for sub in itertools.combinations(have, k)]
            values = [seeds[p]["checks"][seeds[p]["chosen_epoch"]] if key == "final_painted" else seeds[p]["test"][key]
                      for p in picks]  # fmt: skip
            out.setdefault(k, {"subsets": len(picks)})[key] = statistics.mean(values)
    return out


def rank_correlations(seeds: dict[int, dict], first: int) -> dict[str, float]:
    """Spearman's rho between the check at epoch ``first`` and each test number, over the seeds with it."""
    out = {}
    for key in TEST_KEYS:
        have = [r for r in seeds.values() if key in r["test"]]
        if len(have) >= 3:
            out[key] = float(spearmanr([r["checks"][first] for r in have], [r["test"][key] for r in have])[0])
    return out


def _mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="SEED=PATH: a plain run folder or a trajectory JSON, per seed")
    ap.add_argument("--restarts", type=int, default=2)
    ap.add_argument("--every", type=int, default=20, help="train.validate_every of the runs (default 20)")
    ap.add_argument("--margin", type=float, default=0.01)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    seeds = {int(s): _seed_run(Path(p), args.every) for s, p in (a.split("=", 1) for a in args.runs)}
    first = args.every
    head = "| test image | test pixel | test IoU | test det. |"
    print(f"| seed | painted at epoch {first} | final painted (epoch) {head}")
    print("|---|---|---|---|---|---|---|")
    for s, r in sorted(seeds.items()):
        t = [f"{r['test'][k]:.3f}" if k in r["test"] else "" for k in TEST_KEYS[:4]]
        final = f"{r['checks'][r['chosen_epoch']]:.3f} ({r['chosen_epoch']})"
        print(f"| {s} | {r['checks'][first]:.3f} | {final} | " + " | ".join(t) + " |")
    procedure = {}
    for base in range(max(seeds) + 1):
        cands = [base * args.restarts + r for r in range(args.restarts)]
        if all(c in seeds for c in cands):
            procedure[base] = _pick(seeds, cands, first)
    final = {s: r["checks"][r["chosen_epoch"]] for s, r in seeds.items()}
    plain_mean = statistics.mean(final.values())
    chosen_mean = statistics.mean(final[c] for c in procedure.values()) if procedure else float("nan")
    adopt = chosen_mean - plain_mean > args.margin
    print(f"\nrestarts {args.restarts}: " + ", ".join(f"base seed {b} -> seed {c}" for b, c in procedure.items()))
    print(f"final painted: chosen {chosen_mean:.4f} against plain {plain_mean:.4f} (all {len(seeds)} seeds); ", end="")
    print(f"adopt iff the difference exceeds {args.margin}: {'ADOPT' if adopt else 'keep 1'}")
    rows = {"plain": list(seeds), "restarts": list(procedure.values())}
    for name, chosen in rows.items():
        cells = [_mean_std([seeds[s]["test"][k] for s in chosen]) if all(k in seeds[s]["test"] for s in chosen)
                 else "" for k in TEST_KEYS]  # fmt: skip
        print(f"test, {name} (seeds {chosen}): " + ", ".join(f"{k} {c}" for k, c in zip(TEST_KEYS, cells, strict=True)))
    by_k, rho = expected_by_k(seeds, first), rank_correlations(seeds, first)
    print("\n| candidates K | subsets | final painted | " + " | ".join(f"test {k}" for k in TEST_KEYS) + " |")
    print("|---|---|---|" + "---|" * len(TEST_KEYS))
    for k, row in by_k.items():
        cells = [f"{row[key]:.3f}" if key in row else "" for key in ("final_painted", *TEST_KEYS)]
        print(f"| {k} | {row['subsets']} | " + " | ".join(cells) + " |")
    print(f"Spearman, painted at epoch {first} against test: " + ", ".join(f"{k} {v:.2f}" for k, v in rho.items()))
    if args.out:
        atomic_write_json(args.out, {"restarts": args.restarts, "every": args.every, "margin": args.margin,
                                     "seeds": seeds, "chosen": procedure, "final_painted_chosen": chosen_mean,
                                     "final_painted_plain": plain_mean, "adopt": adopt,
                                     "expected_by_k": by_k, "spearman_first_check": rho})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What ``train.patience`` would have done to runs already trained to the end, from their painted checks.

Each run is a folder whose history.jsonl holds the painted checks (``train.validate_every``), or a
trajectory JSON of ``benchmarks/epoch_trajectory.py``. For each patience P this replays the checks
in order (:func:`cavga.runfolder.patience_spent`, as training applies it) and prints where the run
would have stopped and which epoch it would have ended on, against the epoch the full run chose.
Painted numbers only; trains nothing and reads no test number.

    python benchmarks/patience_replay.py benchmarks/results/issue8/bottle-Du-default-seed2-s32 \\
        benchmarks/results/issue8/epoch-trajectory-s31/seed0.json --out patience.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from cavga.io_utils import atomic_write_json
from cavga.runfolder import painted_scores, patience_spent, read_history


def painted_checks(path: Path) -> dict[int, float]:
    """Epoch -> painted pixel AUROC of one run folder or trajectory JSON."""
    return painted_scores(read_history(path) if path.is_dir() else json.loads(path.read_text())["rows"])


def replay(checks: dict[int, float], patience: int) -> tuple[int, int]:
    """(the epoch training stops after, the epoch it ends on) under ``patience``."""
    seen: dict[int, float] = {}
    for epoch in sorted(checks):
        seen[epoch] = checks[epoch]
        if patience_spent(seen, patience):
            break
    return max(seen), max(seen, key=lambda e: (seen[e], e))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders or trajectory JSONs, trained to the end")
    ap.add_argument("--patience", default="1,2,3", help="the patiences to replay (default 1,2,3)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    patiences = [int(p) for p in args.patience.split(",")]
    print("| run | checks | full run ends on | " + " | ".join(f"P={p}: stops, ends on" for p in patiences) + " |")
    print("|---|---|---|" + "---|" * len(patiences))
    rows = []
    for path in args.runs:
        checks = painted_checks(path)
        full = replay(checks, 0)
        cells = {p: replay(checks, p) for p in patiences}
        rows.append({"run": str(path), "checks": checks, "full": full, "patience": cells})
        shown = " ".join(f"{v:.3f}" for _, v in sorted(checks.items()))
        marks = [f"{s}, {e}" + ("" if e == full[1] else " (differs)") for s, e in cells.values()]
        print(f"| {path} | {shown} | {full[1]} | " + " | ".join(marks) + " |")
    summary = {}
    for p in patiences:
        same = sum(r["patience"][p][1] == r["full"][1] for r in rows)
        saved = statistics.mean(r["full"][0] - r["patience"][p][0] for r in rows)
        summary[p] = {"same_epoch": same, "runs": len(rows), "mean_epochs_saved": saved}
        print(f"P={p}: ends on the full run's epoch in {same} of {len(rows)} runs; {saved:.1f} epochs saved on average")
    if args.out:
        atomic_write_json(args.out, {"runs": rows, "summary": summary})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where we stand: the open issues' targets beside our stored runs, the same runs' residual and the paper.

    python benchmarks/where_we_stand.py [--out benchmarks/results/where-we-stand.json]

Reads only stored results (``benchmarks/results/``: each run's ``metrics.json`` as ``cavga evaluate``
wrote it, and the MNIST grid's ``results.json``); trains and evaluates nothing. Each row names the
folders it averages (mean ± sample std over seeds), the paper's number and the issue's target, and
says whether the target is met by the mean. The row list (``where_we_stand_rows.py``) is the one place
that says which stored runs stand for "our number" in the docs' summary table (docs/results.md, top).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from where_we_stand_rows import METRICS, RESULTS, ROWS, Row, run_metrics

from cavga.io_utils import atomic_write_json

SHORT = {"image_auroc": "image", "pixel_auroc": "pixel", "iou": "IoU", "detection_accuracy": "det.", "aupro": "AUPRO"}


def _grid_seed_means(folders: list[Path]) -> tuple[list[dict], list[dict]]:
    """Per seed, the mean over the categories of grids' cells (``cavga benchmark --grid``'s results.json:
    one grid, or the same grid's seeds run as several)."""
    cells = [c for f in folders for c in json.loads((f / "results.json").read_text())["cells"]]
    keys = [(c["category"], c["seed"]) for c in cells]
    if len(set(keys)) != len(keys):
        raise SystemExit(f"{folders}: a (category, seed) cell appears twice")
    ours, residual = [], []
    for seed in sorted({c["seed"] for c in cells}):
        of_seed = [c for c in cells if c["seed"] == seed]
        for out, key in ((ours, "metrics"), (residual, "baseline_residual")):
            out.append({k: _mean([c[key].get(k) for c in of_seed]) for k in METRICS})
    return ours, residual


def _split_means(runs: list[dict], splits: list[int | None]) -> list[dict]:
    """Per data split (in order of first appearance), each metric's mean over that split's runs."""
    if None in splits:
        raise SystemExit("where_we_stand: a by_split row needs every run's split in its metrics.json")
    order = list(dict.fromkeys(splits))
    return [{k: _mean([r[k] for r, s in zip(runs, splits, strict=True) if s == split]) for k in METRICS}
            for split in order]  # fmt: skip


def _mean(values: list[float | None]) -> float | None:
    return statistics.fmean(values) if values and all(v is not None for v in values) else None


def _resolve(text: str, place: dict[str, int]) -> str:
    """``text`` with each ``[[key]]`` written as the row's number in the table, so that a row added anywhere
    renumbers every reference."""
    return re.sub(r"\[\[([\w.-]+)\]\]", lambda m: f"row {place[m.group(1)]}", text)


def places(rows: list[Row]) -> dict[str, int]:
    """Each row's key: its number in the table (from 1)."""
    place = {row.key: i for i, row in enumerate(rows, 1)}
    if len(place) != len(rows):
        raise SystemExit("where_we_stand: two rows share a key")
    return place


def summarise(row: Row, place: dict[str, int] | None = None) -> dict:
    """The row's numbers against its target; ``place``: every row's number (``places``), for references."""
    place = place or {row.key: 1}
    if row.grids:
        ours, residual = _grid_seed_means([RESULTS / g for g in row.grids])
        sources, splits = row.grids, []  # a grid cell's split is its own (category, seed)
    else:
        read = [run_metrics(RESULTS / r) for r in row.runs]
        ours, residual, splits = [x[0] for x in read], [x[1] for x in read], [x[2] for x in read]
        sources = row.runs
    n_runs = len(ours)
    if row.by_split:
        ours, residual = _split_means(ours, splits), _split_means(residual, splits)
    stats = {}
    for k in METRICS:
        values = [o[k] for o in ours]
        if all(v is not None for v in values):
            sd = statistics.stdev(values) if len(values) > 1 else None
            stats[k] = {"mean": statistics.fmean(values), "std": sd, "values": values}
    res = {k: _mean([r[k] for r in residual]) for k in METRICS}
    met = {k: k in stats and lo <= stats[k]["mean"] <= hi for k, (lo, hi) in row.target.items()}
    return {"row": place[row.key], "key": row.key, "issue": row.issue, "data": row.data,
            "what": _resolve(row.what, place), "seeds": n_runs, "splits": splits, "sources": sources,
            "ours": stats, "residual": res, "paper": row.paper, "target": {k: list(v) for k, v in row.target.items()},
            "met": met, "note": _resolve(row.note, place)}  # fmt: skip


def _cell(s: dict, k: str) -> str:
    if k not in s["ours"]:
        return ""
    v = s["ours"][k]
    low = s["target"].get(k, (None,))[0]
    digits = 3
    while low is not None and v["mean"] < low <= round(v["mean"], digits) and digits < 6:
        digits += 1  # rounding must not hide a miss
    text = f"{v['mean']:.{digits}f}" + (f" ± {v['std']:.3f}" if v["std"] is not None else "")
    if k in s["paper"]:
        text += f" ({s['paper'][k]:g})"
    return text


def _runs(s: dict) -> str:
    """How many runs, and the data splits they ran on where they are known (a split twice is said so)."""
    splits = s.get("splits") or []
    if not splits or None in splits:
        return str(s["seeds"])
    text = f"{s['seeds']} (split{'s' if len(splits) > 1 else ''} {', '.join(map(str, splits))}"
    distinct = len(set(splits))
    if distinct < len(splits):
        text += f": {distinct} split{'s' if distinct > 1 else ''}"
    return text + ")"


def _target(s: dict) -> str:
    parts = []
    for k, (lo, hi) in s["target"].items():
        band = f">= {round(lo, 3):g}" if hi >= 1 else f"{lo:g}-{hi:g}"
        parts.append(f"{SHORT[k]} {band}: {'met' if s['met'][k] else '**unmet**'}")
    return " ".join(["; ".join(parts) or "(none)", s["note"]]).strip()


def table(summaries: list[dict]) -> str:
    head = ["#", "issue", "data", "model, setting", "runs", *(SHORT[k] for k in METRICS), "same-run residual", "target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        r = s["residual"]  # on the metrics the target is set on (pixel AUROC and IoU where it sets none)
        keys = [k for k in s["target"] if r[k] is not None] or [k for k in ("pixel_auroc", "iou") if r[k] is not None]
        residual = ", ".join(f"{SHORT[k]} {r[k]:.3f}" for k in keys)
        cells = [str(s["row"]), str(s["issue"]), s["data"], s["what"], _runs(s), *(_cell(s, k) for k in METRICS)]
        lines.append("| " + " | ".join([*cells, residual, _target(s)]) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="also write the rows as JSON here")
    args = ap.parse_args()
    place = places(ROWS)
    summaries = [summarise(row, place) for row in ROWS]
    print(table(summaries))
    print("\nmean ± sample std over runs; runs (splits): the data seed each run split its images with (its held-out")
    print("normals, its test set, CAVGA-w's training anomalies; grids: one split per cell); (x): the paper's number")
    print("for the same cell (Tables 3, 6, 7); the same-run residual: the mean |x - x_hat| map and score of the same")
    print("runs (for AE-L2/AE-SSIM, of the AE).")
    if args.out:
        atomic_write_json(args.out, summaries)
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()

"""Time every metric of ``cavga.metrics`` at full test-split scale on synthetic data.

    python benchmarks/bench_metrics.py [--n 300] [--size 256] [--repeat 1] [--out benchmarks/results/metrics.json]

Half of the N images are anomalous with a few elliptical ground-truth blobs; anomaly maps are the
blobs plus noise. Prints a markdown table (metric, seconds: best of --repeat) and writes it as JSON.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from collections.abc import Callable

import numpy as np

from cavga import metrics
from cavga.io_utils import atomic_write_json


def synthetic(n: int, size: int, seed: int) -> dict[str, np.ndarray]:
    """Labels, blob masks, noisy maps, scores and thresholded predictions for ``n`` images."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.int64)  # (N,)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)  # (S, S)
    masks = np.zeros((n, size, size), dtype=bool)  # (N, S, S)
    for i in np.flatnonzero(labels):
        k = rng.integers(1, 4)
        cy, cx = rng.uniform(0.15, 0.85, (2, k, 1, 1)) * size  # (k, 1, 1)
        ry, rx = rng.uniform(0.02, 0.12, (2, k, 1, 1)) * size  # (k, 1, 1)
        masks[i] = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0).any(axis=0)
    maps = rng.random((n, size, size), dtype=np.float32) * 0.7  # (N, S, S)
    maps += 0.5 * masks
    scores = maps.reshape(n, -1).mean(axis=1) + 0.01 * rng.random(n)  # (N,)
    return {
        "scores": scores,
        "labels": labels,
        "pred_labels": (scores > np.median(scores)).astype(np.int64),
        "anomaly_maps": maps,
        "masks": masks,
        "pred_masks": maps > 0.7,  # (N, S, S)
    }


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="number of maps")
    ap.add_argument("--size", type=int, default=256, help="map side in pixels")
    ap.add_argument("--repeat", type=int, default=1, help="runs per metric; the best time is reported")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/metrics.json", help="JSON output path")
    args = ap.parse_args(argv)

    d = synthetic(args.n, args.size, args.seed)
    maps, masks = d["anomaly_maps"], d["masks"]
    cases: dict[str, Callable[[], object]] = {
        "image_auroc": lambda: metrics.image_auroc(d["scores"], d["labels"]),
        "detection_accuracy": lambda: metrics.detection_accuracy(d["pred_labels"], d["labels"]),
        "image_f1_max": lambda: metrics.f1_max(d["scores"], d["labels"]),
        "iou": lambda: metrics.iou(d["pred_masks"], masks, d["labels"]),
        "pixel_auroc": lambda: metrics.pixel_auroc(maps, masks),
        "f1_max (pixel)": lambda: metrics.f1_max(maps, masks),
        "aupro": lambda: metrics.aupro(maps, masks),
        "compute_metrics (all)": lambda: metrics.compute_metrics(**d),
    }
    rows = []
    for name, fn in cases.items():
        seconds, value = timed(fn, args.repeat)
        rows.append(
            {
                "metric": name,
                "seconds": round(seconds, 4),
                "value": round(value, 6) if isinstance(value, float) else None,
            }
        )

    print(f"N={args.n} maps of {args.size}x{args.size} ({maps.size / 1e6:.1f} M pixels), best of {args.repeat}\n")
    print("| metric | seconds | value |\n|---|---:|---:|")
    for r in rows:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        print(f"| {r['metric']} | {r['seconds']:.3f} | {value} |")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(f"\npeak RSS: {peak_mib:.0f} MiB")
    atomic_write_json(
        args.out,
        {
            "n": args.n,
            "size": args.size,
            "pixels": int(maps.size),
            "repeat": args.repeat,
            "seed": args.seed,
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "machine": platform.machine(),
            "peak_rss_mib": round(peak_mib),
            "results": rows,
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

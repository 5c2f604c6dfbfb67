"""Training-step time with contiguous NCHW against channels_last models and batches, on this CPU.

One model per layout, built from the same seed (random encoder weights: the same arithmetic as
ImageNet ones), their full training steps timed alternately in one process so that drift in the
machine's speed falls on both: the median of ``--repeats`` steps each.  The measurement behind
``train.channels_last`` (cavga.accel; docs/performance.md).  Prints a table and writes JSON.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/train_layout.py
"""

from __future__ import annotations

from cavga.speed import ab


def main() -> None:
    out = "benchmarks/results/speed/train_layout.json"
    args = ab.parser(__doc__.splitlines()[0], "Du,Ru,Dw,Rw", 5, out).parse_args()
    peak_before = ab.start(args)
    rows = []
    for variant in args.variants.split(","):
        layouts = {"contiguous": False, "channels_last": True}
        calls = {name: ab.training_setup(variant, args, last)[3] for name, last in layouts.items()}
        seconds = ab.alternate(calls, args.repeats)
        rows.append(
            {
                "variant": variant,
                "train_ms_per_step": {k: round(1000 * v, 1) for k, v in seconds.items()},
                "speedup": round(seconds["contiguous"] / seconds["channels_last"], 3),
            }
        )
    table = ["| model | train ms/step: contiguous -> channels_last | speed-up |", "|---|---|---|"]
    for r in rows:
        t = r["train_ms_per_step"]
        table.append(f"| {r['variant']} | {t['contiguous']} -> {t['channels_last']} | x{r['speedup']} |")
    ab.finish(args, peak_before, rows, table)


if __name__ == "__main__":
    main()

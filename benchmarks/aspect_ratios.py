"""How far a data set's images are from square: the long side over the short side, by quantile.

    .venv/bin/python benchmarks/aspect_ratios.py --data ../shared/data/mtd --layout mtd [--json OUT]

Reads only image headers (every image of the split, train and test). This is what ``data.resize:
pad`` is for: a ratio of 1 needs no padding, 2 leaves half the square padded.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from cavga import data as D
from cavga.config import DataConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--layout", required=True)
    ap.add_argument("--category")
    ap.add_argument("--json", help="also write the table to this JSON file")
    args = ap.parse_args()
    split = D.load_split(DataConfig(root=args.data, layout=args.layout, category=args.category))
    sizes = [D.image_size_of(r.image_path) for r in split.train + split.test]
    ratio = np.array([max(h, w) / min(h, w) for h, w in sizes])
    qs = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
    table = {"images": len(ratio), "ratio_quantiles": {str(q): round(float(np.quantile(ratio, q)), 3) for q in qs}}
    print("| quantile | " + " | ".join(str(q) for q in qs) + " |")
    print("|---|" + "---|" * len(qs))
    print("| long / short side | " + " | ".join(f"{v:.2f}" for v in table["ratio_quantiles"].values()) + " |")
    print(f"{len(ratio)} images")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()

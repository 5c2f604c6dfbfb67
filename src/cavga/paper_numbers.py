"""The paper's published numbers (Venkataramanan et al., ECCV 2020), for tables beside ours.

Transcribed from /work/shared/paper/cavga-eccv2020.txt: each table's rows are copied as the paper
prints them (one row a line, the values in the paper's column order) and parsed below, so they can
be checked against the paper line by line. ``-`` marks a value the paper does not give.

* Table 3: MVTec AD localisation, IoU per category, mean IoU ("IoU") and mean AuROC ("AuROC", the
  pixel-level AUROC; mean only).
* Table 6: MVTec AD detection, mean of the accuracies on anomalous and on normal images.
* Table 7: one-class detection AUROC (ADGAN's protocol): MNIST and CIFAR-10 per class and mean,
  Fashion-MNIST mean only.
* Table 8: ablation on MVTec AD, IoU, columns c1..c8 (five categories and the mean of all 15).
"""

from __future__ import annotations

from dataclasses import dataclass

_T3_COLUMNS = ("AVID", "AE-SSIM", "AE-L2", "AnoGAN", "γ-VAEg", "LSA", "ADVAE", "CAVGA-Du", "CAVGA-Ru", "CAVGA-Dw",
               "CAVGA-Rw")  # fmt: skip
_T3 = """
Bottle 0.28 0.15 0.22 0.05 0.27 0.27 0.27 0.30 0.34 0.36 0.39
Hazelnut 0.54 0.00 0.41 0.02 0.63 0.41 0.44 0.44 0.51 0.58 0.79
Capsule 0.21 0.09 0.11 0.04 0.24 0.22 0.11 0.25 0.31 0.38 0.41
Metal Nut 0.05 0.01 0.26 0.00 0.22 0.38 0.49 0.39 0.45 0.46 0.46
Leather 0.32 0.34 0.67 0.34 0.41 0.77 0.24 0.76 0.79 0.80 0.84
Pill 0.11 0.07 0.25 0.17 0.48 0.18 0.18 0.34 0.40 0.44 0.53
Wood 0.14 0.36 0.29 0.14 0.45 0.41 0.14 0.56 0.59 0.61 0.66
Carpet 0.25 0.69 0.38 0.34 0.79 0.76 0.10 0.71 0.73 0.70 0.81
Tile 0.09 0.04 0.23 0.08 0.38 0.32 0.23 0.31 0.38 0.47 0.81
Grid 0.51 0.88 0.83 0.04 0.36 0.20 0.02 0.32 0.38 0.42 0.55
Cable 0.27 0.01 0.05 0.01 0.26 0.36 0.18 0.37 0.44 0.49 0.51
Transistor 0.18 0.01 0.22 0.08 0.44 0.21 0.30 0.30 0.35 0.38 0.45
Toothbrush 0.43 0.08 0.51 0.07 0.37 0.48 0.14 0.54 0.57 0.60 0.63
Screw 0.22 0.03 0.34 0.01 0.38 0.38 0.17 0.42 0.48 0.51 0.66
Zipper 0.25 0.10 0.13 0.01 0.17 0.14 0.06 0.20 0.26 0.29 0.31
IoU 0.26 0.19 0.33 0.09 0.39 0.37 0.20 0.41 0.47 0.50 0.59
"""
_T3_AUROC = """
AuROC 0.78 0.87 0.82 0.74 0.86 0.79 0.86 0.85 0.89 0.92 0.93
"""
_T6_COLUMNS = ("AVID", "AE-SSIM", "AE-L2", "AnoGAN", "γ-VAEg", "LSA", "CAVGA-Du", "CAVGA-Ru", "CAVGA-Dw", "CAVGA-Rw")
_T6 = """
Bottle 0.88 0.88 0.80 0.69 0.86 0.86 0.89 0.91 0.93 0.96
Hazelnut 0.86 0.54 0.88 0.50 0.74 0.80 0.84 0.87 0.90 0.92
Capsule 0.85 0.61 0.62 0.58 0.86 0.71 0.83 0.87 0.89 0.93
Metal Nut 0.63 0.54 0.73 0.50 0.78 0.67 0.67 0.71 0.81 0.88
Leather 0.58 0.46 0.44 0.52 0.71 0.70 0.71 0.75 0.80 0.84
Pill 0.86 0.60 0.62 0.62 0.80 0.85 0.88 0.91 0.93 0.97
Wood 0.83 0.83 0.74 0.68 0.89 0.75 0.85 0.88 0.89 0.89
Carpet 0.70 0.67 0.50 0.49 0.67 0.74 0.73 0.78 0.80 0.82
Tile 0.66 0.52 0.77 0.51 0.81 0.70 0.70 0.72 0.81 0.86
Grid 0.59 0.69 0.78 0.51 0.83 0.54 0.75 0.78 0.79 0.81
Cable 0.64 0.61 0.56 0.53 0.56 0.61 0.63 0.67 0.86 0.97
Transistor 0.58 0.52 0.71 0.67 0.70 0.50 0.73 0.75 0.80 0.89
Toothbrush 0.73 0.74 0.98 0.57 0.89 0.89 0.91 0.97 0.96 0.99
Screw 0.66 0.51 0.69 0.35 0.71 0.75 0.77 0.78 0.79 0.79
Zipper 0.84 0.80 0.80 0.59 0.67 0.88 0.87 0.94 0.95 0.96
mean 0.73 0.63 0.71 0.55 0.77 0.73 0.78 0.82 0.86 0.90
"""
_T7_COLUMNS = ("γ-VAEg", "LSA", "OCGAN", "ULSLM", "CapsNetPP", "CapsNetRE", "AnoGAN", "ADGAN", "CAVGA-Du")
_T7_MNIST = """
0 0.991 0.993 0.998 0.991 0.998 0.947 0.990 0.999 0.994
1 0.996 0.999 0.999 0.972 0.990 0.907 0.998 0.992 0.997
2 0.983 0.959 0.942 0.919 0.984 0.970 0.888 0.968 0.989
3 0.978 0.966 0.963 0.943 0.976 0.949 0.913 0.953 0.983
4 0.976 0.956 0.975 0.942 0.935 0.872 0.944 0.960 0.977
5 0.972 0.964 0.980 0.872 0.970 0.966 0.912 0.955 0.968
6 0.993 0.994 0.991 0.988 0.942 0.909 0.925 0.980 0.988
7 0.981 0.980 0.981 0.939 0.987 0.934 0.964 0.950 0.986
8 0.980 0.953 0.939 0.960 0.993 0.929 0.883 0.959 0.988
9 0.967 0.981 0.981 0.967 0.990 0.871 0.958 0.965 0.991
mean 0.982 0.975 0.975 0.949 0.977 0.925 0.937 0.968 0.986
"""
_T7_CIFAR = """
0 0.702 0.735 0.757 0.740 0.622 0.371 0.610 0.661 0.653
1 0.663 0.580 0.531 0.747 0.455 0.737 0.565 0.435 0.784
2 0.680 0.690 0.640 0.628 0.671 0.421 0.648 0.636 0.761
3 0.713 0.542 0.620 0.572 0.675 0.588 0.528 0.488 0.747
4 0.770 0.761 0.723 0.678 0.683 0.388 0.670 0.794 0.775
5 0.689 0.546 0.620 0.602 0.635 0.601 0.592 0.640 0.552
6 0.805 0.751 0.723 0.753 0.727 0.491 0.625 0.685 0.813
7 0.588 0.535 0.575 0.685 0.673 0.631 0.576 0.559 0.745
8 0.813 0.717 0.820 0.781 0.710 0.410 0.723 0.798 0.801
9 0.744 0.548 0.554 0.795 0.466 0.671 0.582 0.643 0.741
mean 0.717 0.641 0.656 0.736 0.612 0.531 0.612 0.634 0.737
"""
_T7_FMNIST = """
mean 0.873 0.876 - - 0.765 0.679 - - 0.885
"""
_T8_COLUMNS = ("c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8")
_T8 = """
Bottle 0.24 0.27 0.26 0.33 0.16 0.34 0.28 0.39
Hazelnut 0.16 0.26 0.31 0.47 0.51 0.76 0.67 0.79
Capsule 0.09 0.22 0.14 0.31 0.18 0.36 0.27 0.41
Metal Nut 0.28 0.38 0.34 0.45 0.25 0.38 0.28 0.46
Leather 0.55 0.71 0.64 0.79 0.72 0.79 0.75 0.84
mean 0.24 0.34 0.33 0.47 0.39 0.52 0.48 0.60
"""
# Table 8's columns: the network (R* flattened z, R convolutional z) and the attention loss.
TABLE8_COLUMNS = {
    "c1": "CAVGA-R*u",
    "c2": "CAVGA-R*u + Lae",
    "c3": "CAVGA-Ru + conv z",
    "c4": "CAVGA-Ru + conv z + Lae",
    "c5": "CAVGA-R*w",
    "c6": "CAVGA-R*w + Lcga",
    "c7": "CAVGA-Rw + conv z",
    "c8": "CAVGA-Rw + conv z + Lcga",
}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class PaperTable:
    """One of the paper's tables (or one block of it): rows -> one value per column (None: not given)."""

    table: str  # "Table 3"
    dataset: str  # the data set the rows belong to: mvtec | mnist | cifar10 | fashion-mnist
    metric: str  # our metric key: iou | pixel_auroc | detection_accuracy | image_auroc
    caption: str
    columns: tuple[str, ...]
    rows: dict[str, tuple[float | None, ...]]  # row key (category / class, "mean") -> values
    decimals: int
    mean_over: int  # how many categories / classes the paper's "mean" row averages

    def value(self, row: str, column: str) -> float | None:
        """The published value at (row, column); None where the paper has none."""
        values = self.rows.get(row)
        if values is None or column not in self.columns:
            return None
        return values[self.columns.index(column)]


def _parse(text: str, columns: tuple[str, ...], rename: dict[str, str] | None = None) -> dict:
    rows: dict[str, tuple[float | None, ...]] = {}
    for line in text.strip().splitlines():
        tokens = line.split()
        name, values = " ".join(tokens[: len(tokens) - len(columns)]), tokens[len(tokens) - len(columns) :]
        key = (rename or {}).get(name, name.lower().replace(" ", "_"))
        rows[key] = tuple(None if v == "-" else float(v) for v in values)
    return rows


_MEAN = {"IoU": "mean", "AuROC": "mean"}
TABLES: tuple[PaperTable, ...] = (
    PaperTable("Table 3", "mvtec", "iou", "MVTec AD localisation, IoU (mean over 15 categories)", _T3_COLUMNS,
               _parse(_T3, _T3_COLUMNS, _MEAN), 2, 15),
    PaperTable("Table 3", "mvtec", "pixel_auroc", "MVTec AD localisation, mean pixel AUROC", _T3_COLUMNS,
               _parse(_T3_AUROC, _T3_COLUMNS, _MEAN), 2, 15),
    PaperTable("Table 6", "mvtec", "detection_accuracy",
               "MVTec AD detection, mean of the accuracies on anomalous and normal images", _T6_COLUMNS,
               _parse(_T6, _T6_COLUMNS), 2, 15),
    PaperTable("Table 8", "mvtec", "iou", "ablation, IoU (mean over 15 categories)", _T8_COLUMNS,
               _parse(_T8, _T8_COLUMNS), 2, 15),
    PaperTable("Table 7", "mnist", "image_auroc", "MNIST one-class detection AUROC", _T7_COLUMNS,
               _parse(_T7_MNIST, _T7_COLUMNS), 3, 10),
    PaperTable("Table 7", "cifar10", "image_auroc", "CIFAR-10 one-class detection AUROC", _T7_COLUMNS,
               _parse(_T7_CIFAR, _T7_COLUMNS, {str(i): c for i, c in enumerate(CIFAR10_CLASSES)}), 3, 10),
    PaperTable("Table 7", "fashion-mnist", "image_auroc", "Fashion-MNIST one-class detection AUROC (mean only)",
               _T7_COLUMNS, _parse(_T7_FMNIST, _T7_COLUMNS), 3, 10),
)  # fmt: skip


def tables_for(dataset: str | None, metric: str) -> list[PaperTable]:
    """The paper's tables with numbers for ``metric`` on ``dataset`` (in the paper's order)."""
    return [t for t in TABLES if t.dataset == dataset and t.metric == metric]


def paper_value(dataset: str, metric: str, row: str, column: str, table: str | None = None) -> float | None:
    """The first published value for (data set, metric, row, column), optionally from one table only."""
    for t in tables_for(dataset, metric):
        if table is None or t.table == table:
            v = t.value(row, column)
            if v is not None:
                return v
    return None

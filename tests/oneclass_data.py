"""Tiny one-class data sets in torchvision's on-disk layouts, written by the tests."""

import gzip

import numpy as np


def _idx(path, a: np.ndarray, gz: bool = False) -> None:
    """Write ``a`` (uint8) as an idx file, MNIST's format: magic 0x0008<ndim>, big-endian dims, bytes."""
    head = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    raw = head + a.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    (gzip.open if gz else open)(path, "wb").write(raw)


def fake_mnist(root, folder="MNIST", n_train=30, n_test=20, gz=False, seed=0):
    """A tiny MNIST-like set in torchvision's layout; image i is filled with the value 10 * label + i % 7."""
    rng = np.random.default_rng(seed)
    ext = ".gz" if gz else ""
    raw = root / folder / "raw"
    out = {}
    for part, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)  # every class, shuffled
        images = np.stack([np.full((28, 28), 10 * lab + i % 7, np.uint8) for i, lab in enumerate(labels)])
        images[:, 0, 0] = 255  # one bright pixel: the corner survives as the maximum
        _idx(raw / f"{part}-images-idx3-ubyte{ext}", images, gz)
        _idx(raw / f"{part}-labels-idx1-ubyte{ext}", labels, gz)
        out[part] = (images, labels)
    return out

"""One-class layouts (Table 7's protocol): torchvision's on-disk files written by the tests, read back."""

import json
import pickle
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits

from cavga.cli import main
from cavga.config import DataConfig
from cavga.data import load_image, load_split, one_class_split
from cavga.data.arrays import load_array
from cavga.errors import CavgaError
from cavga.runfolder import RunData
from oneclass_data import fake_mnist


def test_mnist_idx_files_are_read_with_the_one_class_protocol(tmp_path):
    data = fake_mnist(tmp_path)
    split = one_class_split("mnist", tmp_path, "3")
    train_labels, test_labels = data["train"][1], data["t10k"][1]
    assert len(split.train) == int((train_labels == 3).sum()) > 0
    assert all(r.label == 0 and r.defect_type == "good" and r.mask_path is None for r in split.train)
    assert len(split.test) == len(test_labels)  # every test image, all classes
    assert [r.label for r in split.test] == [int(v != 3) for v in test_labels]
    assert [r.defect_type for r in split.test] == ["good" if v == 3 else str(v) for v in test_labels]
    assert split.info["protocol"] == "one-class" and split.info["masks"] is False
    i = 5
    x = load_image(split.test[i].image_path, None)  # (3, 28, 28) at its own size
    want = data["t10k"][0][i].astype(np.float32) / 255
    assert x.shape == (3, 28, 28)
    for c in range(3):  # grayscale repeated to RGB, as image files are
        np.testing.assert_allclose(x[c].numpy(), want, atol=1e-6)


def test_fashion_mnist_gzipped_and_class_names(tmp_path):
    data = fake_mnist(tmp_path, folder="FashionMNIST", gz=True, seed=1)
    by_name = one_class_split("fashion-mnist", tmp_path, "T-shirt/top")
    by_index = one_class_split("fashion-mnist", tmp_path, 0)
    assert by_name.train == by_index.train
    assert len(by_name.train) == int((data["train"][1] == 0).sum())
    assert {r.defect_type for r in by_name.test if r.label == 1} <= {"trouser", "pullover", "dress", "coat",
            "sandal", "shirt", "sneaker", "bag", "ankle_boot"}  # fmt: skip
    assert by_name.info["category"] == "t-shirt_top"


def test_cifar10_python_batches(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, 6)]
        labels[0] = 3  # every batch holds a cat
        with open(base / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f)
        batches[name] = (data, labels)
    split = one_class_split("cifar10", tmp_path, "cat")
    assert len(split.train) == sum(lab.count(3) for n, (_, lab) in batches.items() if n != "test_batch")
    assert [r.label for r in split.test] == [int(v != 3) for v in batches["test_batch"][1]]
    rec = split.test[2]
    x = load_image(rec.image_path, None)  # (3, 32, 32)
    row = batches["test_batch"][0][2]  # CIFAR's row: 1024 red, 1024 green, 1024 blue values
    np.testing.assert_allclose(x.numpy(), row.reshape(3, 32, 32).astype(np.float32) / 255, atol=1e-6)


def test_digits_protocol_counts():
    labels = load_digits().target
    cfg = DataConfig(root=None, layout="digits", category="7", train_fraction=0.8, seed=3)
    split = load_split(cfg)
    n_test = len(labels) - round(0.8 * len(labels))
    assert len(split.test) == n_test
    test_idx = [int(r.image_path.rpartition("#")[2]) for r in split.test]
    train_idx = [int(r.image_path.rpartition("#")[2]) for r in split.train]
    assert not set(test_idx) & set(train_idx)
    assert all(labels[i] == 7 for i in train_idx)
    sevens = int((labels == 7).sum())
    assert len(train_idx) + sum(labels[i] == 7 for i in test_idx) == sevens  # every 7 is in one part
    assert sum(r.label == 0 for r in split.test) == sum(labels[i] == 7 for i in test_idx)
    assert load_split(cfg).test == split.test  # seeded
    assert load_split(DataConfig(layout="digits", category="7", seed=4)).test != split.test
    images, _ = load_array("sklearn-digits")
    assert images.shape == (len(labels), 8, 8) and images.max() == 255


def test_a_data_root_given_with_digits_is_said_to_be_ignored(tmp_path):
    """digits ships with scikit-learn: a --data given with it is not read, and a warning says so."""
    with pytest.warns(UserWarning) as record:
        split = load_split(DataConfig(root=str(tmp_path), layout="digits", category="7"))
    assert [str(w.message) for w in record] == [
        f"data.root {str(tmp_path)!r}: the digits layout reads scikit-learn's digits, which ship with it; ignored"
    ]
    assert split.info["root"] == "sklearn-digits"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not set (the default), or set empty: nothing to say
        assert load_split(DataConfig(layout="digits", category="7")).test == split.test
        assert load_split(DataConfig(root="", layout="digits", category="7")).test == split.test


def test_missing_data_is_one_line_naming_the_folder(tmp_path):
    for layout, what in (("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"), ("cifar10", "CIFAR10")):
        with pytest.raises(CavgaError) as e:
            one_class_split(layout, tmp_path, "1")
        msg = str(e.value)
        assert "\n" not in msg and str(tmp_path) in msg and f"{what} not found" in msg and "download=True" in msg
    fake_mnist(tmp_path)
    with pytest.raises(CavgaError, match="is not a class of mnist"):
        one_class_split("mnist", tmp_path, "eleven")
    with pytest.raises(CavgaError, match="data.category is required"):
        one_class_split("mnist", tmp_path, None)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09abc")
    with pytest.raises(CavgaError, match="truncated"):
        load_array.cache_clear()
        one_class_split("mnist", tmp_path, "1")


def test_train_and_evaluate_one_class_run_without_masks(tmp_path, capsys):
    fake_mnist(tmp_path / "data", n_train=60, n_test=20)
    run = tmp_path / "run"
    args = ["train", "--data", str(tmp_path / "data"), "--layout", "mnist", "--category", "1", "--out", str(run),
            "--epochs", "1", "--image-size", "32", "--batch-size", "4", "--device", "cpu", "--no-progress",
            "--set", "model.base_channels=8", "--set", "model.latent_channels=8"]  # fmt: skip
    assert main(args) == 0
    assert len(RunData.load(run).test) == 20  # CAVGA-u keeps every test image (no anomalous fraction removed)
    assert main(["evaluate", str(run), "--no-progress", "--device", "cpu"]) == 0
    assert "pixel metrics absent" in capsys.readouterr().out
    m = json.loads((run / "metrics.json").read_text())
    assert m["pixel_ground_truth"] is False
    assert m["image_auroc"] == m["metrics"]["image_auroc"] and 0.0 <= m["image_auroc"] <= 1.0
    assert m["metrics"]["pixel_auroc"] is None and m["metrics"]["iou"] is None


class _RunsCode:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['CAVGA_TEST_PWNED'], 'w').write('ran')",))


def test_a_cifar_batch_that_would_run_code_is_refused_unrun(tmp_path, monkeypatch):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    flag = tmp_path / "pwned"
    monkeypatch.setenv("CAVGA_TEST_PWNED", str(flag))
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(base / name, "wb") as f:
            pickle.dump({b"data": _RunsCode(), b"labels": [3]}, f)
    with pytest.raises(CavgaError, match="refused to load builtins.exec"):
        one_class_split("cifar10", tmp_path, "cat")
    assert not flag.exists()  # pickle.load would have run it

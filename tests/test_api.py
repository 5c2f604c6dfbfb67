"""The Python interface (cavga.api): `cavga.load(...).predict(...)` on files and on images in memory."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import cavga
from _tiny_run import shared_data, shared_run
from cavga.cli import main
from cavga.errors import CavgaError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return shared_run(tmp_path_factory)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    brick = shared_data(tmp_path_factory) / "brick" / "test"
    return sorted((brick / "good").glob("*.png"))[:2] + sorted((brick / "hole").glob("*.png"))[:2]


@pytest.fixture(scope="module")
def predictor(run):
    return cavga.load(run, "cpu")


def _same(a, b) -> None:
    assert a.score == pytest.approx(b.score, abs=1e-6) and a.label == b.label
    np.testing.assert_allclose(a.anomaly_map, b.anomaly_map, atol=1e-6)
    assert np.array_equal(a.mask, b.mask)


def test_a_file_answers_as_cavga_predict_writes_it(run, predictor, images, tmp_path):
    """The same score, verdict and mask as the command line's predictions.json and mask PNG, from
    another code path (cavga.predict's own loop)."""
    assert main(["predict", str(run), *map(str, images), "--out", str(tmp_path), "--device", "cpu"]) == 0
    rows = {r["path"]: r for r in json.loads((tmp_path / "predictions.json").read_text())["predictions"]}
    for path in images:
        p = predictor.predict(path)
        row = rows[str(path)]
        assert p.path == str(path)
        assert p.score == pytest.approx(row["score"], abs=1e-6) and p.verdict == row["verdict"]
        written = np.asarray(Image.open(tmp_path / row["mask"])) > 127  # (H, W)
        assert p.mask.shape == Image.open(path).size[::-1] and np.array_equal(p.mask, written)
        assert p.anomaly_map.dtype == np.float32 and p.anomaly_map.shape == p.mask.shape


def test_images_in_memory_answer_as_their_files(predictor, images):
    """PIL, numpy (uint8, float, grey) and torch (uint8 CHW) forms of a file give its answer."""
    path = images[-1]
    by_file = predictor.predict(path)
    im = Image.open(path).convert("RGB")
    a = np.asarray(im)  # (H, W, 3) uint8
    forms = [
        im,
        a,
        a.astype(np.float64) / 255.0,
        np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], axis=2),  # RGBA: alpha dropped
        torch.tensor(a).permute(2, 0, 1).contiguous(),  # (3, H, W) uint8, as torchvision reads it
    ]
    for form in forms:
        p = predictor.predict(form)
        assert p.path is None
        _same(p, by_file)
    grey = np.asarray(im.convert("L"))  # (H, W)
    grey_file = Image.fromarray(grey)
    _same(predictor.predict(grey), predictor.predict(grey_file))
    _same(predictor.predict(grey[:, :, None]), predictor.predict(grey_file))
    _same(predictor.predict(torch.tensor(grey)), predictor.predict(grey_file))


def test_a_list_or_batch_gives_a_list_in_order(predictor, images):
    one = [predictor.predict(p) for p in images]
    frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in images])  # (B, H, W, 3)
    for batch in (images, tuple(images), frames, torch.tensor(frames).permute(0, 3, 1, 2)):
        many = predictor.predict(batch)
        assert isinstance(many, list) and len(many) == len(images)
        for a, b in zip(many, one, strict=True):
            _same(a, b)
    assert predictor.predict([]) == []
    assert predictor.predict_paths(images)[1].path == str(images[1])


def test_an_exif_rotated_pil_image_is_read_upright_as_its_file(predictor, images, tmp_path):
    im = Image.open(images[-1]).convert("RGB").resize((40, 24))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers turn it a quarter
    path = tmp_path / "sideways.jpg"
    im.save(path, exif=exif)
    by_file = predictor.predict(path)
    assert by_file.anomaly_map.shape == (40, 24)  # upright: the sides swapped
    _same(predictor.predict(Image.open(path)), by_file)


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        (np.full((20, 20, 3), 200.0), "float pixels must lie in [0, 1], these run from 200 to 200; 0..255 values"),
        (np.zeros((3, 20, 20), np.uint8), "numpy images are (H, W, C): use a.transpose(1, 2, 0)"),
        (torch.zeros(20, 20, 3), "torch images are (C, H, W): use t.permute(2, 0, 1)"),
        (np.zeros((20, 20), np.int64), "pixel type int64 is not read"),
        (np.full((20, 20), np.nan, np.float32), "NaN or infinite"),
        (np.zeros((0, 20, 3), np.uint8), "an empty image"),
        (np.zeros(20, np.uint8), "not an array of shape (20,)"),
        (b"not an image", "a bytes is not an image"),
        (Image.fromarray(np.full((20, 20), 200.0, np.float32)), "float pixels must lie in [0, 1]"),  # mode F
        (Image.fromarray(np.full((20, 20), 179, np.int32)), "mode I (32-bit integers) has no fixed scale"),
        (torch.eye(20).to_sparse(), "a torch.sparse_coo tensor holds no pixels"),
        (np.full((20, 20, 3), 1.0000001), "these run from 1.0000001 to 1.0000001"),  # not "from 1 to 1"
        (lambda: torch.nested.nested_tensor([torch.rand(3, 8, 8), torch.rand(3, 4, 4)]), "a nested tensor is not"),
        (lambda: torch.quantize_per_tensor(torch.rand(3, 8, 8), 0.1, 0, torch.quint8), "give t.dequantize()"),
    ],
)
@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors", "ignore:torch.quantize_per_tensor")
def test_bad_images_in_memory_are_named_by_their_place(predictor, images, bad, said):
    bad = bad() if callable(bad) else bad  # made here: nested and quantized tensors warn as they are made
    with pytest.raises(CavgaError) as e:
        predictor.predict([images[0], bad])
    assert str(e.value).startswith("images[1]: ") and said in str(e.value)


def test_an_exported_model_answers_images_in_memory_as_the_run(run, predictor, images, tmp_path):
    from cavga.export import export_run

    model = export_run(run, tmp_path / "m.pt", "torchscript", None)
    with pytest.raises(CavgaError, match="not a device name"):
        cavga.load(model, "bogus")
    exported = cavga.load(model)
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in images]
    for a, b in zip(exported.predict(frames), predictor.predict(frames), strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-4) and a.label == b.label
        np.testing.assert_allclose(a.anomaly_map, b.anomaly_map, atol=1e-4)


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(CavgaError, match="no such run folder"):
        cavga.load(tmp_path / "missing")
    with pytest.raises(CavgaError, match="model=None: give the path of a run folder"):
        cavga.load(None)


def test_load_takes_a_torch_device_and_reads_lazy_tensor_views(run, predictor, images):
    """A torch.device (or None, auto) as the device; a negated view answers as its values."""
    for device in (torch.device("cpu"), None):
        assert cavga.load(run, device).device.type == "cpu"
    x = torch.from_numpy(np.asarray(Image.open(images[0]).convert("RGB"), np.float32) / 255).permute(2, 0, 1)
    _same(predictor.predict((-x)._neg_view()), predictor.predict(x.clone()))


def test_a_mapping_or_an_open_file_is_refused_not_iterated(predictor, images):
    with pytest.raises(CavgaError, match=r"images: a mapping \(dict\) is not an image or a batch"):
        predictor.predict({"a": images[0]})
    with open(images[0], "rb") as f, pytest.raises(CavgaError, match=r"an open file \(BufferedReader\)"):
        predictor.predict(f)


def test_import_cavga_stays_light():
    """The interface is imported on first use: `import cavga` alone loads no torch."""
    code = "import sys, cavga; print('torch' in sys.modules, callable(cavga.load), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True"]


def test_other_forms_of_the_same_pixels_answer_alike(predictor, images):
    """bfloat16 tensors, big-endian uint16, masked arrays, float PIL images in [0, 1] and a
    generator of frames: read as their plain equivalents, not refused or crashed on."""
    a = np.asarray(Image.open(images[-1]).convert("RGB"))  # (H, W, 3) uint8
    plain = predictor.predict(a)
    wide = a.astype(np.uint16) * 257  # the same levels in 16 bits
    _same(predictor.predict(wide.astype(">u2")), predictor.predict(wide))
    _same(predictor.predict(np.ma.masked_array(a, mask=a > 250)), plain)
    grey = np.asarray(Image.open(images[-1]).convert("L"), np.float32) / 255.0  # (H, W)
    _same(predictor.predict(Image.fromarray(grey)), predictor.predict(grey))  # mode F in [0, 1]
    half = torch.tensor(a).permute(2, 0, 1).float().div(255).bfloat16()  # (3, H, W)
    p = predictor.predict(half)
    assert p.score == pytest.approx(predictor.predict(half.float()).score, abs=1e-6)
    frames = (x for x in [a, a])
    assert [q.score for q in predictor.predict(frames)] == [plain.score, plain.score]


def test_a_pil_image_that_fails_to_load_is_named(predictor, images, tmp_path):
    data = images[-1].read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CavgaError, match=r"^images\[1\]: cannot read the PIL image \("):
        predictor.predict([images[0], Image.open(cut)])


def test_a_batch_in_the_other_layout_gets_the_right_hint(predictor):
    with pytest.raises(CavgaError, match=r"use a.transpose\(0, 2, 3, 1\)"):
        predictor.predict(np.zeros((2, 3, 20, 20), np.uint8))
    with pytest.raises(CavgaError, match=r"use t.permute\(0, 3, 1, 2\)"):
        predictor.predict(torch.zeros(2, 20, 20, 3))


def test_load_takes_settings_as_a_list_or_tuple_and_keeps_the_random_state(run, tmp_path):
    assert cavga.load(run, "cpu", ("infer.mask_gate=none",)).mask_gate is False
    with pytest.raises(CavgaError, match="give a list of 'infer.KEY=VALUE' strings"):
        cavga.load(run, "cpu", "infer.mask_gate=none")
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    cavga.load(run, "cpu")
    assert torch.equal(torch.rand(3), expected)
    with pytest.raises(CavgaError, match="no such exported model file"):
        cavga.load(tmp_path / "m.ONNX")


def test_predict_batch_refuses_what_it_would_answer_wrongly(run, predictor, tmp_path):
    """A batch at another size, of integers or of the wrong rank: one line for the run and its export
    alike (before: a 64 px batch answered at its own size, uint8 read as 0..255 floats by the export)."""
    from cavga.export import export_run

    exported = cavga.load(export_run(run, tmp_path / "m.pt", "torchscript", None))
    size = predictor.cfg.data.image_size
    for model in (predictor, exported):
        model.predict_batch(torch.rand(2, 3, size, size))  # the model's own input: answered
        for bad, said in [
            (torch.rand(2, 3, 2 * size, 2 * size), "not one of shape (2, 3, 64, 64)"),
            (torch.zeros(2, 3, size, size, dtype=torch.uint8), "not torch.uint8"),
            (torch.rand(3, size, size), "not one of shape (3, 32, 32)"),
            (np.zeros((2, 3, size, size), np.float32), "not a ndarray"),
        ]:
            with pytest.raises(CavgaError, match=re.escape(said)):
                model.predict_batch(bad)

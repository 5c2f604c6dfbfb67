"""The validation protocol: painted defects on held-out normal images, never test images."""

import json
import os
import warnings
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _scripts import benchmark_script
from cavga import check, mask_threshold, painted_decisions, validation
from cavga.cli import main
from cavga.config import ModelConfig, RunConfig, apply_overrides, load_config, resolve
from cavga.decisions import CLASS_ANOMALY_SCORES
from cavga.demo_data import DEFECT_TYPES, generate_demo_dataset
from cavga.errors import CavgaError
from cavga.evaluate import evaluate_run
from cavga.image_scores import MAP_VERSION
from cavga.inference import Predictor, ThresholdForAnotherMap
from cavga.mask_threshold import (
    MASK_MARGINS,
    MASK_PEAK_FRACTIONS,
    MASK_QUANTILES,
    mask_candidates,
    mask_label,
    mask_sweep,
)
from cavga.networks import CAVGA
from cavga.painted_decisions import decide_on_painted
from cavga.painting import held_out_images, held_out_normals, paint_validation_set, predict_painted
from cavga.redecide import redecide_run
from cavga.restarts import candidate_dir
from cavga.runfolder import RunData
from cavga.runtime import CHECKPOINT, load_checkpoint, save_checkpoint
from cavga.train import train
from cavga.validation import VALIDATION_FILE, pixel_auroc_by_kind, validate_run


def test_painting_changes_only_the_masked_pixels_and_keeps_clean_copies():
    torch.manual_seed(0)
    clean = torch.rand(3, 3, 64, 64) * 0.5 + 0.25
    x, masks, labels, kinds = paint_validation_set(clean, seed=0, copies=2)
    assert x.shape == (9, 3, 64, 64) and masks.shape == (9, 64, 64)
    assert labels.tolist() == [0] * 3 + [1] * 6 and kinds[:3] == ["good"] * 3
    assert set(kinds[3:]) <= set(DEFECT_TYPES) and len(set(kinds[3:])) == 4  # every painter is used
    assert torch.equal(x[:3], clean) and not masks[:3].any()
    for j in range(3, 9):
        assert masks[j].any() and masks[j].mean() < 0.25
        changed = (x[j] - clean[(j - 3) % 3]).abs().amax(dim=0).numpy() > 1e-6  # (S, S)
        assert not (changed & ~masks[j]).any()  # nothing outside the mask is touched
        assert changed[masks[j]].mean() > 0.5  # and most of the mask is


def test_faded_painting_blends_each_defect_towards_its_clean_image_at_a_strength_in_fade_to_1():
    torch.manual_seed(0)
    clean = torch.rand(3, 3, 64, 64) * 0.5 + 0.25
    full, masks, labels, kinds = paint_validation_set(clean, seed=0, copies=2)
    faded, fmasks, flabels, fkinds = paint_validation_set(clean, seed=0, copies=2, fade=0.3)
    assert np.array_equal(masks, fmasks) and np.array_equal(labels, flabels) and kinds == fkinds
    assert torch.equal(faded[:3], clean)  # the clean copies stay clean
    strengths = []
    for j in range(3, 9):
        base, m = clean[(j - 3) % 3], torch.from_numpy(masks[j])  # (3, S, S), (S, S)
        full_step, faded_step = (full[j] - base)[:, m], (faded[j] - base)[:, m]  # inside the defect
        a = float((faded_step * full_step).sum() / (full_step * full_step).sum())  # least squares
        assert torch.allclose(faded_step, a * full_step, atol=1e-5)  # one strength per image
        strengths.append(a)
    assert all(0.3 <= a <= 1.0 for a in strengths) and max(strengths) - min(strengths) > 0.05
    again, *_ = paint_validation_set(clean, seed=0, copies=2, fade=1.0)
    assert torch.equal(again, full)  # fade 1: full strength, as before


def test_painting_is_seeded():
    clean = torch.full((2, 3, 32, 32), 0.5)
    a, ma, _, _ = paint_validation_set(clean, seed=3)
    b, mb, _, _ = paint_validation_set(clean, seed=3)
    c, mc, _, _ = paint_validation_set(clean, seed=4)
    assert torch.equal(a, b) and np.array_equal(ma, mb) and not np.array_equal(ma, mc)


def _tiny_run(root, run, val_fraction, margin=0.0, enlarged=False, mask_copies=2):
    cfg = RunConfig()
    cfg.infer.mask_margin, cfg.infer.enlarged_map, cfg.infer.mask_copies = margin, enlarged, mask_copies
    cfg.data.root, cfg.data.category, cfg.data.image_size = str(root), "brick", 32
    cfg.data.val_fraction = val_fraction
    cfg.model.base_channels = cfg.model.latent_channels = 8
    cfg.train.epochs, cfg.train.batch_size, cfg.train.device = 1, 4, "cpu"
    train(cfg, run, progress=False)
    return run


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate_demo_dataset(root, seed=0, n_train=20, n_test_good=2, n_test_defect=4, crop=48)
    return root


def test_validate_run_scores_held_out_images_only(tiny_data, tmp_path):
    run = _tiny_run(tiny_data, tmp_path / "run", 0.2, margin="auto")
    result = validate_run(run, device="cpu", copies=1, infer=["infer.image_score=paper"])
    n_val = len(RunData.load(run).val)
    assert n_val == 4 and result["protocol"].startswith(f"held-out normals ({n_val})")
    stored = json.loads((run / VALIDATION_FILE).read_text())
    assert stored["metrics"] == pytest.approx(result["metrics"])
    for m in (result["metrics"], result["baseline_residual"]):
        assert set(m) >= {"pixel_auroc", "aupro", "image_auroc", "iou"}
    assert set(result["per_defect"]) <= set(DEFECT_TYPES)
    sweep = result["mask_quantile_iou"]
    assert list(sweep) == list(mask_candidates("auto", "auto")) and all(0 <= v <= 1 for v in sweep.values())
    state = load_checkpoint(run / CHECKPOINT)  # decided by training ("auto")
    in_use = tuple(state[k][k] for k in ("mask_quantile", "mask_margin", "mask_peak_fraction"))
    assert (result["mask_quantile"], result["mask_margin"], result["mask_peak_fraction"]) == in_use
    assert sweep[mask_label(*in_use)] == pytest.approx(result["metrics"]["iou"], abs=1e-4)
    by_score = result["image_auroc_by_score"]  # the image score asked for is the reconstruction's
    assert by_score["paper"] == pytest.approx(result["metrics"]["image_auroc"], abs=1e-4)
    assert by_score["paper"] == pytest.approx(result["baseline_residual"]["image_auroc"], abs=1e-4)
    as_map = validate_run(run, device="cpu", copies=1, infer=["infer.image_score=map"])
    assert as_map["image_auroc_by_score"]["map"] == pytest.approx(as_map["metrics"]["image_auroc"], abs=1e-4)
    assert as_map["image_auroc_by_score"]["paper"] == pytest.approx(by_score["paper"], abs=1e-4)
    as_bce = validate_run(run, device="cpu", copies=1, infer=["infer.image_score=bce"])
    assert as_bce["image_auroc_by_score"]["bce"] == pytest.approx(as_bce["metrics"]["image_auroc"], abs=1e-4)
    assert as_bce["image_auroc_by_score"]["bce"] == pytest.approx(by_score["bce"], abs=1e-4)


def test_validate_run_without_held_out_images_is_an_error(tiny_data, tmp_path):
    run = _tiny_run(tiny_data, tmp_path / "run", 0.0)
    with pytest.raises(CavgaError, match="held out no normal images"):
        validate_run(run, device="cpu")


def test_validate_on_a_run_it_cannot_write_to_says_so_before_any_work(tiny_data, tmp_path, monkeypatch):
    """validation.json goes into the run folder: a read-only one is said at once, not after scoring."""
    run = _tiny_run(tiny_data, tmp_path / "run", 0.2)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == run else real(p, mode))
    monkeypatch.setattr(Predictor, "from_run", lambda *a, **k: pytest.fail("scored before checking the folder"))
    with pytest.raises(CavgaError, match=r"run folder .*: cannot write in .* \(permission denied\)"):
        validate_run(run, device="cpu")


class _Deviation(nn.Module):
    """An encoder of one block whose every channel is each 8x8 cell's distance from the plain
    surface's grey 0.9 (``rises``) or its complement, so A rises or falls on painted defects."""

    stride = 8

    def __init__(self, channels: int, rises: bool):
        super().__init__()
        self.out_channels, self.rises = channels, rises
        self.body = nn.Sequential(nn.Identity())

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        v = F.avg_pool2d((x - 0.9).abs().mean(dim=1, keepdim=True), 8)  # (B, 1, S/8, S/8)
        return (v if self.rises else 1 - v).expand(-1, self.out_channels, -1, -1).contiguous()


def _model_whose_attention(rises: bool) -> CAVGA:
    torch.manual_seed(0)
    model = CAVGA(ModelConfig(variant="Du", base_channels=8, latent_channels=4), 64, allow_random_init=True)
    model.encoder = _Deviation(model.encoder.out_channels, rises)
    with torch.no_grad():
        for m in model.to_mu.modules():
            if getattr(m, "weight", None) is not None:
                m.weight.fill_(0.05)  # positive read-out: A follows the features
                m.bias.zero_()
    return model


@pytest.mark.parametrize(("rises", "expected"), [(False, "inverse"), (True, "direct")])
def test_auto_direction_keeps_one_minus_a_unless_a_ranks_the_painted_defects_higher(rises, expected):
    images = torch.full((4, 3, 64, 64), 0.9)  # (N, 3, S, S) held-out normals: a plain surface
    model = _model_whose_attention(rises)  # its decoder does not fit the one-block encoder: no image score
    chosen = decide_on_painted(model, images, 4, torch.device("cpu"), image_score="paper")["attention_direction"]
    assert chosen["attention_direction"] == expected
    assert chosen["validation_pixel_auroc"] > 0.8  # the chosen map ranks the painted pixels first
    by_direction = chosen["validation_pixel_auroc_by_direction"]
    assert by_direction[expected] == chosen["validation_pixel_auroc"] == max(by_direction.values())


def test_training_resolves_auto_and_an_explicit_direction_overrides_it(tiny_data, tmp_path):
    run = _tiny_run(tiny_data, tmp_path / "run", 0.2)
    stored = load_checkpoint(run / CHECKPOINT)["attention_direction"]
    assert stored["attention_direction"] in ("inverse", "direct") and 0.5 <= stored["validation_pixel_auroc"] <= 1
    assert Predictor.from_run(run, "cpu").cfg.infer.attention_direction == stored["attention_direction"]
    flipped = "direct" if stored["attention_direction"] == "inverse" else "inverse"
    override = Predictor.from_run(run, "cpu", [f"infer.attention_direction={flipped}"])
    assert override.cfg.infer.attention_direction == flipped
    assert validate_run(run, device="cpu", copies=1)["attention_direction"] == stored["attention_direction"]


@pytest.mark.parametrize("asked", [0.0, "auto"])
def test_training_chooses_the_mask_quantile_whose_masks_overlap_painted_defects_best(tiny_data, tmp_path, asked):
    run = _tiny_run(tiny_data, tmp_path / "run", 0.2, margin=asked)
    state = load_checkpoint(run / CHECKPOINT)
    stored = state["mask_quantile"]
    margin = state["mask_margin"]["mask_margin"] if asked == "auto" else 0.0
    assert ("mask_margin" in state) == (asked == "auto")  # decided only where asked
    fraction = state["mask_peak_fraction"]["mask_peak_fraction"]  # auto by default
    by_q = stored["validation_iou"]
    # the quantiles, and with an auto margin also above every held-out normal pixel, at each peak fraction
    assert list(by_q) == list(mask_candidates(asked, "auto"))
    n_thresholds = len(MASK_QUANTILES) + (len(MASK_MARGINS) if asked == "auto" else 0)
    assert len(by_q) == n_thresholds * len(MASK_PEAK_FRACTIONS)
    assert by_q[mask_label(stored["mask_quantile"], margin, fraction)] == max(by_q.values())
    predictor = Predictor.from_run(run, "cpu")
    infer = predictor.cfg.infer
    in_use = infer.mask_quantile, infer.mask_margin, infer.mask_peak_fraction
    assert in_use == (stored["mask_quantile"], margin, fraction)
    assert predictor.mask_threshold == predictor.threshold_at_quantile(stored["mask_quantile"], margin)
    assert predictor.mask_peak_fraction == fraction
    # cavga validate scores the same painted set (same seed and copies): the same sweep
    again = validate_run(run, device="cpu")
    assert again["mask_quantile_iou"] == pytest.approx(by_q, abs=1e-4)
    share = again["mask_normal_share"]  # the share of a clean held-out image each threshold flags
    assert share == pytest.approx(stored["validation_normal_share"], abs=1e-6) and set(share) == set(by_q)
    assert all(0 <= v <= 1 for v in share.values()) and share["0.9"] >= share["0.9@0.5"] >= share["0.9@0.8"]
    fixed = Predictor.from_run(run, "cpu", ["infer.mask_quantile=0.9"])
    assert fixed.cfg.infer.mask_quantile == 0.9 and fixed.mask_threshold == fixed.threshold_at_quantile(0.9)
    alone = Predictor.from_run(run, "cpu", ["infer.mask_peak_fraction=0"])  # the quantile the sweep ranks best at r = 0
    at_zero = {mask_label(q, margin): by_q[mask_label(q, margin)] for q in MASK_QUANTILES}
    assert at_zero[mask_label(alone.cfg.infer.mask_quantile, margin)] == max(at_zero.values())
    assert alone.mask_peak_fraction == 0.0


def test_the_mask_threshold_is_decided_on_infer_mask_copies_painted_copies(tiny_data, tmp_path):
    """``infer.mask_copies`` paints that many copies of each held-out normal for the mask decision
    only: its sweep is `cavga validate`'s at the same copies, and a copy count below 1 is refused."""
    run = _tiny_run(tiny_data, tmp_path / "run", 0.2, mask_copies=3)
    decided = load_checkpoint(run / CHECKPOINT)["mask_quantile"]
    assert "+ 3 painted copies each, faded to U(0.3, 1), seed" in decided["protocol"]  # CAVGA's auto fade
    three = validate_run(run, device="cpu", copies=3)
    assert three["mask_quantile_iou"] == pytest.approx(decided["validation_iou"], abs=1e-4)
    assert "+ 2 painted copies each" in validate_run(run, device="cpu")["protocol"]  # validate's own default
    cfg = RunConfig()
    apply_overrides(cfg, ["infer.mask_copies=0"])
    with pytest.raises(CavgaError, match="infer.mask_copies: 0 is outside"):
        cfg.validate()
    for bad, why in (("0.0", "0.0 is outside"), ("1.5", "1.5 is outside"), ("some", "'some' is neither auto")):
        cfg = RunConfig()
        apply_overrides(cfg, [f"infer.mask_fade={bad}"])
        with pytest.raises(CavgaError, match=f"infer.mask_fade: {why}"):
            cfg.validate()


FADES = [("Ru", "auto", 0.3), ("Rw", "auto", 0.3), ("Du", "auto", 0.3), ("Dw", "auto", 0.3), ("Ru", 0.7, 0.7),
         ("Du", 1.0, 1.0), ("AE-L2", "auto", 1.0), ("AE-SSIM", "auto", 1.0), ("PatchCore", "auto", 1.0)]  # fmt: skip


@pytest.mark.parametrize(("variant", "asked", "fade"), FADES)
def test_the_auto_mask_fade_is_0_3_for_cavga_and_full_strength_for_the_baselines(variant, asked, fade):
    cfg = RunConfig()
    cfg.model.variant, cfg.infer.mask_fade = variant, asked
    assert resolve.mask_fade(cfg) == fade
    assert resolve.resolved(cfg).infer.mask_fade == fade  # what config.yaml records


def test_infer_mask_fade_decides_the_mask_threshold_on_faded_painted_defects(tiny_data, tmp_path):
    """``cavga redecide --set infer.mask_fade=0.3``: the decision's protocol names the fading and
    its sweep is the one of the faded painted set (not of the full-strength one)."""
    run, out = _tiny_run(tiny_data, tmp_path / "run", 0.2), tmp_path / "faded"
    redecide_run(run, out, ["infer.mask_fade=0.3"], "cpu")
    decided = load_checkpoint(out / CHECKPOINT)["mask_quantile"]
    assert "faded to U(0.3, 1), seed 0" in decided["protocol"]
    predictor = Predictor.from_run(out, "cpu")
    images, boxes = held_out_images(held_out_normals(out), 32)
    again = mask_threshold.decide_mask_quantile(predictor, images, boxes, fraction="auto", fade=0.3)
    assert again["mask_quantile"]["validation_iou"] == pytest.approx(decided["validation_iou"], abs=1e-6)


def test_cavga_validate_sweeps_the_mask_threshold_on_the_decisions_faded_paint(
    tiny_data, tmp_path, monkeypatch, capsys
):
    """With ``infer.mask_fade`` < 1 `cavga validate` sweeps the mask threshold on the faded painted set
    the decision used (so the threshold in use tops its sweep); its threshold-free metrics stay on
    full-strength paint."""
    run, out = _tiny_run(tiny_data, tmp_path / "run", 0.2), tmp_path / "faded"
    redecide_run(run, out, ["infer.mask_fade=0.3"], "cpu")
    swept = []
    monkeypatch.setattr(validation, "mask_sweep", lambda p, maps, *a: swept.append(maps) or mask_sweep(p, maps, *a))
    assert main(["validate", str(out), "--device", "cpu"]) == 0
    assert "defects faded to U(0.3, 1)" in capsys.readouterr().out
    checked = json.loads((out / VALIDATION_FILE).read_text())
    assert checked["mask_fade"] == 0.3 and "faded to U(0.3, 1)" in checked["mask_sweep_protocol"]
    assert "faded" not in checked["protocol"]
    predictor = Predictor.from_run(out, "cpu")
    images, boxes = held_out_images(held_out_normals(out), 32)
    maps = {f: predict_painted(predictor, images, boxes, 0, 2, f)[0]["map"] for f in (0.3, 1.0)}  # (M, S, S) each
    assert np.allclose(np.stack(swept[0]), maps[0.3], rtol=0, atol=1e-7)  # the decision's faded set
    assert not np.allclose(maps[0.3], maps[1.0], rtol=0, atol=1e-6)  # which full-strength paint would not give


def test_a_peak_fraction_set_at_inference_takes_the_quantile_the_sweep_ranks_best_at_it():
    """Training chose 0.9 with r = 0.5; asked for r = 0 at inference, the auto quantile is the best
    at r = 0 (0.9999 here), not the 0.9 that suits r = 0.5 only."""
    sweep = {"0.9": 0.05, "0.99": 0.2, "0.9999": 0.3, "0.9@0.5": 0.4, "0.99@0.5": 0.35, "0.9999@0.5": 0.1}
    state = {"mask_quantile": {"mask_quantile": 0.9, "validation_iou": sweep},
             "mask_peak_fraction": {"mask_peak_fraction": 0.5}}  # fmt: skip

    def quantile(fraction, quantile="auto", decisions=state):
        cfg = RunConfig()
        cfg.infer.mask_quantile, cfg.infer.mask_peak_fraction = quantile, fraction
        mask_threshold.requantile(cfg, decisions)
        return cfg.infer.mask_quantile

    assert quantile(0.0) == 0.9999 and quantile(0.5) == 0.9
    assert quantile("auto") == "auto"  # as trained: the checkpoint's decision stands
    assert quantile(0.3) == "auto"  # a fraction the sweep did not weigh: the decided quantile stays
    assert quantile(0.0, 0.95) == 0.95  # a quantile set by hand stays
    fixed = {"mask_quantile": state["mask_quantile"]}  # a run trained with its fraction fixed
    assert quantile(0.0, decisions=fixed) == "auto"


def test_the_mask_quantile_with_the_best_painted_iou_wins_and_ties_go_nearest_099(tiny_data, tmp_path, monkeypatch):
    """A tiny run's masks barely meet the painted defects (IoU 0 at every quantile), so the choice
    itself is checked on a made-up sweep: the highest IoU, and of tied ones the nearest to 0.99."""
    predictor = Predictor.from_run(_tiny_run(tiny_data, tmp_path / "run", 0.2), "cpu")
    sweep = {"0.9": 0.1, "0.95": 0.3, "0.98": 0.3, "0.99": 0.2, "0.995": 0.3, "0.999": 0.0, "0.9995": 0.0}
    sweep.update({"0.9999": 0.1, "1.0": 0.3, "1.0+0.025": 0.3, "1.0+0.05": 0.1, "1.0+0.1": 0.0, "1.0+0.2": 0.0})
    share = defaultdict(float)  # the share of the clean held-out normals each threshold flags
    monkeypatch.setattr(mask_threshold, "mask_sweep", lambda *a: (sweep, share))
    images = torch.rand(2, 3, 32, 32)  # (N, 3, S, S)

    def decide(margin="auto"):  # as the run asked infer.mask_margin
        d = mask_threshold.decide_mask_quantile(predictor, images, margin=margin)
        return d["mask_quantile"]["mask_quantile"], d.get("mask_margin", {}).get("mask_margin")

    decided = mask_threshold.decide_mask_quantile(predictor, images, margin="auto")
    assert decided["mask_quantile"]["validation_iou"] == sweep
    assert decide() == (0.995, 0.0)  # ties: no margin first, then the quantile nearest 0.99
    sweep.update({"0.9": 0.5})
    assert decide() == (0.9, 0.0)
    sweep.update({"1.0+0.05": 0.6})  # above every held-out normal pixel, 5% of the way to 1
    assert decide() == (1.0, 0.05)
    assert decide(margin=0.0) == (0.9, None)  # a margin set by hand: the quantiles only, no margin decided
    # with an auto peak fraction: every threshold at each fraction; ties go to the lowest fraction
    sweep.update({f"{k}@{r}": 0.0 for k in list(sweep) for r in MASK_PEAK_FRACTIONS[1:]})
    sweep.update({"0.95@0.5": 0.7, "0.95@0.6": 0.7, "0.99@0.7": 0.7})

    def decide_fraction():
        d = mask_threshold.decide_mask_quantile(predictor, images, margin=0.0, fraction="auto")
        return d["mask_quantile"]["mask_quantile"], d["mask_peak_fraction"]["mask_peak_fraction"]

    assert decide_fraction() == (0.95, 0.5)
    assert "mask_peak_fraction" not in mask_threshold.decide_mask_quantile(predictor, images)  # set by hand (0)
    # the share of the clean normals each flags is stored beside, and does not weigh in the choice
    share.update({"0.9": 0.01, "0.95@0.5": 0.02, "0.95@0.6": 0.01, "0.99@0.7": 0.005})
    assert decide_fraction() == (0.95, 0.5)
    stored = mask_threshold.decide_mask_quantile(predictor, images, fraction="auto")["mask_quantile"]
    assert stored["validation_normal_share"]["0.95@0.5"] == 0.02


def test_a_peak_fraction_wins_where_maps_spread_wider_than_their_defects():
    """Maps that blur each painted square into a wider blob (as a coarse Grad-CAM does): no
    quantile's mask fits the defect, while a threshold half way to each map's peak does."""
    maps, masks = [], []
    for i in range(6):
        m = np.zeros((32, 32), dtype=bool)
        m[8 + i : 16 + i, 10:18] = True  # the painted defect
        blob = F.avg_pool2d(torch.from_numpy(m).float()[None, None], 9, stride=1, padding=4)[0, 0]  # (S, S)
        maps.append((0.1 + 0.9 * blob * (0.5 + 0.1 * i)).numpy())  # peaks differ from image to image
        masks.append(m)
    labels = np.ones(6, dtype=int)
    normals = SimpleNamespace(map_quantiles=[0.1] * 11)  # held-out normal pixels all at the floor 0.1

    class Held:
        normalizer = normals

        def threshold_at_quantile(self, q, f=0.0):
            return float(np.nextafter(np.float32(0.1), np.float32(1)))

    sweep, _ = mask_threshold.mask_sweep(Held(), maps, masks, labels, 0.0, "auto")
    best = max(sweep, key=sweep.get)
    assert "@" in best and 0.3 <= float(best.split("@")[1]) <= 0.7  # a fraction near half way wins
    assert sweep[best] > 0.7 > 0.3 > max(v for k, v in sweep.items() if "@" not in k)  # the quantiles' best


def test_the_mask_margin_raises_the_quantiles_threshold_towards_the_maps_ceiling(tiny_data, tmp_path):
    predictor = Predictor.from_run(_tiny_run(tiny_data, tmp_path / "run", 0.2), "cpu")
    peak = predictor.normalizer.map_quantiles[-1]  # the highest held-out normal pixel of the map in use
    above = float(np.nextafter(np.float32(peak + 0.3 * (1 - peak)), np.float32(np.inf)))
    assert predictor.threshold_at_quantile(1.0, 0.3) == above
    assert predictor.threshold_at_quantile(1.0) == float(np.nextafter(np.float32(peak), np.float32(np.inf)))
    raised = Predictor.from_run(tmp_path / "run", "cpu", ["infer.mask_quantile=1.0", "infer.mask_margin=0.3"])
    assert raised.mask_threshold == above
    assert mask_candidates(0.1)["0.99+0.1"] == (0.99, 0.1, 0.0) and "1.0+0.05" not in mask_candidates(0.1)


def test_training_chooses_the_image_score_that_validates_better(tiny_data, tmp_path):
    run = _tiny_run(tiny_data, tmp_path / "run", 0.2)
    stored = load_checkpoint(run / CHECKPOINT)["image_score"]
    by_score = stored["validation_image_auroc"]
    best = max(by_score.values())  # ties keep the paper's, then the map's
    assert stored["image_score"] == next(k for k in ("paper", "map", "bce") if by_score[k] == best)
    assert Predictor.from_run(run, "cpu").cfg.infer.image_score == stored["image_score"]
    # cavga validate scores the same painted set (same seed and copies) with each score
    again = validate_run(run, device="cpu")["image_auroc_by_score"]
    assert set(by_score) == {"paper", "map", "bce"} and again == pytest.approx(by_score, abs=1e-4)
    assert Predictor.from_run(run, "cpu", ["infer.image_score=paper"]).image_score_normalizer is None


def test_the_image_score_is_the_best_candidate_and_ties_keep_the_papers():
    by_score = {"paper": 0.88, "map": 0.92, "bce": 0.91}  # digit 1, seed 1, session 44, rounded
    assert painted_decisions.choose_image_score(by_score) == "map"
    assert painted_decisions.choose_image_score(by_score, CLASS_ANOMALY_SCORES) == "bce"
    assert painted_decisions.choose_image_score({"paper": 0.9, "map": 0.9, "bce": 0.9}) == "paper"
    with pytest.raises(ValueError, match="none of the image scores"):
        painted_decisions.choose_image_score({"map": 0.9}, CLASS_ANOMALY_SCORES)


@pytest.mark.parametrize(("layout", "candidates"), [("digits", ["paper", "bce"]), (None, ["paper", "map", "bce"])])
def test_a_one_class_layout_chooses_among_whole_image_scores_only(tiny_data, tmp_path, layout, candidates):
    cfg = RunConfig()
    cfg.data.root, cfg.data.category, cfg.data.image_size = str(tiny_data), "brick", 32
    if layout:  # sklearn's digits, one class normal: anomalies are whole images of the other classes
        cfg.data.root, cfg.data.layout, cfg.data.category = None, layout, "0"
    cfg.model.base_channels = cfg.model.latent_channels = 8
    cfg.train.epochs, cfg.train.batch_size, cfg.train.device = 1, 16, "cpu"
    train(cfg, tmp_path / "run", progress=False)
    stored = load_checkpoint(tmp_path / "run" / CHECKPOINT)["image_score"]
    assert stored["candidates"] == candidates and set(stored["validation_image_auroc"]) == {"paper", "map", "bce"}
    best = max(stored["validation_image_auroc"][k] for k in candidates)
    assert stored["image_score"] == next(k for k in candidates if stored["validation_image_auroc"][k] == best)


def test_redecide_reruns_trainings_end_in_a_copy(tiny_data, tmp_path):
    script = benchmark_script("redecide")
    run = _tiny_run(tiny_data, tmp_path / "run", 0.2)
    before = (run / CHECKPOINT).read_bytes()
    out = tmp_path / "direct"
    assert script.main([str(run), str(out), "--set", "infer.attention_direction=direct", "--device", "cpu"]) == 0
    assert (run / CHECKPOINT).read_bytes() == before  # the run itself is untouched
    state = load_checkpoint(out / CHECKPOINT)
    assert state["config"]["infer"]["attention_direction"] == "direct"
    assert state["normalizer"]["direction"] == "direct" and state["normalizer"]["map_version"] == MAP_VERSION
    assert Predictor.from_run(out, "cpu").normalizer.map_quantiles == state["normalizer"]["map_quantiles"]
    with pytest.raises(CavgaError, match=f"{out}: already exists"):  # never over an existing folder
        script.main([str(run), str(out), "--device", "cpu"])


def test_cavga_redecide_chooses_the_threshold_again_for_a_changed_map(tiny_data, tmp_path, capsys, monkeypatch):
    """A map setting changed on a trained run (here the blur turned off) warns that the mask threshold
    was chosen for the other map; `cavga redecide` chooses it again, for the new map, in a new folder,
    as training's end would (the copy's settings, statistics and choice are the new map's); the run
    itself is untouched, and a failed redecide leaves no folder behind."""
    from cavga.cli import main

    run = _tiny_run(tiny_data, tmp_path / "run", 0.2)
    evaluate_run(run, device="cpu", progress=False)  # its metrics, maps and report: of the old decisions
    before = (run / CHECKPOINT).read_bytes()
    candidate = candidate_dir(run, 3)  # a restart candidate's folder, as train.restarts leaves one
    candidate.mkdir(parents=True)
    save_checkpoint(load_checkpoint(run / CHECKPOINT), candidate / CHECKPOINT)
    (candidate / "notes.txt").write_text("kept")
    assert load_checkpoint(run / CHECKPOINT)["normalizer"]["blur"] == 4.0  # the default map
    with pytest.warns(ThresholdForAnotherMap, match=r"cavga redecide .* NEW_DIR --set infer.map_blur=0`"):
        Predictor.from_run(run, "cpu", ["infer.map_blur=0"])
    out = tmp_path / "sharp"
    assert main(["redecide", str(run), str(out), "--set", "infer.map_blur=0", "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    assert "mask_quantile: " in said and f"written: {out}" in said
    assert (run / CHECKPOINT).read_bytes() == before
    assert {"metrics.json", "maps", "report"} <= {p.name for p in run.iterdir()}
    # the candidate's checkpoint is shared by a hard link, other files copied; writing the copy's
    # checkpoint replaces its link and leaves the run's file as it was
    linked, notes = candidate_dir(out, 3) / CHECKPOINT, candidate_dir(out, 3) / "notes.txt"
    assert linked.samefile(candidate / CHECKPOINT) and notes.read_text() == "kept"
    assert not notes.samefile(candidate / "notes.txt")
    kept = (candidate / CHECKPOINT).read_bytes()
    save_checkpoint({**load_checkpoint(linked), "epoch": 99}, linked)
    assert not linked.samefile(candidate / CHECKPOINT) and (candidate / CHECKPOINT).read_bytes() == kept
    assert not {"metrics.json", "scores.json", "maps", "report", "overlays", ".lock"} & {p.name for p in out.iterdir()}
    state = load_checkpoint(out / CHECKPOINT)
    assert state["config"]["infer"]["map_blur"] == 0.0 and state["normalizer"]["blur"] == 0.0
    chosen = state["mask_quantile"]  # the best of the copy's own painted sweep
    best = max(chosen["validation_iou"].values())
    label = mask_label(chosen["mask_quantile"], 0.0, state["mask_peak_fraction"]["mask_peak_fraction"])
    assert chosen["validation_iou"][label] == best
    # that sweep is of the new map: `cavga validate` on the copy (blur 0) scores the same IoUs
    assert validate_run(out, device="cpu")["mask_quantile_iou"] == pytest.approx(chosen["validation_iou"], abs=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThresholdForAnotherMap)  # the copy's threshold is its own map's
        predictor = Predictor.from_run(out, "cpu")
        Predictor.from_run(run, "cpu", ["infer.mask_quantile=0.99"])  # the same map, another threshold
    assert predictor.cfg.infer.map_blur == 0.0
    for argv, message in (
        (["redecide", str(run), str(out)], "already exists"),
        (["redecide", str(run), str(tmp_path / "x"), "--set", "train.epochs=3"], "only infer"),
        (["redecide", str(run), str(tmp_path / "x"), "--set", "infer.map_blur=-1"], "infer.map_blur"),
    ):
        assert main(argv) != 0
        assert message in capsys.readouterr().err
    import cavga.redecide

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cavga.redecide, "_decide", interrupted)
    assert main(["redecide", str(run), str(tmp_path / "x"), "--device", "cpu"]) == 130
    assert capsys.readouterr().err == "cavga: interrupted\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "sharp"]  # no half-written folder


def test_vae_score_probe_scores_the_painted_set_as_validate_does(tiny_data, tmp_path):
    """benchmarks/vae_score_probe.py: its l1 column is validate's reconstruction score ("paper"),
    on the same painted held-out set."""
    run = _tiny_run(tiny_data, tmp_path / "run", 0.2)
    probe = benchmark_script("vae_score_probe").probe(run)
    assert set(probe) == {"l1", "bce", "bce_excess", "kl", "elbo"} and all(0 <= v <= 1 for v in probe.values())
    by_score = validate_run(run, device="cpu", infer=["infer.image_score=paper"])["image_auroc_by_score"]
    assert probe["l1"] == pytest.approx(by_score["paper"], abs=1e-4)
    assert probe["bce_excess"] == pytest.approx(by_score["bce"], abs=1e-4)  # summed there, averaged here


def _checked(pixel: float, image: float, n: int = 20) -> dict:
    metrics = {"pixel_auroc": pixel, "image_auroc": image, "iou": 0.1}
    return {"run": "runs/x", "protocol": "p", "n_held_out": n, "metrics": metrics}


@pytest.mark.parametrize(
    ("pixel", "image", "warned"),
    [(0.69, 0.95, ["map"]), (0.95, 0.65, ["score"]), (0.5, 0.5, ["map", "score"]), (0.7, 0.7, [])],
)
def test_training_warns_only_where_painted_defects_are_barely_found(pixel, image, warned):
    said = check.check_warnings(_checked(pixel, image))
    assert len(said) == len(warned)
    for message, what in zip(said, warned, strict=True):
        assert message.startswith("runs/x: ")
        assert ("anomaly map" in message) == (what == "map") and ("image score" in message) == (what == "score")
        assert f"{pixel if what == 'map' else image:.3f} < {check.WEAK_AUROC}" in message


def test_decisions_table_reads_back_what_training_chose_on_the_painted_set(tiny_data, tmp_path):
    run = _tiny_run(tiny_data, tmp_path / "run", 0.3)
    state = load_checkpoint(run / CHECKPOINT)
    row = benchmark_script("decisions_table").decisions(run)
    chosen = state["image_score"]["image_score"]
    assert row["image_score"] == chosen and row["resize"] == "stretch"
    assert row["validation_image_auroc"] == state["image_score"]["validation_image_auroc"][chosen]
    assert row["validation_pixel_auroc"] == state["attention_direction"]["validation_pixel_auroc"]
    shift = state["shifted_map"]
    assert row["shifted_map"] is shift["shifted_map"]
    assert row["validation_pixel_auroc_by_shift"] == shift["validation_pixel_auroc_by_shift"]


def _stored(folder, model, val, test, direction="inverse"):
    """A run folder as `cavga validate` and `cavga evaluate` leave it: (pixel, image, IoU) each."""
    folder.mkdir(parents=True)
    keys = ("pixel_auroc", "image_auroc", "iou")
    (folder / "validation.json").write_text(
        json.dumps({"attention_direction": direction, "metrics": dict(zip(keys, val, strict=True))})
    )
    test_file = {"model": model, "attention_direction": "inverse", "split": {"category": "bottle"}}
    (folder / "metrics.json").write_text(json.dumps({**test_file, "metrics": dict(zip(keys, test, strict=True))}))


def test_validation_vs_test_pairs_runs_counts_copies_once_and_ranks_as_scipy(tmp_path):
    from scipy.stats import spearmanr

    script = benchmark_script("validation_vs_test")
    pairs = [
        ((0.6, 0.7, 0.1), (0.55, 0.6, 0.05)),
        ((0.8, 0.9, 0.2), (0.9, 0.8, 0.2)),
        ((0.95, 1.0, 0.3), (0.7, 0.9, 0.1)),
    ]
    for i, (val, test) in enumerate(pairs):
        _stored(tmp_path / f"r{i}", "CAVGA-Du", val, test)
    _stored(tmp_path / "copy" / "r1", "CAVGA-Du", (0.8, 0.9, 0.25), (0.9, 0.8, 0.3))  # r1 re-decided: its masks only
    _stored(tmp_path / "other", "CAVGA-Du", (0.5, 0.5, 0.0), (0.9, 0.9, 0.9), direction="direct")  # other settings
    _stored(tmp_path / "ae", "AE-L2", (0.9, 0.8, 0.4), (0.6, 0.7, 0.1))
    rows = script.collect(tmp_path)
    assert sorted(r["run"] for r in rows) == ["ae", "copy/r1", "r0", "r2"]  # first by path: copy/r1 before r1
    summary = script.summarise([r for r in rows if not r["baseline"]])
    expected = spearmanr([p[0][0] for p in pairs], [p[1][0] for p in pairs])[0]
    assert summary["n"] == 3 and summary["spearman"]["pixel_auroc"]["rho"] == pytest.approx(expected, abs=1e-3)
    assert [b["n"] for b in summary["bands"]] == [1, 1, 1]
    assert summary["bands"][2] == {"val_pixel_auroc": "[0.9, 1.0]", "n": 1, "test_min": 0.7, "test_median": 0.7,
                                   "test_max": 0.7}  # fmt: skip
    _stored(tmp_path / "ru", "CAVGA-Ru (EfficientNet-Lite0, frozen)", (0.9, 0.9, 0.3), (0.8, 0.8, 0.2))
    named = script.groups(script.collect(tmp_path))
    assert {r["run"] for r in named["CAVGA-D on bottle"]} == {"copy/r1", "r0", "r2"}
    assert [r["run"] for r in named["CAVGA-R on bottle"]] == ["ru"] and len(named["cavga on bottle"]) == 4
    assert [r["run"] for r in named["baselines"]] == ["ae"]


def test_training_warns_when_few_held_out_normals_stand_behind_the_check():
    assert check.check_warnings(_checked(0.9, 0.9, n=check.FEW_HELD_OUT)) == []
    [said] = check.check_warnings(_checked(0.9, 0.9, n=3))
    assert "rest on only 3 held-out normal images" in said


def test_auto_shift_keeps_the_half_cell_average_only_where_it_localises_painted_defects_better():
    images = torch.full((4, 3, 64, 64), 0.9)  # (N, 3, S, S) plain held-out normals
    decided = decide_on_painted(_model_whose_attention(True), images, 4, torch.device("cpu"), image_score="paper")
    shift = decided["shifted_map"]
    by_shift = shift["validation_pixel_auroc_by_shift"]
    assert (
        set(by_shift) == {"off", "on"} and by_shift["off"] == decided["attention_direction"]["validation_pixel_auroc"]
    )
    assert shift["shifted_map"] is (by_shift["on"] > by_shift["off"])
    # the average puts an 8x8 grid's values between its cell centres: painted defects, which rarely
    # fill whole cells, are ranked better by it on this model
    assert by_shift["on"] > by_shift["off"]
    fixed = decide_on_painted(
        _model_whose_attention(True), images, 4, torch.device("cpu"), image_score="paper", shifted=False
    )
    assert fixed["shifted_map"] is None


def test_auto_enlargement_keeps_the_enlarged_images_map_only_where_it_localises_painted_defects_better():
    images = torch.full((4, 3, 64, 64), 0.9)  # (N, 3, S, S) plain held-out normals
    decided = decide_on_painted(
        _model_whose_attention(True), images, 4, torch.device("cpu"), image_score="paper", enlarged="auto"
    )
    grown = decided["enlarged_map"]
    by_size = grown["validation_pixel_auroc_by_enlargement"]
    assert by_size["off"] == max(decided["shifted_map"]["validation_pixel_auroc_by_shift"].values())  # as chosen
    assert grown["enlarged_map"] is (by_size["on"] > by_size["off"])
    assert by_size["on"] != by_size["off"]  # another map (on this stand-in encoder, a worse one: kept off)
    fixed = decide_on_painted(_model_whose_attention(True), images, 4, torch.device("cpu"), image_score="paper")
    assert fixed["enlarged_map"] is None  # off unless asked (infer.enlarged_map's default)


def test_only_cavga_u_with_a_convolutional_z_reads_the_enlarged_image():
    for variant, flat in (("Dw", False), ("Ru", True)):
        cfg = apply_overrides(RunConfig(), {"model.variant": variant, "model.flat_latent": flat})
        apply_overrides(cfg, {"infer.enlarged_map": "auto"}).validate()  # auto: "no" without a painted check
        with pytest.raises(CavgaError, match="infer.enlarged_map needs CAVGA-u with a convolutional z"):
            apply_overrides(cfg, {"infer.enlarged_map": True}).validate()
    model = CAVGA(ModelConfig(variant="Dw", base_channels=8, latent_channels=4), 32, allow_random_init=True)
    images = torch.rand(2, 3, 32, 32)  # (N, 3, S, S)
    decided = decide_on_painted(model, images, 4, torch.device("cpu"), image_score="paper", enlarged="auto")
    assert decided["enlarged_map"] is None


@pytest.mark.parametrize(
    ("setting", "attr", "asked"), [("shifted_map", "shifted", False), ("enlarged_map", "enlarged", "auto")]
)
def test_training_resolves_a_map_option_and_an_override_refits_the_maps_statistics(
    tiny_data, tmp_path, setting, attr, asked
):
    """infer.shifted_map (auto by default) and infer.enlarged_map (asked for here)."""
    run = _tiny_run(tiny_data, tmp_path / "run", 0.2, enlarged=asked)
    stored = load_checkpoint(run / CHECKPOINT)[setting][setting]
    predictor = Predictor.from_run(run, "cpu")
    assert getattr(predictor.cfg.infer, setting) is stored and getattr(predictor.normalizer, attr) is stored
    other = Predictor.from_run(run, "cpu", [f"infer.{setting}={str(not stored).lower()}"])
    assert getattr(other.normalizer, attr) is (not stored)  # the held-out statistics of the map now in use
    assert other.normalizer.map_quantiles != predictor.normalizer.map_quantiles
    x = torch.rand(2, 3, 32, 32)  # (B, 3, S, S)
    assert not torch.equal(other.predict_batch(x).anomaly_map, predictor.predict_batch(x).anomaly_map)
    assert validate_run(run, device="cpu", copies=1)[setting] is stored
    assert evaluate_run(run, device="cpu", progress=False, report=False)[setting] is stored  # metrics.json


def test_painted_decisions_read_the_blurred_map():
    """infer.map_blur: the painted check's maps are those inference reads, blurred as asked."""
    images = torch.full((4, 3, 64, 64), 0.9)  # (N, 3, S, S) plain held-out normals
    model = _model_whose_attention(True)
    by = [
        decide_on_painted(model, images, 4, torch.device("cpu"), image_score="paper", blur=b)["shifted_map"]
        for b in (0.0, 4.0)
    ]
    assert by[0]["validation_pixel_auroc_by_shift"] != by[1]["validation_pixel_auroc_by_shift"]


def test_the_map_blur_is_read_everywhere_and_an_override_refits_the_maps_statistics(tiny_data, tmp_path):
    run = _tiny_run(tiny_data, tmp_path / "run", 0.2)
    assert load_checkpoint(run / CHECKPOINT)["normalizer"]["blur"] == 4.0  # the default, at the held-out fit
    predictor = Predictor.from_run(run, "cpu")
    other = Predictor.from_run(run, "cpu", ["infer.map_blur=0"])
    assert predictor.normalizer.blur == 4.0 and other.normalizer.blur == 0.0  # the statistics of the map in use
    assert other.normalizer.map_quantiles != predictor.normalizer.map_quantiles
    x = torch.rand(2, 3, 32, 32)  # (B, 3, S, S)
    sharp, blurred = other.predict_batch(x).anomaly_map, predictor.predict_batch(x).anomaly_map  # (B, S, S)
    assert (sharp - blurred).abs().max() > 1e-3
    # the blur smooths: the map's steepest step between neighbouring pixels is lower
    assert float(blurred.diff(dim=-1).abs().max()) < float(sharp.diff(dim=-1).abs().max())
    assert validate_run(run, device="cpu", copies=1)["map_blur"] == 4.0
    assert evaluate_run(run, device="cpu", progress=False, report=False, infer=["infer.map_blur=2"])["map_blur"] == 2.0


def test_the_printed_sweep_names_the_best_threshold_at_each_peak_fraction():
    one = {"0.99": 0.2, "0.9999": 0.3}
    assert mask_threshold.mask_sweep_text(one) == "0.99: 0.2, 0.9999: 0.3"  # one fraction: every threshold
    sweep = {**one, "0.99@0.5": 0.45, "0.9@0.5": 0.4, "0.9@0.8": 0.1}
    assert (
        mask_threshold.mask_sweep_text(sweep) == "best at each peak fraction: 0.9999: 0.3, 0.99@0.5: 0.45, 0.9@0.8: 0.1"
    )


def test_the_mask_gate_study_reads_the_threshold_and_the_numbers_evaluate_reports(tiny_data, tmp_path):
    """benchmarks/mask_gate.py (on benchmarks/mask_peak_fraction.py's choice): the threshold it takes
    is the one training's end decided, so its test IoU and normal-image shares, with and without
    the verdict gate, are those evaluate writes to metrics.json."""
    benchmark_script("mask_peak_fraction")  # mask_gate imports it, as it does when run from benchmarks/
    script = benchmark_script("mask_gate")
    run = _tiny_run(tiny_data, tmp_path / "run", 0.2)
    metrics = evaluate_run(run, device="cpu", progress=False, report=False)["metrics"]
    assert script.main([str(run), "--out", str(tmp_path / "gate.json")]) == 0
    row = json.loads((tmp_path / "gate.json").read_text())["runs"][str(run)]
    state = load_checkpoint(run / CHECKPOINT)
    decided = mask_label(
        state["mask_quantile"]["mask_quantile"], 0.0, state["mask_peak_fraction"]["mask_peak_fraction"]
    )
    assert row["threshold"] == decided
    test = row["test"]
    assert test["iou_all"] == pytest.approx(metrics["iou"], abs=1e-4)
    assert test["iou_gated"] == pytest.approx(metrics["iou_gated"], abs=1e-4)
    assert test["normal_any_all"] == pytest.approx(metrics["normal_flagged"], abs=1e-4)
    assert test["normal_any_gated"] == pytest.approx(metrics["normal_flagged_gated"], abs=1e-4)


def test_pixel_auroc_by_kind_scores_each_painted_type_against_the_clean_images_only():
    """Per painted type: its images' pixels and the clean images' pixels, scored by scikit-learn's
    ROC AUC; the other types' images stay out, and a type the set lacks is left out."""
    from sklearn.metrics import roc_auc_score

    g = np.random.default_rng(0)
    maps = [g.random((4, 4)) for _ in range(5)]
    masks = [np.zeros((4, 4), bool) for _ in range(5)]
    for m in masks[2:]:
        m[1:3, 1:3] = True
    kinds, labels = ["", "", "scratch", "hole", "scratch"], np.array([0, 0, 1, 1, 1])
    got = pixel_auroc_by_kind(maps, masks, kinds, labels)
    assert set(got) == {"scratch", "hole"}
    for kind, idx in (("scratch", [0, 1, 2, 4]), ("hole", [0, 1, 3])):
        y = np.concatenate([masks[j].ravel() for j in idx])
        s = np.concatenate([maps[j].ravel() for j in idx])
        assert got[kind] == round(roc_auc_score(y, s), 4)


def test_redecide_refuses_an_out_inside_the_run_and_in_place_keeps_the_users_report_files(tiny_data, tmp_path):
    from cavga.redecide import infer_settings, redecide_in_place, redecide_run

    run = _tiny_run(tiny_data, tmp_path / "run", 0.2)
    with pytest.raises(CavgaError, match=r"sub: inside the run folder"):
        redecide_run(run, run / "sub", [], "cpu")
    assert not (run / "sub").exists()
    evaluate_run(run, device="cpu", progress=False)
    (run / "report" / "notes.txt").write_text("mine")
    cfg = load_config(run / "config.yaml", saved=True)
    cfg.infer.map_blur = 0.0
    assert redecide_in_place(run, infer_settings(cfg), "cpu") is not None
    assert not (run / "overlays").exists() and not (run / "metrics.json").exists()  # of the old decisions
    assert [p.name for p in (run / "report").iterdir()] == ["notes.txt"]

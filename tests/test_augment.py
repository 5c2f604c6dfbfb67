"""train.augment: the symmetries of the square, applied per image with its padding mask, in training."""

from __future__ import annotations

import pytest
import torch

import cavga.train as train_module
from cavga.cli import main
from cavga.config import RunConfig, to_dict
from cavga.data import augment_batch, epoch_generator, square_symmetry
from cavga.demo_data import generate_demo_dataset
from cavga.errors import CavgaError
from cavga.fingerprint import config_fingerprint


def _asymmetric(batch: int = 1) -> torch.Tensor:
    return torch.arange(batch * 2 * 5 * 5, dtype=torch.float32).reshape(batch, 2, 5, 5)  # (B, C, 5, 5)


def test_the_eight_codes_are_the_eight_symmetries_of_the_square():
    x = _asymmetric()
    reference = [torch.rot90(x, k, (-2, -1)) for k in range(4)] + [
        torch.rot90(x.flip(-1), k, (-2, -1)) for k in range(4)
    ]
    got = [square_symmetry(x, code) for code in range(8)]
    for r in reference:  # each symmetry produced exactly once
        assert sum(torch.equal(r, g) for g in got) == 1
    for code in range(4):  # 0..3 are mirrorings: no transpose
        assert any(torch.equal(square_symmetry(x, code), x.flip(dims)) for dims in ([], [-1], [-2], [-1, -2]))


def _codes_of(out: torch.Tensor, x: torch.Tensor) -> list[int]:
    """Which symmetry took each x[i] to out[i] (the first that matches)."""
    return [next(c for c in range(8) if torch.equal(square_symmetry(x[i], c), out[i])) for i in range(len(x))]


@pytest.mark.parametrize(("mode", "n"), [("flips", 4), ("dihedral", 8)])
def test_each_image_gets_its_own_draw_of_its_modes_symmetries(mode, n):
    x = _asymmetric(64)
    out, _ = augment_batch(x, None, mode, epoch_generator(0, 0))
    codes = _codes_of(out, x)
    assert set(codes) == set(range(n))  # 64 draws reach every one of the mode's symmetries, and no other
    assert torch.equal(x, _asymmetric(64))  # the input batch is not changed in place


def test_none_returns_the_batch_as_it_is():
    x, valid = _asymmetric(3), torch.ones(3, 1, 5, 5)
    out, out_valid = augment_batch(x, valid, "none", epoch_generator(0, 0))
    assert out is x and out_valid is valid


def test_the_padding_mask_moves_with_its_image():
    x = _asymmetric(32)
    valid = (x[:, :1] % 7 < 3).float()  # (B, 1, 5, 5): a mask tied to the image's content
    out, out_valid = augment_batch(x, valid, "dihedral", epoch_generator(3, 1))
    assert torch.equal(out_valid, (out[:, :1] % 7 < 3).float())


def test_draws_repeat_for_a_seed_epoch_and_rank_and_change_with_each():
    x = _asymmetric(32)

    def codes(seed, epoch, rank=0):
        return _codes_of(augment_batch(x, None, "dihedral", epoch_generator(seed, epoch, rank))[0], x)

    assert codes(0, 2) == codes(0, 2)
    assert codes(0, 2) != codes(0, 3) and codes(0, 2) != codes(1, 2) and codes(0, 2) != codes(0, 2, rank=1)


def test_config_rejects_an_unknown_mode_and_none_keeps_old_runs_identity():
    cfg = RunConfig()
    cfg.train.augment = "rotate"
    with pytest.raises(CavgaError, match="train.augment"):
        cfg.validate()
    saved_before = to_dict(RunConfig())
    del saved_before["train"]["augment"]  # a config.yaml written before the key existed
    assert config_fingerprint(saved_before) == config_fingerprint(to_dict(RunConfig()))


def test_training_steps_see_the_flipped_and_turned_images(tmp_path, monkeypatch):
    """The same run with and without --augment dihedral: each image a training step saw is a
    symmetry of the image at the same place without augmentation, and not all are the identity."""
    data = tmp_path / "data"
    generate_demo_dataset(data, seed=0, n_train=12, n_test_good=2, n_test_defect=4, crop=48)
    seen: dict[str, list[torch.Tensor]] = {"none": [], "dihedral": []}
    real_step = train_module.train_step
    mode = {"now": "none"}

    def recording_step(model, disc, opt_g, opt_d, x, *args, **kwargs):
        seen[mode["now"]].append(x.detach().clone())
        return real_step(model, disc, opt_g, opt_d, x, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", recording_step)
    for m in ("none", "dihedral"):
        mode["now"] = m
        args = [
            "train", "--data", str(data), "--layout", "mvtec", "--category", "brick", "--model", "Du",
            "--out", str(tmp_path / m), "--epochs", "1", "--image-size", "32", "--batch-size", "4",
            "--device", "cpu", "--no-progress", "--no-check", "--augment", m,
            "--set", "model.base_channels=8", "--set", "model.latent_channels=8",
        ]  # fmt: skip
        assert main(args) == 0
    plain, augmented = torch.cat(seen["none"]), torch.cat(seen["dihedral"])  # (N, 3, 32, 32)
    assert plain.shape == augmented.shape and len(plain) >= 8
    codes = _codes_of(augmented, plain)
    assert any(codes) and len(set(codes)) > 2


def test_shift_moves_each_image_by_at_most_a_sixteenth_with_its_mask_and_its_edge_reflected_in():
    x = torch.rand(16, 3, 64, 64)  # (B, C, S, S): d = 64 // 16 = 4
    valid = (x[:, :1] > 0.5).float()  # (B, 1, S, S) tied to the content
    out, out_valid = augment_batch(x, valid, "shift", epoch_generator(0, 0))
    assert torch.equal(out_valid, (out[:, :1] > 0.5).float())  # the mask moved with its image
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")  # (B, C, 72, 72)
    moves = []
    for i in range(len(x)):  # each output is one 64 px window of the reflected image, at most 4 px off
        hits = [
            (oy, ox)
            for oy in range(9)
            for ox in range(9)
            if torch.equal(padded[i, :, oy : oy + 64, ox : ox + 64], out[i])
        ]
        assert len(hits) == 1
        moves.append(hits[0])
    assert len(set(moves)) > 4  # each image its own draw
    again, _ = augment_batch(x, valid, "shift", epoch_generator(0, 0))
    assert torch.equal(again, out)  # the same draws for the same seed and epoch

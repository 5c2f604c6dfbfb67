"""A run folder's data and bookkeeping, shared by CAVGA's training loop and the baselines': the split
(train / held-out normals / test) saved as split.json, opening a run to start or resume it, the
resume checks, and history.jsonl."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from . import data as D
from .config import (
    AE_BASELINES,
    InferConfig,
    RunConfig,
    apply_overrides,
    from_dict,
    load_config,
    old_defaults,
    save_config,
    to_dict,
)
from .errors import CavgaError
from .fingerprint import MUTABLE, split_fingerprint
from .image_scores import BLURRED_BASELINES_MAP_VERSION, Normalizer
from .io_utils import atomic_write_json, atomic_write_text, json_with_keys, read_json
from .map_choice import AUTO_SETTINGS
from .runtime import CHECKPOINT, check_fields, load_checkpoint, of_type, shown, type_words

SPLIT_FILE = "split.json"
HISTORY_FILE = "history.jsonl"
VALIDATION_FILE = "validation.json"  # the painted-defect check (cavga.validation)
SUMMARY = "summary"  # a `--category all` sweep's OUT/summary.json and .md (cavga.categories)


@dataclass
class RunData:
    """The records a run trains, calibrates and tests on; saved as split.json beside the run."""

    train: list[D.Record]
    val: list[D.Record]
    test: list[D.Record]
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "info": self.info,
            "train": [r.to_dict() for r in self.train],
            "val": [r.to_dict() for r in self.val],
            "test": [r.to_dict() for r in self.test],
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> RunData:
        recs = {k: [D.Record.from_dict(r) for r in d[k]] for k in ("train", "val", "test")}
        return RunData(recs["train"], recs["val"], recs["test"], d.get("info", {}))

    @staticmethod
    def load(run_dir: str | Path) -> RunData:
        path = Path(run_dir) / SPLIT_FILE
        raw = read_json(path, f"is {run_dir} a cavga run folder?", "split file")
        if not isinstance(raw, dict) or not all(isinstance(raw.get(k), list) for k in ("train", "val", "test")):
            raise CavgaError(f"{path}: not a cavga split file (expected a mapping with train, val and test lists)")
        try:
            return RunData.from_dict(raw)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CavgaError(f"{path}: malformed record in split file ({type(e).__name__}: {e})") from None


def check_run_dir(run_dir: str | Path, holds: str = CHECKPOINT) -> Path:
    """A run folder named on the command line, as a Path; one that does not exist, or a file given
    for it, is a one-line CavgaError saying so (rather than naming a file missing inside it).
    ``holds``: the file the folder should hold, named when a file was given."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CavgaError(f"{run_dir}: no such run folder")
    if not run_dir.is_dir():
        raise CavgaError(f"{run_dir}: not a run folder (give the folder that holds {holds})")
    if not any((run_dir / name).exists() for name in (CHECKPOINT, "config.yaml", SPLIT_FILE)):
        _refuse_runs_inside(run_dir)
    return run_dir


def _refuse_runs_inside(folder: Path) -> None:
    """A folder that is no run but holds runs (a `--category all` sweep's OUT/<category>, a benchmark's
    OUT/<variant>) is a one-line CavgaError naming a few of them and saying to give one."""
    try:
        runs = sorted(p.name for p in folder.iterdir() if (p / CHECKPOINT).is_file() or (p / "config.yaml").is_file())
    except OSError:  # unreadable: the caller's own message says what is missing
        return
    if not runs:
        return
    shown = ", ".join(runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
    if (folder / f"{SUMMARY}.json").is_file():
        raise CavgaError(
            f"{folder}: holds one run per category ({shown}), not a run itself; "
            f"give {folder / '<category>'}, e.g. {folder / runs[0]}"
        )
    raise CavgaError(f"{folder}: holds run folders ({shown}), not a run itself; give one, e.g. {folder / runs[0]}")


def prepare_data(cfg: RunConfig) -> RunData:
    """Load the split for ``cfg.data`` and apply the variant's protocol (anomalous fraction, hold-out).

    Both variants are tested on the same images (the paper's Table 2): the seeded
    ``anomalous_fraction`` of anomalous test images that CAVGA-w trains on leaves the test set of
    CAVGA-u too (u does not train on them). Both hold out ``val_fraction`` of the normal training
    images, which fit the score normaliser and the mask quantile and are never trained on.
    """
    split = D.load_split(cfg.data)
    protocol = D.move_anomalous_to_train if cfg.model.weakly_supervised else D.drop_weak_anomalies_from_test
    if cfg.model.weakly_supervised or split.info.get("protocol") != "one-class":  # one-class u: test on all
        split = protocol(split, cfg.data.anomalous_fraction, cfg.data.seed)
    info = dict(split.info)
    train, val = D.hold_out_normals(split.train, cfg.data.val_fraction, cfg.data.seed)
    if not train:
        raise CavgaError(f"{cfg.data.root}: no training images after the split")
    info.update(
        n_train=len(train),
        n_train_anomalous=sum(r.label for r in train),
        n_val=len(val),
        n_test=len(split.test),
        n_test_anomalous=sum(r.label for r in split.test),
    )
    return RunData(train, val, split.test, info)


def open_run(cfg: RunConfig, run_dir: Path, resume: bool, write: bool = True) -> tuple[dict[str, Any] | None, RunData]:
    """The checkpoint to resume from (None for a new run) and the run's data; shared by every model.

    A new run's split is made and its training images are checked now, before anything is written."""
    ckpt_path = run_dir / CHECKPOINT
    state = None
    if ckpt_path.exists():
        if not resume:
            raise CavgaError(f"{run_dir}: already holds a trained run; pass --resume to continue it or use a new --out")
        state = load_checkpoint(ckpt_path)
        check_resumable(state, cfg, run_dir)
        keep_own_root(cfg, state["config"])  # config.yaml and the checkpoint keep naming the root as they did
        run_data = RunData.load(run_dir)
        if state.get("fingerprint") and split_fingerprint(run_data.to_dict()) != state["fingerprint"].get("split"):
            raise CavgaError(f"{run_dir / SPLIT_FILE}: not the split {ckpt_path} was trained on; cannot resume")
        if write:  # rank 0 of a distributed run, or the only process
            save_config(cfg, run_dir / "config.yaml")
    else:
        done = completed_epochs(run_dir)
        if resume and done:
            raise CavgaError(
                f"{ckpt_path}: missing, but {run_dir / HISTORY_FILE} records {done} completed epoch(s); "
                "restore the checkpoint or start again in a new --out"
            )
        run_data = prepare_data(cfg)
        D.verify_images(run_data.train + run_data.val)  # a corrupt image stops the run now, not never
        D.verify_masks(run_data.train + run_data.val + run_data.test)  # and a mask of the wrong size
        if not run_data.test:
            warnings.warn(
                f"{cfg.data.root}: the split has no test images; `cavga evaluate` will have nothing to score",
                stacklevel=4,
            )
    return state, run_data


def _history_lines(path: Path) -> bool:
    """Whether ``path`` reads as a history.jsonl: one JSON object with an "epoch" per line."""
    try:
        lines = [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, ValueError):
        return False
    return all(isinstance(r, dict) and "epoch" in r for r in lines)


def _run_config_file(path: Path) -> bool:
    try:
        load_config(path, saved=True)
    except CavgaError:
        return False
    return True


def run_files(run_dir: Path) -> dict[Path, Any]:
    """The files a new run writes in ``run_dir`` over whatever is there, each with how to tell that
    it is a run's own (:func:`cavga.io_utils.refuse_foreign`): left by a run stopped before its first
    checkpoint, they are replaced; anyone else's are not."""
    return {
        run_dir / "config.yaml": _run_config_file,
        run_dir / SPLIT_FILE: lambda p: json_with_keys(p, {"train", "test"}),
        run_dir / HISTORY_FILE: _history_lines,
        run_dir / VALIDATION_FILE: lambda p: json_with_keys(p, {"metrics", "protocol"}),
    }


def start_run_folder(cfg: RunConfig, run_dir: Path, run_data: RunData) -> None:
    """A new run's config.yaml and split.json, written once its data and networks are known to be good."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    atomic_write_json(run_dir / SPLIT_FILE, run_data.to_dict())
    (run_dir / HISTORY_FILE).unlink(missing_ok=True)  # left by a start killed in its first epoch


def completed_epochs(run_dir: Path) -> int:
    path = run_dir / HISTORY_FILE
    try:
        return sum(1 for ln in path.read_text().splitlines() if ln.strip())
    except OSError:
        return 0


def patience_spent(scores: dict[int, float], patience: int) -> bool:
    """Whether ``patience`` (> 0) checks have come after the best one (epoch -> painted score; ties: the
    later epoch is the best, as :meth:`EpochChoice.check` keeps it). 0 never stops."""
    if patience <= 0 or not scores:
        return False
    best = max(scores, key=lambda e: (scores[e], e))
    return sum(e > best for e in scores) >= patience


def saved_run(run_dir: str | Path, infer: list[str] | None = None) -> tuple[dict[str, Any], RunConfig]:
    """A trained run's checkpoint and its configuration (keys it lacks: as it was made), with the
    ``infer`` overrides (``"infer.mask_threshold=0.4"``) applied and checked; no other section may
    change after training."""
    state = load_checkpoint(Path(run_dir) / CHECKPOINT)
    check_fitted(state, Path(run_dir) / CHECKPOINT)
    cfg = from_dict(state["config"], f"{run_dir}/{CHECKPOINT}", saved=True)
    norm = state.get("normalizer")
    if cfg.model.variant in AE_BASELINES and norm and norm.get("map_version", 1) < BLURRED_BASELINES_MAP_VERSION:
        # fitted before the AEs' maps honoured infer.map_blur: read unblurred, as then (its numbers stay)
        cfg.infer.map_blur = norm["blur"] = 0.0
    return state, with_infer(cfg, infer)


# What training's end adds to a checkpoint for inference, beside the normaliser: each decided setting
# as {key: value, ...} (AUTO_SETTINGS), the residual baseline's mask, the attention's normal level (S, S)
FITTED = {
    **{key: (Mapping, type(None)) for key in AUTO_SETTINGS},
    "residual_mask": (Mapping, type(None)),
    "attention_level": (Tensor, type(None)),
}


def check_fitted(state: dict[str, Any], path: Path) -> None:
    """The fields of ``FITTED`` and the normaliser's are of their types (a decided value of its
    ``infer`` key's; its range is the config's check, once resolved); else one line naming ``path``."""
    check_fields(state, path, FITTED)
    hints = typing.get_type_hints(InferConfig)
    for key in AUTO_SETTINGS:
        decided = state.get(key) or {}
        if key in decided and not of_type(decided[key], hints[key]):
            raise CavgaError(f"{path}: {key}: the decided value {shown(decided[key])} is not {type_words(hints[key])}")
    level = (state.get("residual_mask") or {}).get("residual_mask", [0.0, 0.0])  # [threshold, peak fraction]
    if not (isinstance(level, (list, tuple)) and len(level) == 2 and of_type(list(level), list[float])):
        raise CavgaError(f"{path}: residual_mask: {shown(level)} is not a (threshold, peak fraction) pair")
    norm = state.get("normalizer")
    if norm is None:
        return
    hints = typing.get_type_hints(Normalizer)
    needed = [f.name for f in dataclasses.fields(Normalizer) if f.default is f.default_factory is dataclasses.MISSING]
    missing = [key for key in needed if key not in norm]
    unknown = [key for key in norm if key not in hints]
    if missing or unknown:
        said = f"lacks {', '.join(missing)}" if missing else f"holds no field {unknown[0]!r}"
        raise CavgaError(f"{path}: normalizer: {said} (a damaged or edited checkpoint)")
    for key, value in norm.items():
        if not of_type(value, hints[key]):
            raise CavgaError(f"{path}: normalizer.{key}: {shown(value)} is not {type_words(hints[key])}")


def with_infer(cfg: RunConfig, infer: list[str] | None) -> RunConfig:
    """A trained run's ``cfg`` with the ``infer`` overrides applied and checked; no other section may
    change after training."""
    if infer:
        if any(not item.startswith("infer.") for item in infer):
            raise CavgaError("only infer.* settings can change after training (e.g. infer.mask_threshold=0.4)")
        apply_overrides(cfg, infer)
    return cfg.validate()


def eligible_scores(scores: dict[int, float], barred) -> dict[int, float]:
    """``scores`` (epoch -> painted check) with the ``barred`` epochs (cavga.epoch_choice's guard) at -inf:
    what the choice and the patience count see."""
    barred = {int(e) for e in barred}
    return {e: -math.inf if e in barred else s for e, s in scores.items()}


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The records of the folder's history.jsonl, one per trained epoch (none without the file)."""
    path = Path(run_dir) / HISTORY_FILE
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    return [json.loads(ln) for ln in lines if ln.strip()]


def painted_scores(history: list[dict[str, Any]]) -> dict[int, float]:
    """Epoch -> painted pixel AUROC of the history records that hold a check (``train.validate_every``);
    -inf where the check barred the epoch (``painted_barred``: cavga.epoch_choice's guard)."""
    checked = [r for r in history if "painted_pixel_auroc" in r]
    scores = {int(r["epoch"]): float(r["painted_pixel_auroc"]) for r in checked}
    return eligible_scores(scores, [r["epoch"] for r in checked if r.get("painted_barred")])


def history_done(run_dir: Path, cfg: RunConfig) -> bool:
    """:func:`training_done` from the folder's history.jsonl alone (no checkpoint read)."""
    history = read_history(run_dir)
    return len(history) >= cfg.train.epochs or patience_spent(painted_scores(history), int(cfg.train.patience))


def check_resumable(state: dict[str, Any], cfg: RunConfig, run_dir: Path) -> None:
    """A resumed run may change its epoch count, patience, device, speed settings and inference
    settings (``cavga.fingerprint.MUTABLE``), nothing else: a flag or a ``--set`` alike.

    A key the checkpoint lacks (added to the configuration, or made ``auto``, after the run was
    started) counts as its value of that time (``cavga.config.old_defaults``), as when a saved
    configuration file is read; it is not a change."""
    done = int(state.get("epoch", 0))
    if done > cfg.train.epochs:  # config.yaml would claim fewer epochs than the checkpoint holds
        raise CavgaError(
            f"{run_dir}: has trained {done} epochs, more than --epochs {cfg.train.epochs} (train.epochs); "
            f"resume with --epochs {done} or more (the run is unchanged)"
        )
    conflicts = resume_conflicts(state["config"], cfg)
    if conflicts:
        dotted, started, value = conflicts[0]
        raise CavgaError(f"{run_dir}: cannot resume with {dotted}={value!r}; the run was started with {started!r}")


def resume_conflicts(saved: dict[str, Any], cfg: RunConfig) -> list[tuple[str, Any, Any]]:
    """("section.key", the run's value, ``cfg``'s) for every setting a resumed run may not change
    (:func:`check_resumable`'s rule) where ``cfg`` differs from the run's ``saved`` configuration."""
    now, default = to_dict(cfg), to_dict(old_defaults())
    sections = ["data", "model", "loss", "train"]
    sections += ["baseline"] if cfg.model.is_baseline else []
    sections += ["distill"] if cfg.model.encoder_init == "distill" else []  # only a distilled start reads it
    conflicts = []
    for section in sections:
        for key, value in now[section].items():
            if key in (MUTABLE.get(section) or ()) or (section, key) == ("train", "patience"):
                continue
            started = saved.get(section, {}).get(key, default[section][key])
            if (section, key) == ("data", "root") and started and value and same_folder(started, value):
                continue  # named another way (relative, absolute)
            if started != value:
                conflicts.append((f"{section}.{key}", started, value))
    return conflicts


def keep_own_root(cfg: RunConfig, saved: dict[str, Any]) -> None:
    """Where ``cfg`` names the ``saved`` run's data root another way (relative, absolute), take the
    run's own spelling into ``cfg``, so that what the run writes next matches its fingerprints."""
    started = saved.get("data", {}).get("root")
    if started and cfg.data.root and started != cfg.data.root and same_folder(started, cfg.data.root):
        cfg.data.root = started


def same_folder(a: str | Path, b: str | Path) -> bool:
    """Whether two data roots name one folder (relative or absolute, ``~`` expanded as the loaders do)."""
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(run_dir / HISTORY_FILE, "".join(json.dumps(r) + "\n" for r in history))


def stored_check(run_dir: str | Path) -> dict[str, Any] | None:
    """The painted-defect check a run folder holds (``validation.json``, written by ``cavga train``
    or ``cavga validate``), or None: a run from before the check, or trained with ``--no-check``."""
    path = Path(run_dir) / VALIDATION_FILE
    if not path.is_file():
        return None
    checked = read_json(path, "", "validation file")
    metrics = checked.get("metrics") if isinstance(checked, dict) else None
    numbers = isinstance(metrics, dict) and all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in metrics.values()
    )
    if not numbers or not isinstance(checked.get("protocol"), str):
        raise CavgaError(
            f"{path}: not the painted-defect check `cavga validate` writes (a mapping with a protocol and "
            f"numeric metrics); run `cavga validate {run_dir}` again"
        )
    return checked

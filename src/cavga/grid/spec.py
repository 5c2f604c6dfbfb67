"""A benchmark grid from YAML: models x data sets' categories (or classes) x seeds, on shared settings.

::

    name: bottle                      # optional title of results.md
    data: {root: ../shared/data/mvtec, layout: mvtec, image_size: 128}   # RunConfig sections,
    train: {epochs: 30}                                                  # shared by every cell
    categories: [bottle]              # data.category values (one data set), or instead:
    datasets:                         # several data sets, each {name, data, categories, paper, metrics,
                                      # overrides: {train.epochs: 2}}
      - {name: mnist, data: {root: ../shared/data/mnist, layout: mnist}, categories: [0, 1]}
    seeds: [0, 1, 2]                  # each sets data.seed and train.seed
    models: [Du, Ru, table8, AE-L2, {name: Du-64, variant: Du, overrides: {model.base_channels: 64}}]
    metrics: [iou, detection_accuracy]   # tables in results.md (default: by data set)

Model names: the four variants, Table 8's ablation columns (:data:`ABLATION`, also as ``c1``..``c8``,
and ``table8`` for all eight), or any other ``model.variant`` value (the AE-L2, AE-SSIM and
PatchCore baselines) passed through. Unknown keys are one-line errors naming the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..config import RunConfig, apply_overrides, from_dict
from ..config.io import read_yaml, yaml_problem
from ..data.oneclass import CLASSES, ONE_CLASS_LAYOUTS, normal_class
from ..errors import CavgaError
from ..evaluate import METRIC_KEYS
from ..paper_numbers import TABLES


@dataclass(frozen=True)
class ModelSpec:
    """One column of the grid: a variant with config overrides, and the paper columns it answers for."""

    name: str  # folder name and column heading
    variant: str  # model.variant
    overrides: dict[str, Any] = field(default_factory=dict)  # "section.key" -> value
    paper: tuple[str, ...] = ()  # the paper's column names for this model (paper_numbers)
    label: str | None = None  # heading in results.md; None: the name


_R = "Ru"
# Table 8: flattened z (CAVGA-R*, model.flat_latent) or convolutional z, with or without L_ae / L_cga.
ABLATION: dict[str, ModelSpec] = {
    "c1": ModelSpec("Ru-flat-noLae", _R, {"model.flat_latent": True, "loss.w_ae": 0.0}, ("c1",), "CAVGA-R*u"),
    "c2": ModelSpec("Ru-flat", _R, {"model.flat_latent": True}, ("c2",), "CAVGA-R*u + Lae"),
    "c3": ModelSpec("Ru-noLae", _R, {"loss.w_ae": 0.0}, ("c3",), "CAVGA-Ru + conv z"),
    "c4": ModelSpec("Ru", _R, {}, ("CAVGA-Ru", "c4"), "CAVGA-Ru"),
    "c5": ModelSpec("Rw-flat-noLcga", "Rw", {"model.flat_latent": True, "loss.w_cga": 0.0}, ("c5",), "CAVGA-R*w"),
    "c6": ModelSpec("Rw-flat", "Rw", {"model.flat_latent": True}, ("c6",), "CAVGA-R*w + Lcga"),
    "c7": ModelSpec("Rw-noLcga", "Rw", {"loss.w_cga": 0.0}, ("c7",), "CAVGA-Rw + conv z"),
    "c8": ModelSpec("Rw", "Rw", {}, ("CAVGA-Rw", "c8"), "CAVGA-Rw"),
}
NAMED_MODELS: dict[str, ModelSpec] = {
    "Du": ModelSpec("Du", "Du", {}, ("CAVGA-Du",), "CAVGA-Du"),
    "Dw": ModelSpec("Dw", "Dw", {}, ("CAVGA-Dw",), "CAVGA-Dw"),
    **{m.name: m for m in ABLATION.values()},
    "AE-L2": ModelSpec("AE-L2", "AE-L2", {}, ("AE-L2",)),  # baselines: model.variant values of their own
    "AE-SSIM": ModelSpec("AE-SSIM", "AE-SSIM", {}, ("AE-SSIM",)),
    "PatchCore": ModelSpec("PatchCore", "PatchCore"),
}
GROUPS = {"table8": [ABLATION[c].name for c in ABLATION]}

TABLE_METRICS = (*METRIC_KEYS, "image_f1_max")  # what a results.md table may show
GRID_KEYS = ("name", "data", "categories", "datasets", "seeds", "models", "metrics")
GRID_ONLY_KEYS = ("models", "categories", "datasets", "seeds")  # what a training config lacks (and makes a grid)
DATASET_KEYS = ("name", "data", "categories", "paper", "metrics", "overrides")
MODEL_KEYS = ("name", "variant", "overrides", "paper", "label")
PAPER_DATASETS = ("mvtec", "mnist", "cifar10", "fashion-mnist")
PAPER_COLUMNS = tuple(dict.fromkeys(c for t in TABLES for c in t.columns))  # what a model's paper may name
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class DatasetSpec:
    """One data set of the grid: its ``data`` settings, the categories that are its rows, its metrics."""

    name: str
    data: dict[str, Any]
    categories: tuple[str | None, ...]
    paper: str | None  # which of the paper's data sets the rows are (paper_numbers), None: no paper numbers
    metrics: tuple[str, ...]
    overrides: dict[str, Any] = field(default_factory=dict)  # other settings for this data set's cells

    @property
    def layout(self) -> str:
        return str(self.data.get("layout", "mvtec"))

    def row(self, category: str | None) -> str:
        """The row key of a category: the one-class class name ("3", "cat"), else lower case ("metal_nut")."""
        if category is None:
            return "all"
        if self.layout in ONE_CLASS_LAYOUTS:
            return CLASSES[self.layout][normal_class(self.layout, category)]
        return str(category).lower().replace(" ", "_")


@dataclass(frozen=True)
class GridSpec:
    """A parsed grid file: shared config sections, data sets, models, seeds."""

    source: str
    name: str
    sections: dict[str, Any]
    datasets: tuple[DatasetSpec, ...]
    models: tuple[ModelSpec, ...]
    seeds: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "name": self.name,
            "sections": self.sections,
            "datasets": [
                d.__dict__ | {"categories": list(d.categories), "metrics": list(d.metrics)} for d in self.datasets
            ],
            "models": [m.__dict__ | {"paper": list(m.paper)} for m in self.models],
            "seeds": list(self.seeds),
        }


def expand_env(value: str) -> str:
    """``${VAR}`` and ``${VAR:-default}`` replaced from the environment, as a shell does: the default where
    VAR is unset or empty; an unset VAR without a default is an error."""

    def repl(m: re.Match) -> str:
        var, default = m.group(1), m.group(3)
        given = os.environ.get(var)
        if given or (given is not None and default is None):
            return given
        if default is None:
            raise CavgaError(f"environment variable {var} is not set (used in {value!r})")
        return default

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", repl, value)


def _check_keys(d: Any, known: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise CavgaError(f"{where}: expected a mapping, got {type(d).__name__}")
    unknown = [k for k in d if k not in known]
    if unknown:
        raise CavgaError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(known)})")
    return d


def _text(value: Any, where: str) -> str:
    """A name or label as written: a string (a number reads as its digits), not a list or mapping."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise CavgaError(f"{where}: expected a string, got {type(value).__name__}")
    return str(value)


def _flatten(overrides: Any, where: str) -> dict[str, Any]:
    """``{"loss.w_ae": 0}`` or ``{"loss": {"w_ae": 0}}`` as dotted keys."""
    out: dict[str, Any] = {}
    for k, v in _check_keys(overrides or {}, tuple(overrides or {}), where).items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        elif "." in str(k):
            out[str(k)] = v
        else:
            raise CavgaError(f"{where}: {k!r} is not section.key (e.g. loss.w_ae)")
    return out


def _checked_overrides(overrides: Any, where: str) -> dict[str, Any]:
    """An entry's ``overrides`` as dotted keys, each checked against the config schema now."""
    flat = _flatten(overrides, where)
    try:
        set_values(RunConfig(), flat)
    except CavgaError as e:
        raise CavgaError(f"{where}: {e}") from None
    return flat


def _model(entry: Any, where: str) -> list[ModelSpec]:
    if isinstance(entry, str):
        if entry in GROUPS:
            return [NAMED_MODELS[n] for n in GROUPS[entry]]
        if entry in ABLATION:
            return [ABLATION[entry]]
        return [NAMED_MODELS.get(entry, ModelSpec(entry, entry))]
    d = _check_keys(entry, MODEL_KEYS, where)
    if "name" not in d:
        raise CavgaError(f"{where}: a model entry needs a name")
    name = _text(d["name"], f"{where}.name")
    variant = _text(d.get("variant", name), f"{where}.variant")
    base = NAMED_MODELS.get(variant) or ABLATION.get(variant) or ModelSpec(name, variant)
    # a named model keeps its paper columns and label; a custom entry has none unless it says so
    named = variant == name and not d.get("overrides")
    paper = d.get("paper", list(base.paper) if named else [])
    paper = [paper] if isinstance(paper, str) else [] if paper is None else paper
    if not isinstance(paper, list) or not all(isinstance(p, str) for p in paper):
        raise CavgaError(f"{where}.paper: expected a list of the paper's column names, e.g. [CAVGA-Du]")
    unknown = [p for p in paper if p not in PAPER_COLUMNS]
    if unknown:  # a typo would otherwise leave the model without its paper numbers, unsaid
        raise CavgaError(f"{where}.paper: unknown paper column {unknown[0]!r} (known: {', '.join(PAPER_COLUMNS)})")
    own = _checked_overrides(d.get("overrides"), f"{where}.overrides")
    label = d.get("label", base.label if named else None)
    label = None if label is None else _text(label, f"{where}.label")
    return [ModelSpec(name, base.variant, {**base.overrides, **own}, tuple(paper), label)]


def _default_metrics(layout: str) -> tuple[str, ...]:
    if layout in ONE_CLASS_LAYOUTS:
        return ("image_auroc",)
    return ("iou", "detection_accuracy", "pixel_auroc", "image_auroc")


def _dataset(d: dict[str, Any], where: str, default_name: str) -> DatasetSpec:
    data = dict(_check_keys(d.get("data") or {}, tuple(d.get("data") or {}), f"{where}.data"))
    if isinstance(data.get("root"), str):
        try:
            data["root"] = str(Path(expand_env(data["root"])).expanduser().resolve())
        except CavgaError as e:
            raise CavgaError(f"{where}: data.root: {e}") from None
    layout = str(data.get("layout", "mvtec"))
    default_category = data.pop("category", None)
    try:
        set_values(RunConfig(), {f"data.{k}": v for k, v in data.items()})  # unknown data keys are errors now
    except CavgaError as e:
        raise CavgaError(f"{where}: {e}") from None
    cats = d.get("categories", [default_category])
    if not isinstance(cats, list) or not cats:
        raise CavgaError(f"{where}.categories: expected a non-empty list")
    categories = tuple(None if c is None else str(c) for c in cats)
    paper = d.get("paper", layout if layout in PAPER_DATASETS else None)
    if paper is not None and paper not in PAPER_DATASETS:
        raise CavgaError(f"{where}.paper: {paper!r} is not one of {', '.join(PAPER_DATASETS)} (or null)")
    metrics = d.get("metrics", _default_metrics(layout))
    if not isinstance(metrics, (list, tuple)) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise CavgaError(f"{where}.metrics: expected a non-empty list of metric names, e.g. [iou, image_auroc]")
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in TABLE_METRICS]
    if unknown:  # a typo would otherwise show as a table of dashes, after the whole grid has trained
        said = ", ".join(map(repr, unknown))
        raise CavgaError(f"{where}.metrics: unknown metric {said} (known: {', '.join(TABLE_METRICS)})")
    overrides = _checked_overrides(d.get("overrides"), f"{where}.overrides")
    spec = DatasetSpec(_text(d.get("name", default_name), f"{where}.name"), data, categories, paper, metrics, overrides)
    try:
        rows = [spec.row(c) for c in categories]  # checks one-class class names now
    except CavgaError as e:
        raise CavgaError(f"{where}: {e}") from None
    if len(set(rows)) != len(rows):
        raise CavgaError(f"{where}.categories: the same category is listed twice")
    return spec


def parse_grid(raw: Any, source: str = "grid") -> GridSpec:
    """A GridSpec from the YAML's mapping; every problem is one line naming ``source``."""
    sections_known = tuple(f.name for f in fields(RunConfig))
    if raw is None:
        raise CavgaError(f"{source}: empty; a grid names its models, data and categories (docs/benchmark.md)")
    raw = _check_keys(raw, tuple(dict.fromkeys(GRID_KEYS + sections_known)), source)  # "data" is both
    if raw and set(raw) <= set(sections_known):  # data, model, train...: what `cavga train --config` reads
        raise CavgaError(
            f"{source}: not a grid file: only config sections ({', '.join(map(str, raw))}), none of a grid's "
            f"{', '.join(GRID_ONLY_KEYS)} (a training config? give it to `cavga train --config`)"
        )
    sections = {k: raw[k] for k in sections_known if k in raw}
    from_dict(sections, source)  # unknown config keys are errors now
    shared_data = dict(sections.get("data") or {})
    if "datasets" in raw:
        if "categories" in raw:
            raise CavgaError(f"{source}: give categories inside each of datasets, not beside them")
        if not isinstance(raw["datasets"], list) or not raw["datasets"]:
            raise CavgaError(f"{source}: datasets must be a non-empty list")
        datasets = []
        for i, d in enumerate(raw["datasets"]):
            d = dict(_check_keys(d, DATASET_KEYS, f"{source}: datasets[{i}]"))
            d["data"] = {**shared_data, **(d.get("data") or {})}
            datasets.append(_dataset(d, f"{source}: datasets[{i}]", str(d["data"].get("layout", "mvtec"))))
    else:
        d = {"data": shared_data, "categories": raw["categories"]} if "categories" in raw else {"data": shared_data}
        if "metrics" in raw:
            d["metrics"] = raw["metrics"]
        datasets = [_dataset(d, source, str(shared_data.get("layout", "mvtec")))]
    if len({d.name for d in datasets}) != len(datasets):
        raise CavgaError(f"{source}: two datasets share a name")
    entries = raw.get("models", ["Du"])  # no models key: CAVGA-Du alone
    if not isinstance(entries, list) or not entries:
        raise CavgaError(f"{source}: models must be a non-empty list")
    models: list[ModelSpec] = []
    for i, e in enumerate(entries):
        for m in _model(e, f"{source}: models[{i}]"):
            if not _SAFE.match(m.name):
                raise CavgaError(f"{source}: models[{i}]: name {m.name!r} is not a plain folder name")
            same = next((x for x in models if x.name == m.name), None)
            if same is None:
                models.append(m)
            elif same != m:  # an exact repeat (Ru beside table8) is one model; another with its name is not
                raise CavgaError(f"{source}: models[{i}]: name {m.name!r} is already used")
    seeds = raw.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise CavgaError(f"{source}: seeds must be a non-empty list of integers")
    if len(set(seeds)) != len(seeds):  # as --seeds 0,0 and a category listed twice
        raise CavgaError(f"{source}: seeds: the same seed is listed twice")
    name = raw.get("name")
    title = (None if name is None else _text(name, f"{source}: name")) or Path(source).stem
    return GridSpec(source, title, sections, tuple(datasets), tuple(models), tuple(seeds))


def load_grid(path: str | Path) -> GridSpec:
    """Read and parse a grid YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = read_yaml(text)
    except FileNotFoundError:
        raise CavgaError(f"{path}: grid file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CavgaError(f"{path}: cannot read grid file ({e})") from None
    except yaml.YAMLError as e:
        raise CavgaError(f"{path}: not valid YAML {yaml_problem(e, text)}") from None
    return parse_grid(raw, str(path))


def set_values(cfg: RunConfig, values: dict[str, Any]) -> RunConfig:
    """Dotted-key values onto ``cfg``; None sets None (unlike a command line's unset flag). The values
    go in one call, so that settings read together (``infer.mask_threshold`` with or without
    ``infer.mask_quantile``) are read as one."""
    apply_overrides(cfg, {k: v for k, v in values.items() if v is not None})
    nulls = [f"{k}=null" for k, v in values.items() if v is None]
    return apply_overrides(cfg, nulls) if nulls else cfg

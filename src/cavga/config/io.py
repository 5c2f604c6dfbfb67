"""A run's configuration as data: YAML in (``load_config``), ``section.key=value`` overrides
(``apply_overrides``) and unknown keys rejected, and ``config.yaml`` out (``save_config``)."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import yaml

from ..errors import CavgaError
from ..io_utils import atomic_write_text
from .schema import RunConfig


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last one,
    silently dropping the first block of a ``data:`` section written twice)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:  # a list or mapping as a key (`{[a]: 1}`): PyYAML's own check comes later
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain value, not a list or mapping", key_node.start_mark
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys (a ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def yaml_problem(e: yaml.YAMLError, text: str | None = None, lines: bool = True) -> str:
    """A PyYAML error as one line: where (1-based line and column) and PyYAML's ``problem``, e.g.
    ``at line 3, column 1: found character '\\t' that cannot start any token``, with the construct it
    was in where that began elsewhere (an unclosed ``{``). ``text``: the YAML read, to place a
    :class:`yaml.reader.ReaderError` (which knows only its character offset); ``lines``: False for a
    one-line value (a ``--set``), placed by its column alone."""

    def at(line: int, column: int) -> str:
        return f"line {line + 1}, column {column + 1}" if lines or line else f"column {column + 1}"

    if isinstance(e, yaml.MarkedYAMLError) and (e.problem or e.context):
        mark = e.problem_mark or e.context_mark
        said = f"at {at(mark.line, mark.column)}: {e.problem or e.context}" if mark else str(e.problem or e.context)
        start = e.context_mark
        if e.problem and e.context and start and mark and (start.line, start.column) != (mark.line, mark.column):
            said += f" ({e.context} at {at(start.line, start.column)})"
        if "'\\t'" in said:
            said += "; indent with spaces, not tabs"
    elif isinstance(e, yaml.reader.ReaderError):
        said = str(e).splitlines()[0]
        if text is not None:
            line = text.count("\n", 0, e.position)
            column = e.position - text.rfind("\n", 0, e.position) - 1
            said = f"at {at(line, column)}: {said}"
    else:
        said = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
    return " ".join(said.split())


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    return asdict(cfg)


def _coerce(value: Any, annotation: Any, where: str, text: str | None = None) -> Any:
    """Convert a YAML or command-line value to the field's declared type; ``text``: what the user typed
    (a ``--set`` value before YAML read it), quoted in the error."""
    hint = annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        nullable = type(None) in typing.get_args(hint)
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if nullable:
                return None
            given = "a number or auto" if str in args else " or ".join(a.__name__ for a in args)
            raise CavgaError(f"{where}: cannot be null here (give {given})")
        for alternative in args[:-1]:  # float | str: a number if it reads as one, else the word
            try:
                return _coerce(value, alternative, where, text)
            except CavgaError:
                pass
        hint = args[-1]
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
                return value.lower() in ("true", "yes", "1")
            raise ValueError(value)
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            if abs(int(value)) >= 2**63:  # no setting counts that far; torch would fail on it with a traceback
                raise CavgaError(f"{where}: {_as_given(value, text)} is too large")
            return int(value)
        if hint is float:
            if isinstance(value, bool):  # YAML's yes/true: not a number
                raise ValueError(value)
            return float(value)
        if hint is str:  # the text as written: YAML reads 007 as 7 and no as False
            if isinstance(value, (list, dict)):
                raise ValueError(value)
            return value if isinstance(value, str) or text is None else text.strip()
    except (TypeError, ValueError):
        raise CavgaError(f"{where}: {_as_given(value, text)} is not a valid {hint.__name__}") from None
    return value


def _as_given(value: Any, text: str | None) -> str:
    """A rejected value as the user wrote it: YAML reads yes/no/on/off (and true/false) as booleans
    before the type check sees them, so ``True`` alone would quote a word nobody typed."""
    if isinstance(value, bool):
        if text is not None:
            return f"{text.strip()!r} (read as a boolean)"
        return f"{value!r} (read as a boolean: YAML reads yes/no/on/off so)"
    return repr(value if text is None else text.strip())


def _section_types(section: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(section))
    return {f.name: hints[f.name] for f in fields(section)}


# Keys added after runs were made, with the value that means "as before": a saved run's config
# without the key was trained with it (``from_dict(saved=True)``), and at that value the key stays out
# of the run's fingerprint (cavga.fingerprint), so older runs keep their identity. Where the default
# differs (distill.cutpaste, 0.5 since it was adopted), only a saved config reads the old value.
ADDED = {
    "model": {"disc_channels": None, "encoder_init": "dcgan"},
    "data": {"resize": "stretch"},
    "train": {"augment": "none", "validate_every": 0, "restarts": 1, "patience": 0},
    "distill": {"cutpaste": 0.0, "schedule": "constant", "share": False},
    "infer": {
        "mask_margin": 0.0,
        "mask_peak_fraction": 0.0,
        "mask_min_area": 0.0,
        "map_blur": 0.0,
        "normalizer_rank": "interpolated",
        "direction_candidates": "one_sided",
        "direction_fade": 1.0,
    },
}
# Defaults that became "auto" (sessions 30 and 61, cavga.config.resolve): a saved config without the key was
# made with the old default. They are not in ADDED: every run since the keys exist records them, and
# their old values stay part of a run's fingerprint.
BEFORE_AUTO = {"model": {"freeze_encoder": False, "attention_score": "mu_sum", "attention_layer": 0}}


def old_defaults() -> RunConfig:
    """The configuration a saved config's missing keys stand for (``ADDED`` and ``BEFORE_AUTO``)."""
    cfg = RunConfig()
    for table in (ADDED, BEFORE_AUTO):
        for section_name, keys in table.items():
            for key, value in keys.items():
                setattr(getattr(cfg, section_name), key, value)
    return cfg


def from_dict(
    raw: dict[str, Any], source: str = "config", saved: bool = False, typed: dict[tuple[str, str], str] | None = None
) -> RunConfig:
    """Build a RunConfig from nested dicts; unknown sections or keys are an error naming ``source``.
    ``saved``: ``raw`` is a finished run's own config (its config.yaml, checkpoint or export), complete
    when it was written, so a key missing from it is one added (or made ``auto``) since: it takes its
    value of that time (:func:`old_defaults`). ``typed``: (section, key) -> the value as written in the
    file, where YAML read it as something else (:func:`_as_written`): a text setting takes it, an error quotes it."""
    if not isinstance(raw, dict):
        raise CavgaError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    cfg = old_defaults() if saved else RunConfig()
    for section_name, values in raw.items():
        if section_name not in {f.name for f in fields(cfg)}:
            known = ", ".join(f.name for f in fields(cfg))
            grid = " (a grid file? `cavga benchmark --grid` reads those)" if {"models", "cells"} & set(raw) else ""
            raise CavgaError(f"{source}: unknown section {section_name!r} (known: {known}){grid}")
        section = getattr(cfg, section_name)
        types_ = _section_types(section)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise CavgaError(f"{source}: section {section_name!r} must be a mapping")
        for key, value in values.items():
            if key not in types_:
                raise CavgaError(f"{source}: unknown key {section_name}.{key} (known: {', '.join(sorted(types_))})")
            where = f"{source}: {section_name}.{key}"
            setattr(section, key, _coerce(value, types_[key], where, (typed or {}).get((section_name, key))))
    if not saved:  # a run's own config.yaml holds every key, as it was resolved
        given = {f"{s}.{k}" for s, values in raw.items() if isinstance(values, dict) for k in values}
        _threshold_given_alone(cfg, given)
    return cfg


def _threshold_given_alone(cfg: RunConfig, given: set[str]) -> None:
    """``infer.mask_threshold`` given without ``infer.mask_quantile``: the threshold given is the one used
    (``mask_quantile`` null). Otherwise the default quantile (``auto``) would set the threshold, and
    the value given would go unused without a word."""
    if "infer.mask_threshold" in given and "infer.mask_quantile" not in given:
        cfg.infer.mask_quantile = None


def load_config(path: str | Path, saved: bool = False) -> RunConfig:
    """Read a YAML file of sections (data, model, loss, train, infer); ``saved``: a run's own
    config.yaml (:func:`from_dict`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = read_yaml(text) or {}
    except FileNotFoundError:
        raise CavgaError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise CavgaError(f"{path}: is a folder, not a config file") from None
    except UnicodeDecodeError:
        raise CavgaError(f"{path}: not a text file (expected YAML)") from None
    except OSError as e:
        raise CavgaError(f"{path}: cannot read config file ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise CavgaError(f"{path}: not valid YAML {yaml_problem(e, text)}") from None
    return from_dict(raw, str(path), saved, _as_written(text))


def _as_written(text: str) -> dict[tuple[str, str], str]:
    """(section, key) -> the value as written, for each ``section: {key: value}`` that YAML reads as
    other than text (a number, a boolean from yes/no/on/off, null): a text setting takes it as written
    (``category: 007``), and an error quotes the word instead of True/False."""
    root = yaml.compose(text, Loader=_UniqueKeyLoader)
    out = {}
    for section, values in root.value if isinstance(root, yaml.MappingNode) else []:
        for key, value in values.value if isinstance(values, yaml.MappingNode) else []:
            if isinstance(value, yaml.ScalarNode) and value.tag != "tag:yaml.org,2002:str":
                out[(str(section.value), str(key.value))] = str(value.value)
    return out


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any] | list[str] | tuple[str, ...]) -> RunConfig:
    """Set ``section.key`` values, given as a dict or as ``section.key=value`` strings.

    In a dict, None means "not given" (an unset command-line flag); a string ``key=null`` sets None."""
    if isinstance(overrides, str):
        raise CavgaError(f"{overrides!r}: give a list of 'section.key=value' strings, e.g. [{overrides!r}]")
    explicit = isinstance(overrides, (list, tuple))
    typed: dict[str, str] = {}  # --set values as given, for error messages
    if explicit:
        pairs: dict[str, Any] = {}
        for item in overrides:
            if "=" not in item:
                raise CavgaError(f"--set {item!r}: expected section.key=value")
            k, v = item.split("=", 1)
            typed[k.strip()] = v
            try:
                pairs[k.strip()] = yaml.safe_load(v) if v.strip() else v
            except yaml.YAMLError as e:
                problem = yaml_problem(e, v, lines=False)
                raise CavgaError(f"--set {item!r}: the value is not valid YAML {problem}") from None
        overrides = pairs
    for dotted, value in overrides.items():
        if value is None and not explicit:  # an unset command-line flag keeps the config's value
            continue
        section_name, _, key = dotted.partition(".")
        if not hasattr(cfg, section_name) or not dataclasses.is_dataclass(getattr(cfg, section_name)):
            known = ", ".join(f.name for f in fields(cfg))
            raise CavgaError(f"unknown config section {section_name!r} in {dotted!r} (known: {known})")
        section = getattr(cfg, section_name)
        types_ = _section_types(section)
        if key not in types_:
            raise CavgaError(f"unknown config key {dotted!r} (known: {', '.join(sorted(types_))})")
        setattr(section, key, _coerce(value, types_[key], dotted, typed.get(dotted)))
    _threshold_given_alone(cfg, {k for k, v in overrides.items() if v is not None or explicit})
    return cfg


def save_config(cfg: RunConfig, path: str | Path) -> Path:
    return atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))

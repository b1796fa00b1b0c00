"""Experiment configuration files (YAML or JSON).

Keys mirror :class:`fastnn.MLP`'s arguments (their defaults read from its
signature) and the fields of :class:`fastnn.training.FitConfig` (fit's
arguments, their defaults written there), ``optimizer`` with the parameters of
the :mod:`fastnn.optim` optimizers, the data keys ``dataset`` and
``normalize``, and an optional ``report``
mapping (what an original study reported: read by ``fastnn study``, ignored by
training). A key that is not listed here is an error that names it; values are
checked by the model and ``fit``.

The configs shipped with fastnn (package data, :data:`SHIPPED`) are found by
name from any folder: ``fastnn train --config best`` (``fastnn configs`` lists
them); a path to a file is read as it is.

>>> cfg = resolve({"layers": [784, 10], "epochs": 3})
>>> cfg["activation"], cfg["epochs"], cfg["dataset"]
('relu', 3, 'mnist')
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from . import optim
from .model import MLP
from .training import FitConfig, config_fields

#: The model's keys and defaults: MLP's, except ``seed`` (0: configs are
#: reproducible unless they say ``seed: null``).
MODEL_KEYS = {"layers": None, **MLP.init_defaults(), "seed": 0}
DATA_KEYS = {"dataset": "mnist", "normalize": "minmax"}
#: fit's arguments that a config can set, with their defaults: the fields of
#: :class:`fastnn.training.FitConfig` that a file can hold.
FIT_KEYS = config_fields()
#: ``optimizer`` (a name of :data:`fastnn.optim.OPTIMIZERS`) and every optimizer's
#: parameters; ``None`` stands for the chosen optimizer's default, which
#: :func:`resolve` fills in; a parameter the chosen optimizer does not take
#: must stay unset.
OPTIMIZER_KEYS = {"optimizer": "sgd",
                  **{k: None for name in optim.OPTIMIZERS for k in optim.params_of(name)}}
DEFAULTS = {**MODEL_KEYS, **DATA_KEYS, **FIT_KEYS, **OPTIMIZER_KEYS}
#: A mapping that records what an original study reported for this config
#: (``fastnn study`` reads it; training ignores it).
REPORT_KEY = "report"
#: The folder of the configs shipped with fastnn (package data): the original
#: experiments, mnist-98, mnist-dropout, ...; ``study/``: the study configs.
SHIPPED = Path(__file__).resolve().with_name("configs")
_SUFFIXES = (".yaml", ".yml", ".json")


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A YAML mapping that gives a key twice (PyYAML would keep the last)."""


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads numbers as YAML 1.2 and JSON do (``1e-3`` and
    ``1.5e3`` floats, ``064`` the integer 64, ``1:30`` a string; PyYAML's YAML 1.1
    rules make the first two strings, the others octal and sexagesimal), and
    refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be
                continue                                 # overridden, as YAML means
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: PyYAML's own error follows
                break
            if duplicate:
                raise DuplicateKeyError(
                    "while constructing a mapping", node.start_mark,
                    f"found the key {key!r} twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
# Numbers as YAML 1.2's core schema (and JSON, and Python) read them, not YAML
# 1.1's: 1e-3 and 1.5e3 are floats (1.1: strings), 064 is 64 (1.1: octal 52),
# 1:30 is a string (1.1: the sexagesimal 90); 0o17 and 0x1f are octal and hex.
# Underscores between digits are kept, as in Python.
_Loader.yaml_implicit_resolvers = {
    first: kept for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()
    if (kept := [(tag, rx) for tag, rx in entries if tag not in (_INT, _FLOAT)])}
_Loader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9][0-9_]*|0o[0-7][0-7_]*|0x[0-9a-fA-F][0-9a-fA-F_]*)$"),
    list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT, re.compile(r"^(?:[-+]?(?:\.[0-9][0-9_]*|[0-9][0-9_]*(?:\.[0-9_]*)?)"
                       r"(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def _construct_int(loader, node):
    """A YAML 1.2 integer: decimal (leading zeros too), ``0o`` octal or ``0x`` hex."""
    text = loader.construct_scalar(node).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    base = {"0o": 8, "0x": 16}.get(text[:2].lower(), 10)
    return sign * int(text[2:] if base != 10 else text, base)


_Loader.add_constructor(_INT, _construct_int)


def _unique_keys(pairs):
    """A JSON object's dict; a key given twice is an error (json keeps the last)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"found the key {key!r} twice")
        out[key] = value
    return out


def parse_yaml(text: str) -> Any:
    """``text`` parsed as YAML (safe), its numbers as YAML 1.2 reads them.

    >>> parse_yaml("{lr: 1.5e3, eps: 1e-8, batch: 064, t: 1:30, n: 1_000}")
    {'lr': 1500.0, 'eps': 1e-08, 'batch': 64, 't': '1:30', 'n': 1000}
    """
    return yaml.load(text, Loader=_Loader)


def shipped():
    """``{name: path}`` of the shipped configs, by name: ``best``, ``mnist-98``,
    ..., and the study configs as ``study/<name>``.

    >>> sorted(shipped())[:2]
    ['best', 'best-adam']
    >>> shipped()["study/002-best"].parent.name
    'study'
    """
    out = {}
    for prefix, folder in (("", SHIPPED), ("study/", SHIPPED / "study")):
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in _SUFFIXES:
                out[prefix + path.stem] = path
    return out


def describe(path):
    """The first line of a config file's leading comment ('' when none)."""
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line:
            break
    return ""


def locate(name_or_path: str | os.PathLike[str]) -> Path:
    """The file of a config given as a path (an existing file, read as it is)
    or as the name of a shipped config (``best``, ``best.yaml``,
    ``study/002-best``; see :func:`shipped`).

    >>> locate("mnist-98").name
    'mnist-98.yaml'
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = str(name_or_path).replace("\\", "/")
    if Path(name).suffix.lower() in _SUFFIXES:
        name = name[:-len(Path(name).suffix)]
    found = shipped().get(name)
    if found is None:
        raise FileNotFoundError(f"config file not found: {os.fspath(name_or_path)!r}, and no "
                                f"shipped config of "
                                f"that name (`fastnn configs` lists them: "
                                f"{', '.join(n for n in shipped() if '/' not in n)}, study/...)")
    return found


def _one_line(exc: Exception) -> str:
    """A YAML error as one line: what is wrong and where (PyYAML's own text quotes
    the source over several lines, naming it "<unicode string>")."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark or exc.context_mark
        where = "" if mark is None else f" (line {mark.line + 1}, column {mark.column + 1})"
        context = f"{exc.context}: " if exc.context else ""
        return f"{context}{exc.problem}{where}"
    return " ".join(str(exc).split())


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or JSON (.json) mapping from ``path``, a file or
    the name of a shipped config (:func:`locate`)."""
    path = Path(locate(path))
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"config {str(path)!r} is not a {kind} file: it is not UTF-8 text "
                         f"(a binary file?)") from None
    try:
        if kind == "JSON":
            data = json.loads(text, object_pairs_hook=_unique_keys)
        else:
            data = parse_yaml(text)
    except (ValueError, yaml.YAMLError) as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"config {str(path)!r} is not valid {kind}: {_one_line(exc)}") \
            from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"config {str(path)!r} must be a mapping of keys to values, "
                         f"got {type(data).__name__}")
    return data


def resolve(config: Mapping[str, Any],
            overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then ``config``, then ``overrides`` (None values in overrides are skipped)."""
    merged = dict(DEFAULTS)
    for source in (config, overrides or {}):
        for key, value in source.items():
            if key == REPORT_KEY and source is config:
                continue
            if key not in DEFAULTS:
                raise ValueError(f"unknown config key {key!r}; known keys: {', '.join(sorted(DEFAULTS))}")
            if source is overrides and value is None:
                continue
            merged[key] = value
    if merged["layers"] is None:
        raise ValueError("config key 'layers' is required, e.g. layers: [784, 128, 10]")
    name = merged["optimizer"]
    if not isinstance(name, str) or name not in optim.OPTIMIZERS:
        raise ValueError(f"config key 'optimizer' must be one of {sorted(optim.OPTIMIZERS)}, "
                         f"got {name!r}")
    own = optim.params_of(name)
    for key in OPTIMIZER_KEYS:
        if key == "optimizer":
            continue
        if key in own:
            if merged[key] is None:
                merged[key] = own[key]
        elif merged[key] is not None:
            raise ValueError(f"config key {key!r} does not apply to optimizer {name!r} "
                             f"(its keys: {', '.join(own)})")
    return merged


def make_optimizer(config: Mapping[str, Any]) -> optim.Optimizer:
    """The optimizer of a resolved config (validated)."""
    name = config["optimizer"]
    return optim.make(name, **{k: config[k] for k in optim.params_of(name)})


def split(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(model_kwargs, data_kwargs, fit_kwargs)`` of a resolved config; the fit
    keywords hold ``optimizer``, a fresh :mod:`fastnn.optim` optimizer.

    >>> _, _, fit = split(resolve({"layers": [784, 10], "optimizer": "adam"}))
    >>> fit["optimizer"]
    Adam(learning_rate=0.001, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.0, l1=0.0, l2=0.0)
    """
    pick = lambda keys: {k: config[k] for k in keys}  # noqa: E731
    fit = pick(FIT_KEYS)
    if isinstance(fit["class_weight"], dict):  # JSON keys are strings
        fit["class_weight"] = {int(k) if isinstance(k, str) and k.strip().isdigit() else k: v
                               for k, v in fit["class_weight"].items()}
    fit["optimizer"] = make_optimizer(config)
    return pick(MODEL_KEYS), pick(DATA_KEYS), fit


def fit_config(config: Mapping[str, Any], **options: Any) -> FitConfig:
    """The :class:`fastnn.training.FitConfig` of a resolved config (validated), with
    ``options`` (fields that a file does not hold: ``verbose``, ``checkpoint``,
    ``callbacks``) added.

    >>> fit_config(resolve({"layers": [784, 10], "epochs": 2}), verbose=False)
    FitConfig(epochs=2, batch_size=128, optimizer=SGD(...), ..., verbose=False, ...)
    """
    return FitConfig(**split(config)[2], **options)

"""A sweep's grid, and the identity of its trials: the canonical JSON of a
trial's config (:func:`trial_key`) and its run folder's name (:func:`trial_label`).

>>> parse_grid("layers=784,10;784,128,10")
('layers', [[784, 10], [784, 128, 10]])
>>> trial_label({"activation": "relu"}, {"activation": "relu"})
'activation=relu@...'
"""
from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import yaml

from .. import config as cfg
from .._validation import check_int
from ..experiment import check_config as check_run_config

#: Which data a trial needs: ``("dataset", "normalize")``.
DATA_KEYS = tuple(cfg.DATA_KEYS)


def parse_grid(text: str) -> tuple[str, list[Any]]:
    """``"KEY=V1,V2"`` -> ``(key, [values])``, the values typed as YAML scalars.

    ``layers`` (whose values are lists) takes semicolons between the values,
    ``layers=784,10;784,128,10``; any key takes a YAML list,
    ``layers=[[784,10],[784,128,10]]``; values with mappings are read as one
    (their commas are theirs):

    >>> parse_grid("class_weight={0: 2, 1: 3},balanced")
    ('class_weight', [{0: 2, 1: 3}, 'balanced'])
    """
    if not isinstance(text, str) or "=" not in text:
        raise ValueError(f"--grid wants KEY=V1,V2,..., got {text!r}")
    key, _, values = text.partition("=")
    key = key.strip().replace("-", "_")
    values = values.strip()
    if not values:
        raise ValueError(f"--grid {key}: no values")
    if values.startswith("["):
        try:
            parsed = cfg.parse_yaml(values)
        except yaml.YAMLError as exc:
            raise ValueError(f"--grid {key}: {values!r} is not a YAML list: {exc}") from None
        if not isinstance(parsed, list):
            raise ValueError(f"--grid {key}: {values!r} is not a list")
        return key, parsed
    if "{" in values:  # mappings hold commas of their own: the values as a YAML flow list
        try:
            parsed = cfg.parse_yaml(f"[{values}]")
        except yaml.YAMLError as exc:
            raise ValueError(f"--grid {key}: {values!r} is not a list of YAML values: "
                             f"{exc}") from None
        return key, parsed
    if key == "layers" or ";" in values:
        return key, [_scalar_or_list(v) for v in values.split(";") if v.strip()]
    return key, [_scalar(v) for v in values.split(",")]


def _scalar(text):
    try:
        return cfg.parse_yaml(text.strip())
    except yaml.YAMLError:
        return text.strip()


def _scalar_or_list(text):
    text = text.strip()
    return [_scalar(v) for v in text.split(",")] if "," in text else _scalar(text)


def expand_grid(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in key order then value order."""
    if not isinstance(grid, dict) or not grid:
        raise ValueError("the grid must map at least one config key to a list of values")
    for key, values in grid.items():
        if key not in cfg.DEFAULTS:
            raise ValueError(f"grid key {key!r} is not a config key; known keys: "
                             f"{', '.join(sorted(cfg.DEFAULTS))}")
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"grid key {key!r} needs a non-empty list of values, got {values!r}")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def sample_trials(trials: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` of ``trials`` drawn without replacement with ``seed`` (in grid order);
    all of them when ``n`` is at least their number."""
    n = check_int(n, "random", low=1)
    seed = check_int(seed, "seed", low=0)
    if n >= len(trials):
        return list(trials)
    picked = np.sort(np.random.default_rng(seed).choice(len(trials), size=n, replace=False))
    return [trials[i] for i in picked]


def plain_config(value: Any) -> Any:
    """A config value in JSON's types, which sweep.json, the run folders and
    :func:`trial_key` write: NumPy scalars and arrays as Python numbers and lists,
    a schedule or augmentation object as its mapping (``to_dict()``), tuples as
    lists; anything else as it is (the config's checks judge it).

    >>> plain_config({"epochs": np.int64(3), "layers": np.array([784, 10])})
    {'epochs': 3, 'layers': [784, 10]}
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {plain_config(k): plain_config(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_config(v) for v in value]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, type):
        return plain_config(to_dict())
    return value


def trial_key(config: Mapping[str, Any]) -> str:
    """The identity of a trial: the canonical JSON of its full, resolved config."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


#: The longest run folder name, in ASCII characters (file systems allow 255 bytes).
MAX_LABEL = 100
_HASH_CHARS = 8


def _slug(value):
    if isinstance(value, (list, tuple)):
        return "-".join(_slug(v) for v in value)
    if isinstance(value, Mapping):  # e.g. an lr_schedule: step-step_size_2
        return "-".join(_slug(v) if k == "name" else f"{_slug(k)}_{_slug(v)}"
                        for k, v in value.items())
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return "".join(c if (c.isascii() and c.isalnum()) or c in ".-_+" else "_" for c in text)


def trial_label(params: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """The run folder's name: the swept values, readable and cut to fit, then ``@``
    and a hash of the full config (:func:`trial_key`), e.g.
    ``activation=relu,l2=0.001@1a2b3c4d``: unique per config (``dropout=0.5`` and
    ``dropout=[0.5]`` are two trials, two folders) and at most :data:`MAX_LABEL`
    ASCII characters, however long the values."""
    readable = ",".join(f"{k}={_slug(v)}" for k, v in params.items())
    digest = hashlib.sha256(trial_key(config).encode("utf-8")).hexdigest()[:_HASH_CHARS]
    return f"{readable[:MAX_LABEL - 1 - _HASH_CHARS]}@{digest}"


def check_config(config):
    """Fail before any training on values the model or optimizer reject."""
    model = check_run_config({**config, "seed": config["seed"] if config["seed"] is not None
                              else 0})
    if not model.is_classifier:
        raise ValueError(f"sweeps rank their trials by accuracy, so they take classifiers "
                         f"only: loss {config.get('loss')!r} (a regressor) cannot be swept; "
                         f"train each setting with fastnn train")


def data_key(config):
    """The ``(dataset, normalize)`` of ``config``: the data its trial trains on."""
    return tuple(config[k] for k in DATA_KEYS)

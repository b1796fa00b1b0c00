"""Experiment configuration files (YAML or JSON).

Keys mirror :class:`fastnn.MLP`'s and :meth:`fastnn.MLP.fit`'s arguments,
plus the data keys ``dataset`` and ``normalize``, and an optional ``report``
mapping (what an original study reported: read by ``fastnn study``, ignored by
training). A key that is not listed here is an error that names it; values are
checked by the model and ``fit``.

>>> cfg = resolve({"layers": [784, 10], "epochs": 3})
>>> cfg["activation"], cfg["epochs"], cfg["dataset"]
('relu', 3, 'mnist')
"""
import json
import re
from pathlib import Path

import yaml

MODEL_KEYS = {"layers": None, "activation": "relu", "dtype": "float32", "seed": 0,
              "init": "auto"}
DATA_KEYS = {"dataset": "mnist", "normalize": "minmax"}
FIT_KEYS = {"epochs": 10, "batch_size": 128, "learning_rate": 0.01, "momentum": 0.0,
            "l2": 0.0, "l1": 0.0, "validation_split": 0.0, "early_stopping": None,
            "lr_decay": None, "lr_decay_threshold": 0.001, "loss_reduction": "mean"}
DEFAULTS = {**MODEL_KEYS, **DATA_KEYS, **FIT_KEYS}
#: A mapping that records what an original study reported for this config
#: (``fastnn study`` reads it; training ignores it).
REPORT_KEY = "report"


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads exponent-only floats (``1e-3``, ``5E+2``)
    as numbers, as YAML 1.2 and JSON do; PyYAML's YAML 1.1 rules make them strings."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def parse_yaml(text):
    """``text`` parsed as YAML (safe), with ``1e-3`` a float."""
    return yaml.load(text, Loader=_Loader)


def load(path):
    """Read a YAML (.yaml/.yml) or JSON (.json) mapping from ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {str(path)!r}")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = parse_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"config {str(path)!r} is not valid {path.suffix[1:] or 'YAML'}: {exc}") \
            from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"config {str(path)!r} must be a mapping of keys to values, "
                         f"got {type(data).__name__}")
    return data


def resolve(config, overrides=None):
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
    return merged


def split(config):
    """``(model_kwargs, data_kwargs, fit_kwargs)`` of a resolved config."""
    pick = lambda keys: {k: config[k] for k in keys}  # noqa: E731
    return pick(MODEL_KEYS), pick(DATA_KEYS), pick(FIT_KEYS)

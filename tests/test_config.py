"""fastnn.config: load (YAML/JSON), resolve (defaults < file < overrides), split."""
import inspect
import json
from pathlib import Path

import re

import pytest

from fastnn.optim import params_of
import yaml

from fastnn import MLP
from fastnn import config as cfg

ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILES = sorted(cfg.SHIPPED.glob("*.yaml"))


# ---------------------------------------------------------------------------
# resolve
# ---------------------------------------------------------------------------

def test_resolve_fills_defaults():
    resolved = cfg.resolve({"layers": [784, 10]})
    # the optimizer's keys: SGD's defaults, read from fastnn.optim.SGD
    from fastnn.optim import params_of
    assert resolved == {**cfg.DEFAULTS, **params_of("sgd"), "layers": [784, 10]}
    assert resolved["activation"] == "relu" and resolved["epochs"] == 10
    assert resolved["normalize"] == "minmax" and resolved["early_stopping"] is None


def test_resolve_precedence():
    config = {"layers": [784, 10], "epochs": 3, "learning_rate": 0.5, "momentum": 0.9}
    overrides = {"epochs": 7, "l2": 1e-4, "learning_rate": None, "momentum": None}
    resolved = cfg.resolve(config, overrides)
    assert resolved["epochs"] == 7            # override beats file
    assert resolved["l2"] == 1e-4             # override beats default
    assert resolved["learning_rate"] == 0.5   # None override skipped: file value kept
    assert resolved["momentum"] == 0.9
    assert resolved["batch_size"] == cfg.DEFAULTS["batch_size"]


def test_resolve_none_in_file_is_a_value():
    resolved = cfg.resolve({"layers": [784, 10], "seed": None, "early_stopping": None})
    assert resolved["seed"] is None  # the file sets None explicitly (default 0)


def test_resolve_does_not_mutate_its_inputs():
    config = {"layers": [784, 10]}
    overrides = {"epochs": 2, "seed": None}
    cfg.resolve(config, overrides)
    assert config == {"layers": [784, 10]} and overrides == {"epochs": 2, "seed": None}
    assert cfg.DEFAULTS["epochs"] == 10 and cfg.DEFAULTS["layers"] is None


@pytest.mark.parametrize("where", ["config", "overrides"])
def test_resolve_unknown_key_is_named(where):
    bad = {"learnig_rate": 0.1}
    args = ({"layers": [784, 10], **bad}, None) if where == "config" else \
        ({"layers": [784, 10]}, bad)
    with pytest.raises(ValueError, match="unknown config key 'learnig_rate'") as info:
        cfg.resolve(*args)
    assert "learning_rate" in str(info.value)  # lists the known keys


def test_resolve_unknown_override_with_none_value_is_still_unknown():
    with pytest.raises(ValueError, match="'bogus'"):
        cfg.resolve({"layers": [784, 10]}, {"bogus": None})


def test_resolve_layers_required():
    with pytest.raises(ValueError, match="'layers' is required"):
        cfg.resolve({})
    with pytest.raises(ValueError, match="'layers' is required"):
        cfg.resolve({"layers": None, "epochs": 1})
    with pytest.raises(ValueError, match="'layers' is required"):
        cfg.resolve({"epochs": 1}, {"layers": None})  # a None override does not count
    assert cfg.resolve({}, {"layers": [784, 10]})["layers"] == [784, 10]


# ---------------------------------------------------------------------------
# split
# ---------------------------------------------------------------------------

def test_split_partitions_the_keys():
    resolved = cfg.resolve({"layers": [784, 32, 10], "seed": 4, "normalize": "standard",
                            "epochs": 2, "lr_decay": 0.5})
    model_kw, data_kw, fit_kw = cfg.split(resolved)
    assert model_kw == {"layers": [784, 32, 10], "activation": "relu", "dtype": "float32",
                        "seed": 4, "init": "auto", "dropout": 0.0, "input_dropout": 0.0,
                        "loss": "cross_entropy"}
    assert data_kw == {"dataset": "mnist", "normalize": "standard"}
    assert fit_kw["epochs"] == 2 and fit_kw["lr_decay"] == 0.5
    assert set(fit_kw) == set(cfg.FIT_KEYS) | {"optimizer"}
    assert fit_kw["optimizer"].get_config() == {k: resolved[k] for k in params_of("sgd")}
    opt_keys = {k: resolved[k] for k in cfg.OPTIMIZER_KEYS}
    assert {**model_kw, **data_kw, **{k: v for k, v in fit_kw.items() if k != "optimizer"},
            **opt_keys} == resolved
    assert not (set(model_kw) & set(data_kw) or set(model_kw) & set(fit_kw)
                or set(data_kw) & set(fit_kw))


def test_split_keys_are_mlp_and_fit_arguments():
    """Every model key is an MLP() argument and every fit key a fit() argument."""
    init_args = set(inspect.signature(MLP.__init__).parameters)
    fit_args = set(inspect.signature(MLP.fit).parameters)
    assert set(cfg.MODEL_KEYS) <= init_args
    assert set(cfg.FIT_KEYS) <= fit_args
    model_kw, _, _ = cfg.split(cfg.resolve({"layers": [5, 3]}))
    assert MLP(**model_kw).layers == (5, 3)


# ---------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------

def test_load_yaml_and_json_agree(tmp_path):
    data = {"layers": [784, 64, 10], "activation": "tanh", "learning_rate": 0.05,
            "early_stopping": None, "validation_split": 0.1}
    (tmp_path / "c.json").write_text(json.dumps(data))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "c.yml").write_text(yaml.safe_dump(data))
    assert cfg.load(tmp_path / "c.json") == data
    assert cfg.load(tmp_path / "c.yaml") == data
    assert cfg.load(str(tmp_path / "c.yml")) == data


def test_load_yaml_exponent_floats(tmp_path):
    """``1e-3`` is a float, as in JSON (PyYAML alone would give the string '1e-3')."""
    (tmp_path / "c.yaml").write_text("layers: [784, 10]\nl2: 1e-4\nlearning_rate: 5E-2\n"
                                     "momentum: 0.9\nname_like: e5\n")
    data = cfg.load(tmp_path / "c.yaml")
    assert data["l2"] == 1e-4 and isinstance(data["l2"], float)
    assert data["learning_rate"] == 0.05
    assert data["momentum"] == 0.9
    assert data["name_like"] == "e5"
    assert yaml.safe_load("1e-3") == "1e-3"  # PyYAML's own loader is left alone


@pytest.mark.parametrize("text, value", [
    ("1.5e3", 1500.0), ("1.0E4", 10000.0), ("-2.5e-3", -0.0025), (".5", 0.5), ("1.", 1.0),
    ("064", 64), ("0o17", 15), ("0x1F", 31), ("+12", 12), ("-7", -7), ("1_000", 1000),
    ("1:30", "1:30"), ("0b101", "0b101"), ("1.2.3", "1.2.3"), ("e5", "e5"),
    ("yes", True), ("~", None),
])
def test_yaml_numbers_are_yaml_1_2s(text, value):
    """Numbers in configs and flags read as YAML 1.2, JSON and Python read them:
    YAML 1.1 (PyYAML's rules) made 1.5e3 a string, 064 the octal 52 and 1:30 the
    sexagesimal 90, silently."""
    got = cfg.parse_yaml(text)
    assert got == value and type(got) is type(value)


def test_yaml_numbers_in_a_config_and_a_flag(tmp_path):
    (tmp_path / "c.yaml").write_text("layers: [784, 10]\nlearning_rate: 1.5e-1\n"
                                     "batch_size: 064\n")
    resolved = cfg.resolve(cfg.load(tmp_path / "c.yaml"))
    assert resolved["learning_rate"] == 0.15 and resolved["batch_size"] == 64
    assert cfg.parse_yaml("2.0e2") == 200.0
    assert yaml.safe_load("064") == 52  # PyYAML's own loader is left alone


def test_load_empty_file_is_an_empty_mapping(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "comments.yaml").write_text("# only a comment\n")
    assert cfg.load(tmp_path / "empty.yaml") == {}
    assert cfg.load(tmp_path / "comments.yaml") == {}


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found.*nope.yaml"):
        cfg.load(tmp_path / "nope.yaml")
    with pytest.raises(FileNotFoundError, match="config file not found"):
        cfg.load(tmp_path)  # a folder is not a config file


@pytest.mark.parametrize("name, text", [
    ("list.yaml", "- 784\n- 10\n"),
    ("scalar.yaml", "hello\n"),
    ("number.json", "3"),
    ("list.json", "[1, 2]"),
])
def test_load_not_a_mapping(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match="must be a mapping") as info:
        cfg.load(tmp_path / name)
    assert name in str(info.value)


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    """``<<: *anchor`` then a key of the anchor's: YAML's override, not a duplicate."""
    (tmp_path / "m.yaml").write_text("base: &b {epochs: 1, seed: 2}\n"
                                     "run:\n  <<: *b\n  epochs: 3\n")
    assert cfg.load(tmp_path / "m.yaml")["run"] == {"epochs": 3, "seed": 2}


@pytest.mark.parametrize("name, text, kind", [
    ("bad.yaml", "layers: [784, 10\n", "YAML"),
    ("bad.yml", "a: b: c\n", "YAML"),
    ("bad.json", "{'layers': [784, 10]}", "JSON"),
    ("trailing.json", '{"layers": [784, 10],}', "JSON"),
    ("yaml-in.json", "layers: [784, 10]\n", "JSON"),  # JSON files are parsed as JSON
    # a key given twice: which value was meant? (both parsers would keep the last)
    ("twice.yaml", "epochs: 1\nlayers: [784, 10]\nepochs: 2\n", "YAML"),
    ("twice.json", '{"epochs": 1, "epochs": 2}', "JSON"),
    ("nested.yaml", "augment: {rotation: 5, rotation: 7}\n", "YAML"),
])
def test_load_invalid_syntax(tmp_path, name, text, kind):
    """One line that names the file and, for YAML, the line and column."""
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=f"is not valid {kind}") as info:
        cfg.load(tmp_path / name)
    assert name in str(info.value) and "\n" not in str(info.value)
    assert "<unicode string>" not in str(info.value)
    if kind == "YAML":
        assert re.search(r"\(line \d+, column \d+\)$", str(info.value)), info.value


def test_load_a_binary_file_says_so(tmp_path):
    (tmp_path / "model.yaml").write_bytes(b"PK\x03\x04\xa7\xff\x00binary")
    with pytest.raises(ValueError, match=r"model.yaml' is not a YAML file: it is not UTF-8"):
        cfg.load(tmp_path / "model.yaml")


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_shipped_configs_resolve_and_build(path):
    config = cfg.resolve(cfg.load(path))
    model_kw, data_kw, fit_kw = cfg.split(config)
    model = MLP(**model_kw)
    if model.is_classifier:
        assert model.layers[0] == 784 and model.layers[-1] == 10
        assert data_kw["dataset"] == "mnist"
    else:  # a regression config: a generated data set of its own width
        from fastnn.datasets import GENERATED
        assert model.layers[0] == GENERATED[data_kw["dataset"]][2]
    assert fit_kw["epochs"] >= 1 and fit_kw["optimizer"].learning_rate > 0


def test_shipped_configs_values():
    assert len(CONFIG_FILES) >= 3
    best = cfg.resolve(cfg.load(cfg.SHIPPED / "best.yaml"))
    assert best["layers"] == [784, 128, 10] and best["normalize"] == "standard"
    assert best["early_stopping"] == 3 and best["validation_split"] == 0.2
    softmax = cfg.resolve(cfg.load(cfg.SHIPPED / "softmax-regression.yaml"))
    assert softmax["layers"] == [784, 10]


STUDY_FILES = sorted((cfg.SHIPPED / "study").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDY_FILES, ids=lambda p: p.stem)
def test_study_configs_resolve_and_state_their_report(path):
    """Every study config is a valid config whose report states the figure, also in a comment."""
    from fastnn.study import load_report
    raw = cfg.load(path)
    resolved = cfg.resolve(raw)  # the report key is ignored by training
    assert "report" not in resolved
    report = load_report(raw, path.stem)
    assert 0 < report["test_accuracy"] <= 1 and report["source"]
    assert f"{report['test_accuracy'] * 100:.2f} %" in path.read_text().replace("97.20", "97.2") \
        or f"{report['test_accuracy'] * 100:.1f} %" in path.read_text()
    assert resolved["loss_reduction"] in ("mean", "sum")
    if resolved["loss_reduction"] == "sum":
        # the nominal batch size divides the training set: no partial batch is rescaled
        n = 60000 - round(60000 * resolved["validation_split"])
        assert n % resolved["batch_size"] == 0


def test_loss_reduction_key():
    assert cfg.resolve({"layers": [784, 10]})["loss_reduction"] == "mean"
    assert cfg.resolve({"layers": [784, 10], "loss_reduction": "sum"})["loss_reduction"] == "sum"
    with pytest.raises(ValueError, match="unknown config key 'reporting'"):
        cfg.resolve({"layers": [784, 10], "reporting": {}})
    with pytest.raises(ValueError, match="unknown config key 'report'"):
        cfg.resolve({"layers": [784, 10]}, overrides={"report": {}})


# ---------------------------------------------------------------------------
# shipped configs by name
# ---------------------------------------------------------------------------

def test_shipped_configs_are_package_data():
    """The configs live inside the package (installed with it), and every one
    of them, the study configs included, has a name."""
    assert cfg.SHIPPED.parent == Path(cfg.__file__).resolve().parent
    names = cfg.shipped()
    assert {"best", "mnist-98", "mnist-dropout", "best-adam", "softmax-regression",
            "study/002-best"} <= set(names)
    assert len(names) == len(CONFIG_FILES) + len(STUDY_FILES)
    assert all(path.is_file() for path in names.values())


@pytest.mark.parametrize("name", ["best", "best.yaml", "study/002-best", "study/002-best.yaml"])
def test_locate_by_name_from_any_folder(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stem = name.split("/")[-1].removesuffix(".yaml")
    path = cfg.locate(name)
    assert path.name == stem + ".yaml" and path.is_file()
    assert cfg.load(name) == cfg.load(path)


def test_a_path_wins_over_a_name(tmp_path, monkeypatch):
    """A file of that name in the working folder is read, not the shipped config."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "best").write_text("layers: [784, 7, 10]\n")
    assert cfg.load("best")["layers"] == [784, 7, 10]
    assert cfg.load("best.yaml")["layers"] == [784, 128, 10]


@pytest.mark.parametrize("name", ["no-such-config", "study/best", "configs/nope.yaml"])
def test_unknown_name_says_where_to_look(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="fastnn configs"):
        cfg.load(name)


def test_describe_reads_the_first_comment_line():
    assert cfg.describe(cfg.locate("best")).startswith("The original study's best model")

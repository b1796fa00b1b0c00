"""The public API's annotations: complete, and consistent by mypy (the config
is pyproject.toml's ``[tool.mypy]``)."""
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastnn
from fastnn import config, datasets, export, optim, schedules, sweep, threads, training

ROOT = Path(__file__).resolve().parents[1]


def _public_callables():
    """The public API whose signatures must be annotated in full."""
    items = [training.fit, fastnn.set_num_threads, fastnn.get_num_threads,
             optim.make, optim.params_of, schedules.make,
             datasets.load_dataset, datasets.load_mnist, datasets.load_fashion_mnist,
             datasets.read_idx, datasets.parse_idx, datasets.class_names,
             datasets.find_dataset, datasets.normalize_images,
             sweep.run_sweep, sweep.parse_grid, sweep.expand_grid, sweep.format_table,
             config.load, config.resolve, config.split,
             export.to_onnx, export.to_onnx_model, export.output_kind, export.output_names]
    from fastnn.inference import Inference
    classes = [fastnn.MLP, Inference, fastnn.FitConfig, fastnn.History, fastnn.Callback,
               optim.Optimizer, optim.SGD,
               optim.Adam, *schedules.SCHEDULES.values(), schedules.Schedule]
    try:
        from fastnn.sklearn import MLPClassifier
        classes.append(MLPClassifier)
    except ImportError:  # scikit-learn is an optional extra
        pass
    for cls in classes:
        for name, member in vars(cls).items():
            if name.startswith("_") and name != "__init__":
                continue
            if isinstance(member, (classmethod, staticmethod)):
                member = member.__func__
            if isinstance(member, property):
                member = member.fget
            if inspect.isfunction(member):
                items.append(member)
    return items


@pytest.mark.parametrize("func", _public_callables(), ids=lambda f: f.__qualname__)
def test_public_api_is_annotated(func):
    sig = inspect.signature(func)
    missing = [p.name for i, p in enumerate(sig.parameters.values())
               if p.annotation is inspect.Parameter.empty
               and not (i == 0 and p.name in ("self", "cls"))]
    assert not missing, f"{func.__qualname__}: parameters without annotation: {missing}"
    assert sig.return_annotation is not inspect.Signature.empty, \
        f"{func.__qualname__}: no return annotation"


def test_mypy_passes_on_the_package():
    pytest.importorskip("mypy", reason="mypy is in the test extra: pip install -e '.[test]'")
    if not (ROOT / "pyproject.toml").is_file() or not (ROOT / "src" / "fastnn").is_dir():
        pytest.skip("not run from a source checkout")
    env = {**os.environ, "MYPY_CACHE_DIR": os.environ.get("MYPY_CACHE_DIR",
                                                          str(ROOT / ".mypy_cache"))}
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout

"""fastnn.show_config / ``fastnn info``: what fastnn runs on, for bug reports."""
import io
import json
import os
import subprocess
import sys

import fastnn
from fastnn import _kernels, cli, sysinfo, threads


def test_config_info_says_what_this_process_runs():
    info = sysinfo.config_info()
    assert info["fastnn"] == fastnn.__version__
    assert info["kernels"] == _kernels._kernel_isa() and info["kernels"] in info["kernels_usable"]
    assert info["kernels_usable"][-1] == "generic"
    assert (info["caches"]["l1d"], info["caches"]["l2"]) == _kernels._cache_sizes()
    assert tuple(info["caches"]["source"].values()) == _kernels._cache_sources()
    assert info["build"]["debug"] == bool(_kernels.DEBUG_BUILD)
    assert set(info["build"]) == {"compiler", "simd", "clones", "threads", "debug"}
    assert info["threads"]["training"] == threads.training_threads()
    assert info["threads"]["usable_cores"] == threads.usable_cores()
    assert all(k.startswith(("FASTNN_", "OMP_", "OPENBLAS_", "MKL_")) for k in info["env"])
    assert info["cpu"] and isinstance(info["cpu"], str)
    json.dumps(info)  # JSON-able as it is


def test_show_config_prints_text_or_json():
    buf = io.StringIO()
    fastnn.show_config(buf)
    text = buf.getvalue()
    assert text.startswith(f"fastnn {fastnn.__version__}")
    assert f"kernels: {_kernels._kernel_isa()}" in text and "caches: L1d" in text
    buf = io.StringIO()
    fastnn.show_config(buf, as_json=True)
    assert json.loads(buf.getvalue())["kernels"] == _kernels._kernel_isa()


def test_thread_setting_and_environment_appear(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with threads.using(1):
        info = sysinfo.config_info()
    assert info["threads"]["training"] == 1 and info["env"]["OMP_NUM_THREADS"] == "1"
    fastnn.set_num_threads(1)
    try:
        assert "set to 1" in sysinfo.format_config(sysinfo.config_info())
    finally:
        fastnn.set_num_threads(None)


def test_info_command(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "kernels:" in out and "threads:" in out
    assert cli.main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fastnn"] == fastnn.__version__


def test_info_names_the_kernels_fastnn_isa_chose():
    """In a child under FASTNN_ISA=generic the report says generic."""
    env = {**os.environ, "FASTNN_ISA": "generic"}
    r = subprocess.run([sys.executable, "-c", "import fastnn; fastnn.show_config(as_json=True)"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["kernels"] == "generic" and info["env"]["FASTNN_ISA"] == "generic"

"""The FMA-peak probe of ``fastnn bench`` (fastnn_bench._peak): sanity only, never a time."""
import math

import pytest

from fastnn_bench import _peak


def test_the_loop_variant_is_one_of_the_known_ones():
    assert _peak.isa() in ("avx512f", "avx2-fma", "neon", "generic")
    assert _peak.flops_per_iteration() in (16 * 16 * 2, 12 * 8 * 2, 24 * 4 * 2, 12 * 4 * 2)


def test_the_loop_converges_to_a_finite_value():
    # acc -> acc * m + c stays finite and normal however long it runs
    for iters in (0, 1, 1000, 100000):
        assert math.isfinite(_peak.fma_loop(iters))


@pytest.mark.parametrize("threads", [1, 2])
def test_peak_is_positive_and_finite(threads):
    gflops = _peak.peak_gflops(threads, seconds=0.01, repeats=1)
    assert math.isfinite(gflops) and gflops > 0


@pytest.mark.parametrize("kwargs", [dict(threads=0), dict(seconds=0), dict(seconds=-1.0),
                                    dict(repeats=0)])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        _peak.peak_gflops(**kwargs)

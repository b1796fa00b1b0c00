"""fastnn-bench: the harness behind ``fastnn bench`` (:mod:`fastnn_bench.harness`)
and its compiled FMA-peak probe (:mod:`fastnn_bench._peak`).

It lives in fastnn's repository (``benchmarks/``), not in the fastnn package:
``pip install ./benchmarks`` from a checkout. The pytest benchmarks beside it
(``benchmarks/bench_*.py``) use the same building blocks.
"""

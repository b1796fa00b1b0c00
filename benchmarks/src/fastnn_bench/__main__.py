"""``python -m fastnn_bench ...``: the same as ``fastnn bench ...``."""
from .harness import main

raise SystemExit(main())

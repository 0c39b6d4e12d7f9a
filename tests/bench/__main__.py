"""``python -m tests.bench``: measure every figure and print the tables."""

from tests.bench.bench_runner import main

raise SystemExit(main())

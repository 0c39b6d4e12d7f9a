"""The benchmark suite behind ``make bench`` (``python -m tests.bench``).

Not collected by pytest (files are named ``bench_*.py``). Every figure is measured against the
simulator on 127.0.0.1 or written straight through ``SnapshotWriter``, and reported as one
markdown table against the budgets of DESIGN.md ("Performance budgets").
"""

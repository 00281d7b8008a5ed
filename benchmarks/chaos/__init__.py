"""The chaos suite's machinery: ``python -m benchmarks.chaos`` (or ``nox -s chaos``) runs it
at full size, ``tests/chaos`` at test size.

Modules: :mod:`~benchmarks.chaos.runner` (command line and tables),
:mod:`~benchmarks.chaos.harness` (the run every scenario goes through),
:mod:`~benchmarks.chaos.scenarios`, :mod:`~benchmarks.chaos.fleet` (the ``chancy worker``
processes), :mod:`~benchmarks.chaos.server` (the private PostgreSQL),
:mod:`~benchmarks.chaos.invariants` (what the rows left behind must show), and
:mod:`~benchmarks.chaos.jobs` (the job functions and the workers' app, imported by the
worker processes: this package's ``__init__`` imports nothing, so they start light).
"""

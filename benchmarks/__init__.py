"""chancy's benchmarks: ``python -m benchmarks`` (or ``nox -s benchmarks``).

Not a test: it prints figures. Each scenario runs on a fresh database (on a private
embedded PostgreSQL unless ``--dsn`` is given), verifies its counts in the database, and
is compared with a ceiling measured with plain asyncpg on the same server, or with a
target. See :mod:`benchmarks.scenarios` for the scenarios and their targets.

Modules: :mod:`~benchmarks.runner` (command line and output), :mod:`~benchmarks.scenarios`,
:mod:`~benchmarks.ceilings` (plain-asyncpg ceilings), :mod:`~benchmarks.server` (server and
per-scenario databases), :mod:`~benchmarks.workers` (``chancy worker`` processes and drain
figures), :mod:`~benchmarks.tasks` (the job functions and the workers' app),
:mod:`~benchmarks.report` (results, table, JSON lines).
"""

"""chancy's benchmarks: ``python -m benchmarks`` (or ``nox -s benchmarks``).

Not a test: it prints figures. Each scenario runs on a fresh database (on a private
embedded PostgreSQL unless ``--dsn`` is given), verifies its counts in the database, and
is compared with a ceiling measured on the same server in the same run (plain asyncpg,
or pgbench), or with a target; with ``--peers``, the same scenario runs on peer
libraries too. See :mod:`benchmarks.scenarios` for the scenarios and their targets.

Modules: :mod:`~benchmarks.runner` (command line and output), :mod:`~benchmarks.context`
(what scenarios share), :mod:`~benchmarks.scenarios` (S1 to S6, M1),
:mod:`~benchmarks.producers` (S7 and its producer processes), :mod:`~benchmarks.ceilings`
(plain-asyncpg ceilings), :mod:`~benchmarks.pgbench` (the pgbench ceiling),
:mod:`~benchmarks.cpu` (CPU time of workers and server), :mod:`~benchmarks.server`
(server and per-scenario databases), :mod:`~benchmarks.workers` (worker processes and
drain figures), :mod:`~benchmarks.tasks` (the job functions and the workers' app),
:mod:`~benchmarks.peers` (peer libraries), :mod:`~benchmarks.report` (results, tables,
JSON lines).
"""

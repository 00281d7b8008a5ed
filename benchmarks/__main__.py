"""``python -m benchmarks [--only S1,S3] [--scale 0.1] [--json] [--dsn DSN] [--peers]
[--markdown]``."""

from benchmarks.runner import main

raise SystemExit(main())

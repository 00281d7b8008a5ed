"""``python -m benchmarks.chaos [--minutes N] [--only NAME,...] [--jobs N] [--seed S]``."""

from benchmarks.chaos.runner import main

raise SystemExit(main())

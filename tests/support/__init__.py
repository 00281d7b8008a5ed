"""Helpers shared by the test tiers: the test server and its databases (:mod:`.servers`),
bounded waiting (:mod:`.waiting`), hand-written job rows (:mod:`.rows`), schema snapshots
(:mod:`.schema`), and the job functions tests push and workers import by name
(:mod:`.tasks`, :mod:`.allowed_tasks`, :mod:`.never_imported`)."""

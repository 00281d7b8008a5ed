"""`python -m chancy`: the `chancy` command."""

from chancy.cli import main

main()

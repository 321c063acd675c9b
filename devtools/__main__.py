"""`python -m devtools ...`: the development aids' command line (devtools/cli.py)."""

from devtools.cli import main

main()

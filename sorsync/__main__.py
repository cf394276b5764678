"""`python -m sorsync` = the `sorsync` command (used to start child processes portably)."""

from sorsync.cli import main

main()

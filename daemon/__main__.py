"""`python -m daemon` is `keynews`."""

from daemon.cli import main

main()

"""`python -m georollout_cli`: the same command as the `georollout` console script."""

from georollout_cli.app import main

main()

"""``python -m agricredit`` runs the command-line interface."""

from agricredit.cli.main import main

main()

"""Command-line interface: one module per command, ``main.py`` holds the group."""

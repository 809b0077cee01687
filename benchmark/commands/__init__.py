"""Subcommands of ``sarjepa``.

Every module in this package defines ``register(subparsers)``, which adds one (or a few) argparse
sub-parsers and sets ``func`` on them via ``set_defaults``. ``func(args) -> int`` runs the command.
The CLI discovers the modules at start-up, so a new command is one new file here.
"""

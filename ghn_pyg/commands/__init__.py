"""Implementations of the ``ghn-pyg`` subcommands (``ghn_pyg.cli`` parses and dispatches)."""

"""The ``ghn-pyg`` command line."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import traceback
import warnings
from typing import Sequence

__all__ = ["main", "run", "build_parser"]

#: Set to 1 to show full tracebacks of errors (as ``--debug`` does).
DEBUG_ENV = "GHN_PYG_DEBUG"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ghn-pyg``; each subcommand declares its own arguments
    next to its implementation (``ghn_pyg.commands``) and sets its ``handler``."""
    from .commands import export, graphs, study, training

    parser = argparse.ArgumentParser(
        prog="ghn-pyg", description="Graph HyperNetworks for quantization-robust CNN parameters.")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of an error (also: {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (graphs, training, study, export):
        module.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ghn-pyg``; returns the exit status."""
    # torch_geometric's import calls the deprecated torch.jit.script; not the user's concern.
    warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated",
                            category=FutureWarning)
    args = build_parser().parse_args(argv)
    from .errors import DatasetError, GraphBuildError
    from .runtime import reuse_freed_memory

    reuse_freed_memory()

    try:
        return args.handler(args)
    except (GraphBuildError, DatasetError, ValueError, ImportError, FileNotFoundError,
            FileExistsError, RuntimeError) as err:
        if args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            traceback.print_exc()
        print(f"ghn-pyg {args.command}: error: {err}", file=sys.stderr)
        return 2


def run() -> None:
    """The ``ghn-pyg`` console script: :func:`main`, then the process exits with its
    status, without a last garbage collection over what the command leaves behind.

    A long ``train`` run keeps thousands of traced runners (tens of millions of objects,
    in reference cycles); the collection at interpreter exit walks them all, which kept
    the process busy for over a minute after a 6,000-runner run had written its last
    checkpoint. Freezing moves every object out of the collector's reach; the operating
    system takes the memory back at exit. Files and loggers are closed by the commands
    themselves before they return.
    """
    status = main()
    gc.freeze()
    sys.exit(status)


if __name__ == "__main__":
    run()

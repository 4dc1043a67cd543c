"""Paired differences between methods of results tables, per architecture.

Reads a ``results.csv`` of ``scripts/results_fmnist.py`` (``--against LABEL=CSV``: and
another one, e.g. of an earlier GHN version, whose methods are then named
``METHOD (LABEL)``) and prints, per protocol, setting, split and bit-width, the mean ±
standard error of ``method - baseline`` over the architectures both were evaluated
on, on how many ``method`` is ahead, and the minimum, median and maximum
(:func:`ghn_pyg.train.results.paired_differences`).

    # GHN-QAT against the float GHN of the same tables
    python scripts/compare_results.py docs/results/fmnist-v2/results.csv \\
        --pair "GHN-QAT:GHN (float)"
    # every GHN of the new tables against itself in the -v1 tables
    python scripts/compare_results.py docs/results/fmnist-v2/results.csv \\
        --against v1=docs/results/fmnist-float-first/results.csv --methods "GHN (float)" GHN-QAT
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ghn_pyg.commands.arguments import two_part
from ghn_pyg.fileio import atomic_path
from ghn_pyg.train.results import ResultRow, paired_differences, read_results


def pair_arg(text: str) -> tuple[str, str]:
    """``"METHOD:BASELINE"`` -> ``(METHOD, BASELINE)``; argparse reports anything else."""
    return two_part(text, "--pair", "METHOD:BASELINE", "GHN-QAT:GHN (float)", sep=":",
                    rightmost=True)


def against_arg(text: str) -> tuple[str, Path]:
    """``"LABEL=CSV"`` -> ``(LABEL, path)``; argparse reports anything else."""
    label, path = two_part(text, "--against", "LABEL=CSV", "v1=docs/results/fmnist/results.csv")
    return label, Path(path)


def comparison(rows: list[ResultRow], against: tuple[str, list[ResultRow]] | None,
               pairs: list[tuple[str, str]], methods: list[str] | None) -> str:
    """The markdown table of ``pairs`` in ``rows`` and, with ``against = (label,
    other rows)``, of each of ``methods`` (default: every method of ``rows`` that the
    other rows have too) against its namesake there.

    Raises:
        ValueError: nothing to compare, or a named method has no rows.
    """
    pairs = list(pairs)
    if against is not None:
        label, other = against
        shared = {r.method for r in other} & {r.method for r in rows}
        for method in methods or sorted(shared):
            pairs.append((method, f"{method} ({label})"))
        rows = rows + [dataclasses.replace(r, method=f"{r.method} ({label})") for r in other]
    if not pairs:
        raise ValueError("nothing to compare: give --pair METHOD:BASELINE or --against "
                         "LABEL=CSV (with methods that both files have)")
    return paired_differences(rows, pairs)


def main(argv: list[str] | None = None) -> int:
    """Print (and with ``--out`` write) the table; 2 on bad input, with the reason."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a results.csv")
    parser.add_argument("--pair", type=pair_arg, action="append", default=[],
                        metavar="METHOD:BASELINE", help="compare two methods of RESULTS (repeat)")
    parser.add_argument("--against", type=against_arg, default=None, metavar="LABEL=CSV",
                        help="compare each method with its namesake in another results.csv")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="with --against: the methods to compare (default: all shared)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    try:
        against = None if args.against is None else \
            (args.against[0], read_results(args.against[1]))
        table = comparison(read_results(args.results), against, args.pair, args.methods)
    except (OSError, ValueError) as error:
        print(f"compare_results: {error}", file=sys.stderr)
        return 2
    print(table)
    if args.out is not None:
        with atomic_path(args.out) as tmp:
            tmp.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

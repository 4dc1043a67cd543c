"""The initialization study, as a script: ``ghn-pyg init-study`` with the same options.

    python scripts/init_study.py --preset smoke --out results/init-study-smoke
    python scripts/init_study.py --preset full --out results/init-study     # resumable

For each block family x initializer x seed: initialise, train in float, quantize
post-training (W8A8, W4A4, W2A2, W8 weights only); then QAT of unseen test
architectures from the GHN, GHN-QAT and random starting points. Writes ``runs.csv``,
``qat.csv``, ``summary.md`` and the plots to ``--out``.
"""

from __future__ import annotations

import sys
from typing import Sequence

from ghn_pyg.cli import main as cli_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study with ``argv`` (default: the command line); returns the exit status."""
    return cli_main(["init-study", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

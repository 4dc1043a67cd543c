"""``python -m ghn_pyg.train ...`` (e.g. under torchrun): the same as ``ghn-pyg train ...``."""

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))

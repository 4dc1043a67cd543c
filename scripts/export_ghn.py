"""Export a trained GHN for shipping: weights only, plus its training recipe.

Writes ``OUT.pt`` (``GHN.save``: config and weights, loadable with
``GHN.from_pretrained``) and ``OUT.json`` (the run's training settings and its last
logged metrics), e.g.::

    python scripts/export_ghn.py runs/ghn-fmnist/last.pt ghn_pyg/checkpoints/ghn-fmnist
"""

from __future__ import annotations

import argparse
import csv
import json
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from ghn_pyg.fileio import atomic_path  # noqa: E402
from ghn_pyg.nn import GHN  # noqa: E402
from ghn_pyg.train import load_train_checkpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="training checkpoint (OUT/last.pt)")
    parser.add_argument("out", help="output path without suffix")
    args = parser.parse_args()
    state = load_train_checkpoint(args.checkpoint)
    out = Path(args.out)
    GHN.load(args.checkpoint).save(out.with_suffix(".pt"))
    metrics_file = Path(args.checkpoint).parent / "metrics.csv"
    last = list(csv.DictReader(metrics_file.open()))[-1] if metrics_file.is_file() else {}
    recipe = {"steps_trained": state["step"], "training_settings": state["config"],
              "last_logged_metrics": last}
    with atomic_path(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(recipe, indent=1) + "\n")
    print(f"wrote {out.with_suffix('.pt')} and {out.with_suffix('.json')} (step {state['step']})")


if __name__ == "__main__":
    main()

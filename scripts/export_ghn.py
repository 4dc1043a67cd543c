"""Export a trained GHN for shipping: weights only, plus its training recipe.

Writes ``OUT.pt`` (``GHN.save``: config and weights, loadable with
``GHN.from_pretrained``) and ``OUT.json`` (the run's training settings and its last
logged metrics; for a run started from another one's weights, ``--init-ckpt``, the
same for that run under ``initialized_from``, and so on back to the first phase, so
that a GHN-QAT's JSON also holds the float pretraining it started from), e.g.::

    python scripts/export_ghn.py runs/ghn-fmnist/last.pt ghn_pyg/checkpoints/ghn-fmnist
"""

from __future__ import annotations

import argparse
import csv
import json
import warnings
from pathlib import Path
from typing import Any, Sequence

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from ghn_pyg.fileio import atomic_path  # noqa: E402
from ghn_pyg.formats import GHN_FORMAT, TRAIN_FORMAT, read_checkpoint  # noqa: E402
from ghn_pyg.nn import GHN  # noqa: E402
from ghn_pyg.train import load_train_checkpoint  # noqa: E402


def training_recipe(checkpoint: str | Path, _seen: frozenset[Path] = frozenset(),
                    _state: dict[str, Any] | None = None) -> dict[str, Any]:
    """The training history of a run, from its checkpoint back to its first phase.

    Args:
        checkpoint: a training checkpoint (``OUT/last.pt``); ``metrics.csv`` beside it
            gives the last logged metrics.

    Returns:
        ``{"checkpoint", "steps_trained", "training_settings", "last_logged_metrics"}``
        plus ``"initialized_from"``: the same for the run's ``init_ckpt`` when it has
        one (for an exported GHN file, the recipe exported beside it:
        :func:`exported_recipe`; only ``{"checkpoint", "missing": True}`` when that
        file is gone).

    Raises:
        CheckpointError: ``checkpoint`` is missing or not a training checkpoint.
        ValueError: the ``init_ckpt`` chain loops back on itself.
    """
    path = Path(checkpoint).resolve()
    if path in _seen:
        raise ValueError(f"{checkpoint}: its init_ckpt chain loops back to itself")
    state = load_train_checkpoint(path) if _state is None else _state  # read once per file
    metrics_file = path.parent / "metrics.csv"
    last = list(csv.DictReader(metrics_file.open()))[-1] if metrics_file.is_file() else {}
    recipe = {"checkpoint": str(checkpoint), "steps_trained": state["step"],
              "training_settings": state["config"], "last_logged_metrics": last}
    parent = state["config"].get("init_ckpt")
    if not parent:
        return recipe
    if not Path(parent).is_file():
        warnings.warn(f"{checkpoint} started from {parent}, which is gone: its recipe "
                      "is not recorded", stacklevel=2)
        recipe["initialized_from"] = {"checkpoint": parent, "missing": True}
    else:
        payload = read_checkpoint(parent, (GHN_FORMAT, TRAIN_FORMAT))
        recipe["initialized_from"] = (exported_recipe(parent) if payload["format"] == GHN_FORMAT
                                      else training_recipe(parent, _seen | {path}, payload))
    return recipe


def exported_recipe(ghn_file: str | Path) -> dict[str, Any]:
    """The recipe of an exported GHN (a run started from a shipped checkpoint): the JSON
    written beside it when it was exported, under ``checkpoint`` the GHN file itself and
    under ``exported_from`` the training checkpoint it came from.

    It is read when a run is exported, so export every run that started from a shipped
    GHN before overwriting that GHN's JSON (a new ``ghn-qat-fmnist`` trained from a run
    that started from the old ``ghn-fmnist``: export it before the new ``ghn-fmnist``).

    Args:
        ghn_file: an exported GHN (``NAME.pt``; its recipe is ``NAME.json``).

    Returns:
        The recipe as in :func:`training_recipe`, plus ``"exported_from"``; only
        ``{"checkpoint", "missing": True}``, with a warning, when there is no JSON.
    """
    recipe_file = Path(ghn_file).with_suffix(".json")
    if not recipe_file.is_file():
        warnings.warn(f"{ghn_file} has no recipe beside it ({recipe_file.name}): its "
                      "training is not recorded", stacklevel=2)
        return {"checkpoint": str(ghn_file), "missing": True}
    recipe = json.loads(recipe_file.read_text())
    return {"checkpoint": str(ghn_file), "exported_from": recipe.get("checkpoint"),
            **{k: v for k, v in recipe.items() if k != "checkpoint"}}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Export the GHN of a training checkpoint; returns the recipe written to ``OUT.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="training checkpoint (OUT/last.pt)")
    parser.add_argument("out", help="output path without suffix")
    args = parser.parse_args(argv)
    recipe = training_recipe(args.checkpoint)
    out = Path(args.out)
    GHN.load(args.checkpoint).save(out.with_suffix(".pt"))
    with atomic_path(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(recipe, indent=1) + "\n")
    print(f"wrote {out.with_suffix('.pt')} and {out.with_suffix('.json')} "
          f"(step {recipe['steps_trained']})")
    return recipe


if __name__ == "__main__":
    main()

"""The ``init-study`` command."""

from __future__ import annotations

import argparse
import dataclasses

__all__ = ["cmd_init_study"]


def cmd_init_study(args: argparse.Namespace) -> int:
    from ..data import load_images
    from ..study.init_study import PRESETS, run_study, study_table, write_report

    overrides = {k: v for k, v in (("families", args.families), ("inits", args.inits),
                                   ("seeds", args.seeds), ("epochs", args.epochs)) if v is not None}
    config = dataclasses.replace(PRESETS[args.preset], **overrides)
    config.validate()
    train = load_images(args.data, "train", args.data_root)
    test = load_images(args.data, "test", args.data_root)
    path = run_study(config, train, test, args.out)
    print(study_table(path, "W4A4"))
    print("wrote " + ", ".join(str(p) for p in [path, *write_report(path, args.out)]))
    return 0

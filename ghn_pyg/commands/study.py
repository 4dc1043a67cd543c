"""The ``init-study`` and ``qat`` commands."""

from __future__ import annotations

import argparse
import dataclasses
import time


__all__ = ["cmd_init_study", "cmd_qat"]


def cmd_init_study(args: argparse.Namespace) -> int:
    from ..data import first_items, load_images
    from ..study.init_study import PRESETS, run_study, study_table, write_report
    from ..study.qat_study import qat_table, run_qat_study

    overrides = {k: v for k, v in (("families", args.families), ("inits", args.inits),
                                   ("seeds", args.seeds), ("epochs", args.epochs),
                                   ("qat_archs", args.qat_archs), ("qat_inits", args.qat_inits),
                                   ("qat_epochs", args.qat_epochs), ("qat_bits", args.qat_bits))
                 if v is not None}
    config = dataclasses.replace(PRESETS[args.preset], **overrides)
    config.validate()
    started = time.perf_counter()
    train = first_items(load_images(args.data, "train", args.data_root), config.train_images)
    test = first_items(load_images(args.data, "test", args.data_root), config.test_images)
    path = run_study(config, train, test, args.out)
    print(study_table(path, "W4A4"))
    qat_path = None
    if config.qat_archs > 0:
        qat_path = run_qat_study(config.qat_archs, config.qat_inits, train, test, args.out,
                                 config.qat_bits, config.qat_epochs, config.qat_lr,
                                 config.batch_size)
        print(qat_table(qat_path, config.qat_target))
    written = [path, *([qat_path] if qat_path else []),
               *write_report(path, args.out, qat_path, config.qat_target)]
    print(f"wrote {', '.join(str(p) for p in written)} "
          f"({(time.perf_counter() - started) / 60:.1f} min)")
    return 0


def cmd_qat(args: argparse.Namespace) -> int:
    import csv
    from pathlib import Path

    import torch

    from ..data import first_items, load_images
    from ..fileio import atomic_path
    from ..report import markdown_table
    from ..study.qat import check_start, qat_train
    from .networks import network_from_args

    check_start(args.init)
    train = first_items(load_images(args.data, "train", args.data_root), args.max_train_images)
    test = first_items(load_images(args.data, "test", args.data_root), args.max_test_images)
    in_shape = tuple(train[0][0].shape)
    model = network_from_args(args.model, args.spec, (1, *in_shape), 10)
    model, history = qat_train(model, args.init, train, test, args.bits, args.epochs,
                               args.batch_size, args.lr, args.seed, args.first_last_8bit,
                               device=args.device)
    print(markdown_table(["epoch", f"top-1 W{args.bits}A{args.bits} (%)"],
                         [[e, f"{100 * a:.2f}"] for e, a in enumerate(history.accuracy)]))
    if history.final_running_bn is not None:
        print(f"final, BN running statistics: {100 * history.final_running_bn:.2f}%")
    if args.target is not None:
        reached = history.epochs_to(args.target / 100)
        print(f"{args.target:g}% reached at epoch {reached}" if reached is not None
              else f"{args.target:g}% not reached in {args.epochs} epochs")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "qat.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["init", "bits", "epoch", "accuracy"])
        writer.writerows([args.init, args.bits, e, f"{a:.5f}"] for e, a in enumerate(history.accuracy))
    with atomic_path(out / "model.pt") as tmp:
        torch.save(model.state_dict(), tmp)
    print(f"wrote {out / 'qat.csv'}, {out / 'model.pt'}")
    return 0

"""The ``init-study``, ``qat-study`` and ``qat`` commands."""

from __future__ import annotations

import argparse
import dataclasses
import time



__all__ = ["add_parsers", "cmd_init_study", "cmd_qat_study", "cmd_qat"]


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


def cmd_qat_study(args: argparse.Namespace) -> int:
    from ..data import first_items, load_images
    from ..fileio import atomic_path
    from ..study.qat_study import plot_qat_curves, qat_differences, qat_table, run_qat_study

    if args.baseline is not None and args.baseline not in args.inits:
        raise ValueError(f"--baseline {args.baseline!r} must be one of --inits "
                         f"({' '.join(args.inits)})")
    if not 0 < args.target < 100:
        raise ValueError(f"--target is a top-1 in percent, in (0, 100); got {args.target}")
    started = time.perf_counter()
    eval_split = "val" if args.split == "val" else "test"
    train = first_items(load_images(args.data, "train", args.data_root), args.train_images)
    evaluation = first_items(load_images(args.data, eval_split, args.data_root), args.eval_images)
    path = run_qat_study(args.archs, args.inits, train, evaluation, args.out, args.bits,
                         args.epochs, args.lr, args.batch_size, args.seed, split=args.split)
    table = qat_table(path, args.target / 100, args.reference)
    if args.baseline is not None:
        table += ("\n\nPaired difference to the baseline (points, mean ± standard error over "
                  "architectures; in brackets: architectures where the start is higher)\n\n"
                  + qat_differences(path, args.baseline))
    print(table)
    report = path.with_name("qat.md")
    with atomic_path(report) as tmp:
        tmp.write_text(f"QAT at W{args.bits}A{args.bits}, {args.split} architectures, "
                       f"{eval_split} images: mean top-1 (%)\n\n{table}\n")
    figure = plot_qat_curves(path, path.with_name("qat_curves.png"), args.target / 100)
    written = [path, report, *([figure] if figure else [])]
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


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``init-study``, ``qat-study`` and ``qat`` (each with its handler)."""
    study = sub.add_parser(
        "init-study", help="initializers vs quantization robustness across block families",
        description="For each block family x initializer x seed: initialise, train in float on "
                    "Fashion-MNIST, then quantize post-training (W8A8, W4A4, W2A2, W8 weights "
                    "only). Resumable: finished runs in OUT/runs.csv are skipped.")
    study.add_argument("--preset", choices=("smoke", "full"), default="smoke")
    study.add_argument("--families", nargs="+", default=None, help="override the preset's")
    study.add_argument("--inits", nargs="+", default=None, help="override the preset's")
    study.add_argument("--seeds", type=int, default=None)
    study.add_argument("--epochs", type=int, default=None)
    study.add_argument("--qat-archs", type=int, default=None,
                       help="unseen efficient test architectures trained with QAT from each "
                            "start (0 skips; default: the preset's)")
    study.add_argument("--qat-inits", nargs="+", default=None, help="QAT starting points")
    study.add_argument("--qat-epochs", type=int, default=None)
    study.add_argument("--qat-bits", type=int, default=None)
    study.add_argument("--data", default="fashion-mnist", help="fashion-mnist or synthetic")
    study.add_argument("--data-root", default=None)
    study.add_argument("--out", default="results/init-study")
    study.set_defaults(handler=cmd_init_study)

    qat_study = sub.add_parser(
        "qat-study", help="QAT of many unseen architectures from each starting point",
        description="QAT of the first ARCHS architectures of a split of the efficient space "
                    "from every starting point in --inits; top-1 per epoch in OUT/qat.csv, "
                    "the mean table in OUT/qat.md and the curves in OUT/qat_curves.png. "
                    "--split val evaluates on validation images (to choose a recipe); other "
                    "splits on test images. Resumable: finished (architecture, start) pairs "
                    "are skipped.")
    qat_study.add_argument("--archs", type=int, default=20, help="number of architectures")
    qat_study.add_argument("--split", default="val",
                           help="val (default), test, wide, deep or nobn architectures")
    qat_study.add_argument("--inits", nargs="+", default=["ghn-qat", "ghn", "he_normal"],
                           help="starting points (as qat --init)")
    qat_study.add_argument("--bits", type=int, default=4, help="weight and activation bits")
    qat_study.add_argument("--epochs", type=int, default=3)
    qat_study.add_argument("--lr", type=float, default=0.05)
    qat_study.add_argument("--batch-size", type=int, default=128)
    qat_study.add_argument("--seed", type=int, default=0)
    qat_study.add_argument("--train-images", type=int, default=6000,
                           help="training images per run (the init study's)")
    qat_study.add_argument("--eval-images", type=int, default=2000,
                           help="validation (or test) images scored after every epoch")
    qat_study.add_argument("--target", type=float, default=75.0,
                           help="report the epochs to reach this top-1 (%%)")
    qat_study.add_argument("--reference", default="he_normal",
                           help="report the epochs to reach this start's final top-1")
    qat_study.add_argument("--baseline", default=None,
                           help="also tabulate every start's per-architecture difference to "
                                "this one (an A/B)")
    qat_study.add_argument("--data", default="fashion-mnist", help="fashion-mnist or synthetic")
    qat_study.add_argument("--data-root", default=None)
    qat_study.add_argument("--out", default="results/qat-study")
    qat_study.set_defaults(handler=cmd_qat_study)

    qat = sub.add_parser(
        "qat", help="quantization-aware training of one CNN from a chosen initialization",
        description="Initialise a network (a random initializer, or the shipped GHN / GHN-QAT's "
                    "prediction for the target bits), then train it with its conv and linear "
                    "layers fake-quantized, printing test top-1 before training and after "
                    "every epoch. Writes OUT/qat.csv and OUT/model.pt.")
    source = qat.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="torchvision:NAME or package.module:factory")
    source.add_argument("--spec", help="JSON file of an architecture-space spec")
    qat.add_argument("--init", default="ghn-qat-he-scale",
                     help="ghn-qat-he-scale (default: GHN-QAT's prediction rescaled ahead of "
                          "BN, chosen on validation architectures), ghn-qat, ghn, "
                          "ghn-he-scale, or a ghn_pyg.inits name (he, default, orthogonal, ...)")
    qat.add_argument("--bits", type=int, default=4, help="weight and activation bits (2..8)")
    qat.add_argument("--epochs", type=int, default=3)
    qat.add_argument("--first-last-8bit", action="store_true")
    qat.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (cosine schedule)")
    qat.add_argument("--batch-size", type=int, default=128)
    qat.add_argument("--target", type=float, default=None,
                     help="report the first epoch reaching this top-1 (%%)")
    qat.add_argument("--data", default="fashion-mnist", help="fashion-mnist, cifar10 or synthetic")
    qat.add_argument("--data-root", default=None)
    qat.add_argument("--max-train-images", type=int, default=None)
    qat.add_argument("--max-test-images", type=int, default=None)
    qat.add_argument("--seed", type=int, default=0)
    qat.add_argument("--device", default="cpu")
    qat.add_argument("--out", default="results/qat", help="output folder")
    qat.set_defaults(handler=cmd_qat)

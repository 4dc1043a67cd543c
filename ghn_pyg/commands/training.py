"""Commands about GHNs: ``train``, ``eval``, ``predict``, ``demo``."""

from __future__ import annotations

import argparse

__all__ = ["cmd_train", "cmd_eval", "cmd_predict", "cmd_demo", "DEMO_TORCHVISION"]

DEMO_TORCHVISION = ("resnet18", "mobilenet_v2")


def cmd_train(args: argparse.Namespace) -> int:
    from ..fileio import user_path
    from ..train import Trainer, load_config, load_train_checkpoint
    from ..train.config import TrainConfig, config_from_args, given_settings, resume_config
    from ..train.distributed import barrier, teardown

    if args.resume and args.overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it; "
                         "give one of them")
    base = load_config(args.config) if args.config else {}
    if args.resume:  # the run's own settings, changed only where a resumed run may change
        changes = {**base, **given_settings(args)}
        out = user_path(changes.get("out", TrainConfig.out))
        saved = load_train_checkpoint(out / "last.pt")["config"]
        config = resume_config(saved, changes, str(out / "last.pt"))
    else:
        config = config_from_args(args, base)
    try:
        trainer = Trainer(config, resume=args.resume, overwrite=args.overwrite)
        metrics = trainer.train()
        # Every rank finishes before any leaves: a rank tearing its gloo connections down
        # while a peer still uses them aborts the peer at exit.
        barrier(trainer.world)
    finally:
        teardown()
    if trainer.rank == 0:
        print("finished: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in metrics.items()))
    return 0


def _checkpoint_settings(path: str) -> dict:
    """The training settings stored in a training checkpoint ({} for a plain GHN file)."""
    from ..formats import CheckpointError
    from ..train import load_train_checkpoint

    try:
        return load_train_checkpoint(path)["config"]
    except CheckpointError:
        return {}


def cmd_eval(args: argparse.Namespace) -> int:
    import warnings as _warnings

    from ..data import ArchGraphDataset, load_images
    from ..nn import GHN
    from ..train.tables import markdown_summary, write_results

    ghns, trained = {}, {}
    for i, item in enumerate(args.ckpt):
        name, sep, path = item.partition("=")
        if not sep:
            name, path = ("GHN" if len(args.ckpt) == 1 else f"GHN{i + 1}"), item
        ghns[name] = GHN.load_any(path)
        trained[name] = _checkpoint_settings(path)
    first = next(iter(trained.values()))
    bits = [int(b) for b in args.bits.split(",")]
    for name, ghn in ghns.items():
        unseen = sorted(set(bits) - set(ghn.trained_bits or bits))
        if unseen:
            _warnings.warn(f"{name} was trained with bits {list(ghn.trained_bits)}; evaluating "
                           f"{unseen}: it predicts as for the nearest trained bit-width, and "
                           "those parameters are quantized")
    in_shape = tuple(args.in_shape or first.get("in_shape", (1, 28, 28)))
    space = args.space or first.get("space", "efficient")
    if first and space != first.get("space"):
        _warnings.warn(f"evaluating on space {space!r}; the GHN was trained on {first.get('space')!r}")
    archs = ArchGraphDataset(args.graphs or first.get("graphs", "graphs/efficient-fmnist"),
                             space, args.split, args.size,
                             args.graph_seed if args.graph_seed is not None else first.get("graph_seed", 0),
                             in_shape, args.num_classes or first.get("num_classes", 10))
    images = load_images(args.data or first.get("data", "fashion-mnist"), "test",
                         args.data_root or first.get("data_root"), synthetic_shape=in_shape)
    if tuple(images.shape) != in_shape:
        raise ValueError(f"test images are {images.shape}, architectures take {in_shape}")
    from ..cli import protocol_from_args
    from ..train.evaluate import evaluate_split

    protocol = protocol_from_args(args)
    train_images = None
    if args.sgd_epochs > 0 or protocol.needs_training_images:
        from ..data import first_items

        train_images = load_images(args.data or first.get("data", "fashion-mnist"), "train",
                                   args.data_root or first.get("data_root"),
                                   synthetic_shape=in_shape)
        if args.max_train_images is not None:
            train_images = first_items(train_images, args.max_train_images)
    rows = evaluate_split(archs, images, ghns, bits, args.baselines.split(","), args.max_archs,
                          args.max_images, args.batch_size, args.seed, args.device,
                          sgd_epochs=args.sgd_epochs, train_images=train_images,
                          protocol=protocol, per_channel=not args.per_tensor,
                          first_last_8bit=args.first_last_8bit)
    title = (f"{space}/{args.split}: {len({r.arch for r in rows})} architectures, top-1 (%); "
             f"{protocol.describe()}")
    paths = write_results(rows, args.out, title)
    print(title)
    print(markdown_summary(rows))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from ..fileio import atomic_path
    from ..nn import GHN
    from ..quant import QuantSpec
    from .networks import network_from_args

    settings = _checkpoint_settings(args.ckpt)
    ghn = GHN.load_any(args.ckpt)
    in_shape = tuple(settings.get("in_shape", (3, 32, 32)))
    shape = args.input_shape or (1, *in_shape)
    classes = args.num_classes or settings.get("num_classes", 10)
    model = network_from_args(args.model, args.spec, shape, classes,
                              adapt=args.input_shape is None)
    spec_bits = QuantSpec.uniform(args.bits, first_last_8bit=args.first_last_8bit)
    params = ghn.predict(model, shape, spec_bits)
    with atomic_path(args.out) as tmp:
        torch.save(params, tmp)
    total = sum(p.numel() for p in params.values())
    print(f"predicted {len(params)} tensors ({total} parameters) at {args.bits} bits -> {args.out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..cli import protocol_from_args
    from ..data import load_images, split_models
    from ..nn import GHN
    from ..spaces import TorchvisionSpace
    from ..graph.bits import EVAL_BITS
    from ..train.evaluate import ModuleArchs, evaluate_split
    from ..train.tables import markdown_summary, write_results

    ghns = {"GHN (float)": GHN.from_pretrained("ghn-fmnist"),
            "GHN-QAT": GHN.from_pretrained("ghn-qat-fmnist")}
    images = load_images("fashion-mnist", "test", args.data_root)
    zoo = TorchvisionSpace()
    models = split_models(args.archs, 1, 10)
    names = DEMO_TORCHVISION if args.torchvision is None else tuple(args.torchvision)
    models += [(name, zoo.build({"space": "torchvision", "name": name}, 1, 10)) for name in names]
    archs = ModuleArchs(models, (1, 28, 28))
    protocol = protocol_from_args(args)
    train_images = load_images("fashion-mnist", "train", args.data_root)
    rows = evaluate_split(archs, images, ghns, EVAL_BITS, ("he",), max_images=args.max_images,
                          train_images=train_images, protocol=protocol,
                          per_channel=not args.per_tensor, first_last_8bit=args.first_last_8bit)
    unseen = [r for r in rows if r.arch.startswith("efficient-test")]
    title = (f"{args.archs} unseen efficient test architectures, Fashion-MNIST "
             f"(the first {min(args.max_images, len(images))} of {len(images)} test images), "
             f"top-1 % (mean ± standard error); {protocol.describe()}")
    paths = write_results(unseen, args.out, title,
                          plot_title=f"{args.archs} unseen efficient test architectures, "
                                     f"protocol {protocol.name}")
    print(title)
    print(markdown_summary(unseen))
    for name in names:
        print(f"\n{name} (1x28x28, 10 classes), top-1 %")
        print(markdown_summary([r for r in rows if r.arch == name]))
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    return 0

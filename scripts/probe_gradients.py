"""Where a quantized network's gradient grows: per-layer gradient norms of predicted
parameters, with the batch-norm and activation statistics that explain them.

For each architecture and bit-width, a GHN predicts the parameters (at the graph's
bits), the network runs fake-quantized on one batch of training images with BN on batch
statistics (as in GHN-QAT training), and the cross-entropy is backpropagated. Prints,
per conv/linear layer (in forward order): the gradient norm of its predicted weight,
the share of its quantized input that is exactly zero, and, for the batch norm after
it, the smallest channel variance and the number of channels collapsed to a constant
(variance <= eps). Then the GHN's own gradient norm. ``--guard`` switches on the
collapse guard (:meth:`QuantizedModel.set_collapse_guard`).

    python scripts/probe_gradients.py --archs 1 --bits 8,2            # one network
    python scripts/probe_gradients.py --archs 0-7 --bits 8,2 --summary  # GHN grads only
"""

from __future__ import annotations

import argparse
import random
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ghn_pyg.data import ArchGraphDataset, load_images  # noqa: E402
from ghn_pyg.data.images import image_tensors  # noqa: E402
from ghn_pyg.nn import GHN  # noqa: E402
from ghn_pyg.nn.ghn import PRETRAINED_DIR  # noqa: E402
from ghn_pyg.quant import quantize  # noqa: E402
from ghn_pyg.quant.layers import BatchNormRunner  # noqa: E402
from ghn_pyg.report import markdown_table  # noqa: E402
from ghn_pyg.train.sampling import draw_bits  # noqa: E402


def arch_range(text: str) -> list[int]:
    """``"3"`` or ``"0-7"`` -> indices."""
    first, _, last = text.partition("-")
    try:
        return list(range(int(first), int(last or first) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--archs takes N or A-B, got {text!r}") from None


def probe(ghn: GHN, archs: ArchGraphDataset, idx: int, bits: int, images: torch.Tensor,
          labels: torch.Tensor, guard: bool) -> tuple[float, float, list[list]]:
    """``(loss, GHN gradient norm, per-layer rows)`` of network ``idx`` at ``bits``."""
    graph = draw_bits(archs[idx], () if bits == 32 else (bits,), random.Random(0))
    runner = quantize(archs.build_module(idx), None, (1, *archs.in_shape), bn="batch")
    runner.set_bits(graph).set_collapse_guard(guard)
    zeros: dict[str, float] = {}
    norms: dict[str, tuple[float, int]] = {}
    hooks = []
    for name, layer in runner.layers.items():
        def on_layer(module, inputs, output, name=name):
            quantized = module.act_quant(inputs[0].detach())
            zeros[name] = float((quantized == 0).float().mean())
        hooks.append(layer.register_forward_hook(on_layer))
    for name, sub in runner.module.named_modules():
        if isinstance(sub, BatchNormRunner):
            def on_norm(module, inputs, output, name=name):
                x = inputs[0].detach()
                var = x.var([d for d in range(x.dim()) if d != 1], unbiased=False)
                norms[name.rsplit(".", 1)[0]] = (float(var.min()), int((var <= module._bn[0].eps).sum()))
            hooks.append(sub.register_forward_hook(on_norm))
    ghn.zero_grad()
    params = ghn(graph)[0]
    for tensor in params.values():
        tensor.retain_grad()
    loss = F.cross_entropy(runner(images, params), labels)
    loss.backward()
    for hook in hooks:
        hook.remove()
    ghn_norm = float(torch.sqrt(sum(p.grad.pow(2).sum() for p in ghn.parameters()
                                    if p.grad is not None)))
    rows = []
    for name in runner.layers:
        grad = params[f"{name}.weight"].grad
        block = name.rsplit(".", 1)[0]
        min_var, collapsed = norms.get(block, (float("nan"), 0))
        rows.append([name, f"{float(grad.norm()):.3g}", f"{100 * zeros.get(name, 0):.1f}",
                     f"{min_var:.2e}", collapsed])
    return loss.item(), ghn_norm, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ghn", default=str(PRETRAINED_DIR / "ghn-fmnist.pt"))
    parser.add_argument("--graphs", default="graphs/efficient-fmnist-10k",
                        help="architecture dataset (efficient space, train split; built if missing)")
    parser.add_argument("--num-archs", type=int, default=10000)
    parser.add_argument("--archs", type=arch_range, default=[1], help="N or A-B")
    parser.add_argument("--bits", default="8,2")
    parser.add_argument("--images", type=int, default=64, help="training images in the batch")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--guard", action="store_true", help="collapse guard on")
    parser.add_argument("--summary", action="store_true", help="one line per network and bits")
    args = parser.parse_args(argv)
    bits = [int(b) for b in args.bits.split(",")]
    ghn = GHN.load(args.ghn)  # a float GHN predicts its float parameters at any bits
    archs = ArchGraphDataset(Path(args.graphs), "efficient", "train", size=args.num_archs,
                             in_shape=(1, 28, 28), num_classes=10)
    train = load_images("fashion-mnist", "train", args.data_root)
    images, labels = image_tensors(train, list(range(args.images)))
    summary = []
    for idx in args.archs:
        for b in bits:
            loss, ghn_norm, rows = probe(ghn, archs, idx, b, images, labels, args.guard)
            summary.append([archs[idx].name, b, f"{loss:.2f}", f"{ghn_norm:.3g}"])
            if not args.summary:
                print(f"\n{archs[idx].name} at {b} bits: loss {loss:.2f}, GHN gradient norm "
                      f"{ghn_norm:.3g}\n")
                print(markdown_table(["layer", "weight grad", "input zeros %", "BN min var",
                                      "BN collapsed"], rows))
    print("\n" + markdown_table(["network", "bits", "loss", "GHN grad norm"], summary))


if __name__ == "__main__":
    main()

"""Check the CUDA code paths against the CPU ones (run on a machine with a GPU).

* GHN predictions on CUDA equal those on the CPU, and so do the GHN's gradients
  through the custom sweep backward and the tiling backward;
* a GHN forward + backward under bfloat16 autocast (``--amp``) gives finite gradients;
* a CUDA-graph replay of the GatedGNN forward equals the eager forward;
* the fake-quant runner's loss and gradients on CUDA equal the CPU's at 32 bits; at 8
  and 4 bits the CPU-CUDA difference is printed only (a last-bit float difference flips
  roundings that 53 low-bit layers amplify; the loss change a 1e-6 relative nudge of
  the parameters causes on the CPU is printed beside it), and the fused fake-quant
  kernels used on CUDA must equal the five-op path on the same device.

TF32 is turned off so that CUDA convolutions and matmuls compute in full float32.

    python scripts/check_cuda.py
"""

from __future__ import annotations

import copy
import sys
import warnings

import torch

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from torch_geometric.data import Batch  # noqa: E402

from ghn_pyg import GHN, QuantSpec, trace  # noqa: E402
from ghn_pyg.quant import fakequant, quantize  # noqa: E402
from ghn_pyg.spaces import build_torchvision  # noqa: E402


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k].cpu() - b[k].cpu()).abs().max()) for k in a)


def runner_loss_and_grads(model: torch.nn.Module, bits: int, images: torch.Tensor,
                          labels: torch.Tensor, device: str, nudge: float = 0.0
                          ) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and parameter gradients of ``model`` run fake-quantized at ``bits`` on
    ``device`` with its own parameters (times ``1 + nudge * noise``) supplied."""
    m = copy.deepcopy(model).to(device)
    generator = torch.Generator().manual_seed(1)
    params = {k: (v.detach() * (1 + nudge * torch.randn(v.shape, generator=generator)
                                .to(device))).requires_grad_()
              for k, v in m.named_parameters()}
    runner = quantize(m, QuantSpec.uniform(bits), bn="batch")
    loss = torch.nn.functional.cross_entropy(runner(images.to(device), params), labels.to(device))
    loss.backward()
    return loss.item(), {k: p.grad for k, p in params.items()}


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device; nothing to check")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    failures = []
    torch.manual_seed(0)
    graphs = [trace(build_torchvision(n), name=n) for n in ("resnet18", "mobilenet_v2", "densenet121")]
    batch = Batch.from_data_list(graphs)
    ghn = GHN(hid=32).eval()
    with torch.no_grad():
        cpu = ghn(batch)
        gpu = copy.deepcopy(ghn).cuda()(batch.to("cuda"))
    diff = max(max_diff(a, b) for a, b in zip(cpu, gpu))
    print(f"GHN CPU vs CUDA, max abs difference: {diff:.2e}")
    if diff > 1e-4:
        failures.append("GHN predictions differ between CPU and CUDA")

    grads = {}
    for device in ("cpu", "cuda"):
        model = copy.deepcopy(ghn).to(device)
        predicted = model(batch.to(device))
        # a fixed, non-uniform weighting of every predicted entry
        loss = sum((v.float().flatten().sin() * torch.linspace(-1, 1, v.numel(), device=device))
                   .sum() for p in predicted for v in p.values())
        loss.backward()
        grads[device] = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    diff = max_diff(grads["cpu"], grads["cuda"])
    scale = max(float(g.abs().max()) for g in grads["cpu"].values())
    print(f"GHN gradients CPU vs CUDA, max abs difference: {diff:.2e} (largest gradient "
          f"{scale:.2e})")
    if len(grads["cpu"]) != len(grads["cuda"]) or diff > 1e-4 * max(scale, 1.0):
        failures.append("GHN gradients differ between CPU and CUDA")

    model = copy.deepcopy(ghn).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        predicted = model(batch.to("cuda"))
        loss = sum(v.float().square().mean() for p in predicted for v in p.values())
    loss.backward()
    finite = all(p.grad is not None and bool(torch.isfinite(p.grad).all())
                 for p in model.parameters())
    print(f"GHN under bfloat16 autocast: loss {loss.item():.4f}, finite gradients: {finite}")
    if not finite:
        failures.append("non-finite or missing GHN gradients under bfloat16 autocast")

    ghn_gpu = copy.deepcopy(ghn).cuda()
    batch_gpu = batch.to("cuda")
    with torch.no_grad():
        x = ghn_gpu.encoder(batch_gpu)
        schedules = ghn_gpu.gnn.schedules(batch_gpu)
        eager = ghn_gpu.gnn(x, batch_gpu, schedules=schedules)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            ghn_gpu.gnn(x, batch_gpu, schedules=schedules)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static = ghn_gpu.gnn(x, batch_gpu, schedules=schedules)
        graph.replay()
        torch.cuda.synchronize()
    diff = float((static - eager).abs().max())
    print(f"GatedGNN CUDA graph replay vs eager, max abs difference: {diff:.2e}")
    if diff > 1e-5:
        failures.append("CUDA graph replay differs from eager")

    model = build_torchvision("mobilenet_v2", num_classes=10)
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    torch.backends.cudnn.deterministic = True
    for bits in (32, 8, 4):
        cpu = runner_loss_and_grads(model, bits, images, labels, "cpu")
        gpu = runner_loss_and_grads(model, bits, images, labels, "cuda")
        loss_diff, grad_diff = abs(cpu[0] - gpu[0]), max_diff(cpu[1], gpu[1])
        print(f"W{bits}A{bits} runner CPU vs CUDA: loss difference {loss_diff:.2e}, "
              f"max grad difference {grad_diff:.2e}")
        if bits == 32:
            if loss_diff > 1e-4:
                failures.append("the float runner differs between CPU and CUDA")
            continue
        # low-bit losses of a random mobilenet_v2 are chaotic (a rounding flip in one of
        # 53 layers moves them): show how much a 1e-6 relative change of the parameters
        # moves the CPU loss, and check the fused CUDA kernels against the five-op path
        # on the same device, where results must agree
        nudged = runner_loss_and_grads(model, bits, images, labels, "cpu", nudge=1e-6)
        print(f"  (CPU loss moved by {abs(nudged[0] - cpu[0]):.2e} by a 1e-6 relative "
              "change of the parameters)")
        fakequant.FUSED_KERNELS = "never"
        try:
            unfused = runner_loss_and_grads(model, bits, images, labels, "cuda")
        finally:
            fakequant.FUSED_KERNELS = "accelerator"
        loss_diff, grad_diff = abs(unfused[0] - gpu[0]), max_diff(unfused[1], gpu[1])
        scale = max(float(g.abs().max()) for g in unfused[1].values())
        print(f"W{bits}A{bits} runner on CUDA, fused kernels vs the five-op path: loss "
              f"difference {loss_diff:.2e}, max grad difference {grad_diff:.2e} (largest "
              f"gradient {scale:.2e})")
        if loss_diff > 1e-5 or grad_diff > 1e-4 * max(scale, 1.0):
            failures.append(f"fused fake-quant kernels differ from the five-op path at {bits} "
                            "bits on CUDA")
    print("FAILED: " + "; ".join(failures) if failures else "all CUDA checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Running an exported ONNX model in ONNX Runtime and comparing it with the fake-quant
runner it was exported from."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor

__all__ = ["onnx_session", "onnx_logits", "Agreement", "compare_outputs"]


def onnx_session(path: str | os.PathLike, threads: int | None = None, qdq_fusions: bool = True,
                 optimize: bool = True):
    """An ONNX Runtime CPU ``InferenceSession`` of ``path``.

    Args:
        path: an ``.onnx`` file.
        threads: intra-op threads (default: ONNX Runtime's choice).
        qdq_fusions: let ONNX Runtime fuse QuantizeLinear/DequantizeLinear with the ops
            between them into integer kernels (its default). Off, it folds the weights'
            DequantizeLinear into constants and runs float kernels on the same integers
            and scales, faster for networks whose convolutions are not directly followed
            by a quantizer (README, "ONNX export").
        optimize: ONNX Runtime's graph optimizations (its default). Off, it runs the
            graph as written: the fake-quant runner's results to float rounding (on
            mobilenet_v2 at W8A8, 99.89% of test images get the same top-1 against
            94.08% with the optimizations; ``scripts/onnx_check.py``), more slowly.

    Raises:
        ImportError: onnxruntime is not installed (``pip install ghn_pyg[export]``).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    if not qdq_fusions:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(session, images: Tensor) -> Tensor:
    """``session``'s output for a batch ``images`` [B, C, H, W] (float32 on the CPU)."""
    name = session.get_inputs()[0].name
    out = session.run(None, {name: images.detach().float().cpu().numpy()})[0]
    return torch.from_numpy(out)


@dataclass(frozen=True)
class Agreement:
    """How two models' outputs compare on the same images.

    Attributes:
        images: how many were compared.
        same_top1: the fraction with the same top-1 class.
        accuracy_a, accuracy_b: each model's top-1 accuracy (fractions).
        max_logit_diff: the largest absolute difference of a logit.
        mean_logit_diff: the mean absolute difference.
    """

    images: int
    same_top1: float
    accuracy_a: float
    accuracy_b: float
    max_logit_diff: float
    mean_logit_diff: float


@torch.no_grad()
def compare_outputs(model_a: Callable[[Tensor], Tensor], model_b: Callable[[Tensor], Tensor],
                    batches: Iterable[Sequence[Tensor]]) -> Agreement:
    """Compare two models on ``(images, labels)`` batches (both called on CPU tensors).

    Raises:
        ValueError: no images.
    """
    count = same = hits_a = hits_b = 0
    max_diff, diff_sum, logits = 0.0, 0.0, 0
    for images, labels in batches:
        a, b = model_a(images).float(), model_b(images).float()
        pred_a, pred_b = a.argmax(1), b.argmax(1)
        count += len(labels)
        same += int((pred_a == pred_b).sum())
        hits_a += int((pred_a == labels).sum())
        hits_b += int((pred_b == labels).sum())
        diff = (a - b).abs()
        max_diff = max(max_diff, float(diff.max()))
        diff_sum += float(diff.sum())
        logits += diff.numel()
    if count == 0:
        raise ValueError("compare_outputs got no images")
    return Agreement(count, same / count, hits_a / count, hits_b / count, max_diff,
                     diff_sum / logits)

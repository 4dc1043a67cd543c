r"""Node encoder: op, shape, activation and bit-width embeddings of ArchGraph nodes."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..graph.ops import ACTIVATIONS, PRIMITIVES
from ..graph.bits import VALID_BITS

__all__ = ["NodeEncoder", "CHANNEL_BINS", "KERNEL_BINS", "STRIDE_BINS", "BIT_BINS", "nearest_bin"]

#: Channel counts the shape encoder distinguishes; others snap to the nearest (in log2).
CHANNEL_BINS: tuple[int, ...] = (0, 1, 2, 3, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256,
                                 384, 512, 768, 1024, 1536, 2048, 4096)
#: Kernel sizes; others snap to the nearest.
KERNEL_BINS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 7, 9, 11)
#: Strides; others snap to the nearest.
STRIDE_BINS: tuple[int, ...] = (1, 2, 4)
#: Bit-widths, in the order of the bit embeddings.
BIT_BINS: tuple[int, ...] = tuple(sorted(VALID_BITS))


def nearest_bin(values: Tensor, bins: Tensor, log: bool = False) -> Tensor:
    """Index of the nearest bin of every value.

    Args:
        values: [N] integers.
        bins: [B] sorted integers.
        log: compare ``log2(1 + value)``, so channel counts snap proportionally.

    Returns:
        [N] long indices into ``bins``.
    """
    v, b = values.to(torch.float32), bins.to(torch.float32)
    if log:
        v, b = torch.log2(1 + v.clamp_min(0)), torch.log2(1 + b)
    return (v.unsqueeze(1) - b.unsqueeze(0)).abs().argmin(dim=1)


class NodeEncoder(nn.Module):
    r"""Embeds each node as a sum of learned embeddings,

    .. math::
        x_v = E_{op}[o_v] + E_{act}[a_v] + E_{out}[c^{out}_v] + E_{in}[c^{in}_v]
              + E_{k}[k^h_v] + E_{k}'[k^w_v] + E_{stride}[s_v]
              + E_{w}[b^w_v] + E_{a}[b^a_v],

    where channel and kernel sizes are binned (:data:`CHANNEL_BINS`,
    :data:`KERNEL_BINS`; unseen sizes snap to the nearest bin) and :math:`b^w, b^a`
    are the weight and activation bit-widths, so changing only a graph's bits changes
    its embedding. Once :meth:`set_trained_bits` has recorded the bit-widths a GHN was
    trained with, other bit-widths snap to the nearest of those before embedding: a
    float-trained GHN (trained bits ``(32,)``) then predicts its float parameters for
    any bits, which is what "quantizing a float GHN's predictions" means, instead of
    reading embeddings that training never reached.

    Args:
        hid: embedding size.
        num_ops: op vocabulary size (default: the current ``len(PRIMITIVES)``).
        num_acts: activation vocabulary size (default: ``len(ACTIVATIONS)``).

    Shapes:
        input: a Batch with ``op``, ``act``, ``shape``, ``stride``, ``w_bits``,
        ``a_bits`` (N nodes); output: [N, hid].
    """

    def __init__(self, hid: int, num_ops: int | None = None, num_acts: int | None = None) -> None:
        super().__init__()
        self.num_ops = num_ops or len(PRIMITIVES)
        self.num_acts = num_acts or len(ACTIVATIONS)
        self.op = nn.Embedding(self.num_ops, hid)
        self.act = nn.Embedding(self.num_acts, hid)
        self.out_channels = nn.Embedding(len(CHANNEL_BINS), hid)
        self.in_channels = nn.Embedding(len(CHANNEL_BINS), hid)
        self.kernel_h = nn.Embedding(len(KERNEL_BINS), hid)
        self.kernel_w = nn.Embedding(len(KERNEL_BINS), hid)
        self.stride = nn.Embedding(len(STRIDE_BINS), hid)
        self.w_bits = nn.Embedding(len(BIT_BINS), hid)
        self.a_bits = nn.Embedding(len(BIT_BINS), hid)
        for name, bins in (("channel_bins", CHANNEL_BINS), ("kernel_bins", KERNEL_BINS),
                           ("stride_bins", STRIDE_BINS), ("bit_bins", BIT_BINS)):
            self.register_buffer(name, torch.tensor(bins), persistent=False)
        self.register_buffer("known_bits", torch.tensor(BIT_BINS), persistent=False)
        self.trained_bits: tuple[int, ...] | None = None
        self.reset_parameters()

    def set_trained_bits(self, bits: Sequence[int] | None) -> None:
        """Record the bit-widths training showed this encoder (``None``: trust them all).

        Raises:
            ValueError: a bit-width outside :data:`BIT_BINS`, or an empty set.
        """
        if bits is None:
            self.trained_bits = None
            known = BIT_BINS
        else:
            known = tuple(sorted({int(b) for b in bits}))
            bad = [b for b in known if b not in BIT_BINS]
            if bad or not known:
                raise ValueError(f"trained bits {list(bits)!r}: each must be one of {BIT_BINS}")
            self.trained_bits = known
        self.known_bits = torch.tensor(known, device=self.bit_bins.device)

    @torch.no_grad()
    def seed_untrained_bits(self) -> tuple[int, ...]:
        """Copy into every bit-width row training never reached the row of the nearest
        trained bit-width (in both the weight and the activation table).

        A GHN snaps untrained bit-widths to the nearest trained one before embedding,
        so after this copy the encoder embeds every graph exactly as before, but the
        copied rows are now separate parameters that further training (e.g. GHN-QAT
        from a float GHN) can move. Call it before recording the new trained bits.

        Returns:
            The bit-widths whose rows were overwritten (empty when the trained bits
            are not recorded: then every row is trusted as it is).
        """
        if self.trained_bits is None:
            return ()
        bins = self.bit_bins.tolist()
        source = self._bit_index(self.bit_bins).tolist()
        seeded = tuple(b for i, b in enumerate(bins) if source[i] != i)
        for table in (self.w_bits, self.a_bits):
            table.weight.copy_(table.weight[source])
        return seeded

    def _bit_index(self, bits: Tensor) -> Tensor:
        """Bin index of each bit-width after snapping to the nearest trained one."""
        snapped = self.known_bits[nearest_bin(bits, self.known_bits)]
        return nearest_bin(snapped, self.bit_bins)

    def reset_parameters(self) -> None:
        """Normal(0, 1/sqrt(9)) embeddings, so their sum has unit variance."""
        for module in self.children():
            nn.init.normal_(module.weight, std=1.0 / 3.0)

    def forward(self, graph: Any) -> Tensor:
        """Embed every node of ``graph``: [N, hid]."""
        for field, table in (("op", self.op), ("act", self.act)):
            ids = getattr(graph, field)
            if ids.numel() and int(ids.max()) >= table.num_embeddings:
                raise ValueError(
                    f"graph uses {field} id {int(ids.max())} but this GHN knows "
                    f"{table.num_embeddings}; ops or activations registered after the GHN was "
                    "built need a new GHN")
        shape = graph.shape
        x = self.op(graph.op) + self.act(graph.act)
        x = x + self.out_channels(nearest_bin(shape[:, 0], self.channel_bins, log=True))
        x = x + self.in_channels(nearest_bin(shape[:, 1], self.channel_bins, log=True))
        x = x + self.kernel_h(nearest_bin(shape[:, 2], self.kernel_bins))
        x = x + self.kernel_w(nearest_bin(shape[:, 3], self.kernel_bins))
        x = x + self.stride(nearest_bin(graph.stride, self.stride_bins))
        x = x + self.w_bits(self._bit_index(graph.w_bits))
        return x + self.a_bits(self._bit_index(graph.a_bits))

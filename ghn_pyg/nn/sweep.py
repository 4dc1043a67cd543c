r"""One GatedGNN sweep as a custom autograd function with a hand-written backward.

A sweep visits the levels of a :class:`~ghn_pyg.nn.schedule.SweepSchedule` in order.
For the rows :math:`\ell` of a level (nodes sorted by level), with the hidden-side GRU
gates :math:`g^h = W_{hh} h + b_{hh}` precomputed for all nodes:

.. math::
    G_\ell &= P_\ell + C_\ell\, S, \qquad
        P = [\,b_{ih}^{rz} + g^{h,rz},\ b_{ih}^{n}\,] \\
    r, z &= \sigma(G_\ell^{rz}), \qquad
        \tilde n = \tanh(G_\ell^{n} + r \odot g^{h,n}_\ell), \qquad
        h'_\ell = \tilde n + z \odot (h_\ell - \tilde n) \\
    A_\ell &= \mathrm{ReLU}(W_1 h'_\ell + b_1), \qquad
        S_{\ell} \leftarrow A_\ell W_g + b_g

where :math:`S` stores, per updated node, the GRU input gates of its two message terms
(:class:`~ghn_pyg.nn.gatedgnn.GatedGNN` folds the MLPs' last layers into
:math:`W_{ih}`) and :math:`C` holds the message coefficients. When the message MLPs end
with a ReLU (as in GHN-2's reference code), nothing folds: the store is
:math:`S_\ell \leftarrow M_\ell W_g` with :math:`M_\ell = \mathrm{ReLU}(A_\ell W_2 + b_2)`
and :math:`W_g` the block-diagonal :math:`W_{ih}^\top`.

Autograd over this loop records a dozen nodes per level, and each slice of the store
allocates a full-size gradient in backward. Here the forward runs without autograd,
writing into preallocated buffers, and the backward walks the levels in reverse with
five small ops per level. Everything that does not feed the recursion is computed
once for all nodes: with :math:`\delta_\ell = \partial L / \partial h'_\ell`,

.. math::
    \frac{\partial L}{\partial G_\ell} = [\delta_\ell, \delta_\ell, \delta_\ell] \odot K_\ell,
    \quad K = [\,(1-z)(1-\tilde n^2)\, g^{h,n}\, r(1-r),\ (h-\tilde n)\, z(1-z),\
    (1-z)(1-\tilde n^2)\,]

and :math:`\delta_\ell = \partial L/\partial h'_\ell|_{\text{output}} + W_1^\top
[\,(W_g \,\partial L/\partial S_\ell) \odot 1_{A_\ell > 0}\,]` (with the second layer,
:math:`W_g \partial L/\partial S_\ell` passes first through :math:`1_{M_\ell > 0}` and
:math:`W_2`), where
:math:`\partial L/\partial S_\ell = C_{>\ell}^\top\, \partial L/\partial G_{>\ell}`
only involves later levels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .schedule import SweepSchedule

__all__ = ["level_sweep"]


def level_sweep(pre_gates: Tensor, hidden_n: Tensor, h: Tensor, first_weight: Tensor,
                first_bias: Tensor, gates_weight: Tensor, gates_bias: Tensor,
                schedule: SweepSchedule, second_weight: Tensor | None = None,
                second_bias: Tensor | None = None) -> Tensor:
    """Run one sweep over nodes sorted by level.

    Args:
        pre_gates: [N, 3h] :math:`P` above (input-gate bias plus the hidden-side r, z
            gates).
        hidden_n: [N, h] the hidden-side n gate :math:`g^{h,n}`.
        h: [N, h] node states before the sweep, sorted by level.
        first_weight: [2k, h] :math:`W_1`, the first layers of both message MLPs.
        first_bias: [2k] :math:`b_1`.
        gates_weight: [2k, 6h] :math:`W_g`, the folded second layers and :math:`W_{ih}`;
            [2h, 6h], the block-diagonal :math:`W_{ih}^\top`, with ``second_weight``.
        gates_bias: [6h] :math:`b_g`.
        schedule: the sweep's schedule (``coef`` or ``edges`` + ``sender_edges``).
        second_weight: [2k, 2h] :math:`W_2` (block diagonal), the message MLPs' second
            layers followed by a ReLU; ``None`` when they are folded into ``gates_weight``.
        second_bias: [2h] :math:`b_2`, given with ``second_weight``.

    Returns:
        [N, h] node states after the sweep, sorted by level; float32 under autocast,
        else the promoted dtype of ``h`` and the weights.
    """
    if (second_weight is None) != (second_bias is None):
        raise ValueError("give second_weight and second_bias together")
    tensors = (pre_gates, hidden_n, h, first_weight, first_bias, gates_weight, gates_bias)
    second = () if second_weight is None else (second_weight, second_bias)
    device_type = h.device.type
    if torch.is_autocast_enabled(device_type):
        # mixed precision: the sweep runs in float32 (its buffers are written with out=)
        with torch.autocast(device_type, enabled=False):
            return _LevelSweep.apply(*(t.float() for t in tensors), schedule.to(torch.float32),
                                     *(t.float() for t in second))
    dtype = torch.promote_types(h.dtype, first_weight.dtype)
    return _LevelSweep.apply(*(t.to(dtype) for t in tensors), schedule.to(dtype),
                             *(t.to(dtype) for t in second))


class _LevelSweep(torch.autograd.Function):
    """The autograd function behind :func:`level_sweep`.

    Every per-node buffer is split into per-level views once (``_levels``), so the
    loops index lists instead of slicing tensors.
    """

    @staticmethod
    def forward(ctx: Any, pre_gates: Tensor, hidden_n: Tensor, h: Tensor, first_weight: Tensor,
                first_bias: Tensor, gates_weight: Tensor, gates_bias: Tensor,
                schedule: SweepSchedule, second_weight: Tensor | None = None,
                second_bias: Tensor | None = None) -> Tensor:
        n, hid = h.shape
        rz = h.new_empty(n, 2 * hid)
        candidate = h.new_empty(n, hid)
        out = h.new_empty(n, hid)
        # A of the last level is never computed: zero rows keep the weight gradients exact
        hidden = h.new_zeros(n, first_weight.shape[0])
        store = h.new_zeros(2 * n, 3 * hid)
        # M of the second layer, when there is one (else an empty view per level)
        message = h.new_zeros(n, gates_weight.shape[0] if second_weight is not None else 0)
        first_weight_t = first_weight.t()
        levels = _levels(schedule, pre_gates, rz, rz[:, :hid], rz[:, hid:], hidden_n, candidate,
                         h, out, hidden, store.view(n, 6 * hid), message)
        last = schedule.num_levels - 1
        for level, (pre, rz_l, reset, update, hn, cand, h_l, out_l, hidden_l, store_l,
                    message_l) in enumerate(levels):
            gates = _input_gates(pre, store, schedule, level)
            torch.sigmoid(gates[:, :2 * hid], out=rz_l)
            torch.tanh(torch.addcmul(gates[:, 2 * hid:], reset, hn), out=cand)
            torch.lerp(cand, h_l, update, out=out_l)
            if level < last:
                torch.addmm(first_bias, out_l, first_weight_t, out=hidden_l)
                hidden_l.relu_()
                if second_weight is not None:
                    torch.addmm(second_bias, hidden_l, second_weight, out=message_l)
                    message_l.relu_()
                    torch.addmm(gates_bias, message_l, gates_weight, out=store_l)
                else:
                    torch.addmm(gates_bias, hidden_l, gates_weight, out=store_l)
        ctx.schedule = schedule
        ctx.has_second = second_weight is not None
        ctx.save_for_backward(hidden_n, h, first_weight, gates_weight, rz, candidate, out, hidden,
                              second_weight if second_weight is not None else message, message)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        (hidden_n, h, first_weight, gates_weight, rz, candidate, out, hidden, second_weight,
         message) = ctx.saved_tensors
        schedule: SweepSchedule = ctx.schedule
        second = ctx.has_second
        n, hid = h.shape
        reset, update = rz[:, :hid], rz[:, hid:]
        # d gates / d h' for all nodes at once: [N, 3, h] (r, z, n)
        through_n = (1 - update) * (1 - candidate.square())
        factors = torch.stack([through_n * hidden_n * reset * (1 - reset),
                               (h - candidate) * update * (1 - update), through_n], dim=1)
        grad_gates = h.new_zeros(n, 3, hid)
        grad_h_new = h.new_empty(n, hid)
        grad_store = h.new_zeros(n, 6 * hid)  # d L / d S, 2 rows of the store per node
        grad_hidden = h.new_zeros(n, first_weight.shape[0])  # d L / d (W_1 h' + b_1)
        grad_message = h.new_zeros(message.shape)  # d L / d (A W_2 + b_2)
        gates_weight_t, second_weight_t = gates_weight.t(), second_weight.t()
        levels = _levels(schedule, grad_store, hidden, grad_hidden, grad_out, grad_h_new,
                         factors, grad_gates, message, grad_message)
        last = schedule.num_levels - 1
        for level in range(last, -1, -1):
            (store_l, hidden_l, grad_hidden_l, grad_out_l, grad_h_l, factors_l, grad_gates_l,
             message_l, grad_message_l) = levels[level]
            if level < last:
                _store_gradient(grad_gates, schedule, level, store_l.view(-1, 3 * hid))
                if second:
                    torch.ops.aten.threshold_backward.grad_input(
                        store_l @ gates_weight_t, message_l, 0, grad_input=grad_message_l)
                    torch.ops.aten.threshold_backward.grad_input(
                        grad_message_l @ second_weight_t, hidden_l, 0, grad_input=grad_hidden_l)
                else:
                    torch.ops.aten.threshold_backward.grad_input(
                        store_l @ gates_weight_t, hidden_l, 0, grad_input=grad_hidden_l)
                torch.addmm(grad_out_l, grad_hidden_l, first_weight, out=grad_h_l)
            else:
                grad_h_l.copy_(grad_out_l)
            torch.mul(grad_h_l.unsqueeze(1), factors_l, out=grad_gates_l)
        grad_pre = grad_gates.view(n, 3 * hid)
        grad_hidden_n = grad_h_new * through_n * reset
        grad_h = grad_h_new * update
        grads = (grad_pre, grad_hidden_n, grad_h, grad_hidden.t() @ out, grad_hidden.sum(0),
                 (message if second else hidden).t() @ grad_store, grad_store.sum(0), None)
        if second:
            return grads + (hidden.t() @ grad_message, grad_message.sum(0))
        return grads


def _levels(schedule: SweepSchedule, *tensors: Tensor) -> list[tuple[Tensor, ...]]:
    """Per level, the rows of that level of each of ``tensors`` (views)."""
    sizes = [end - start for start, end in schedule.bounds]
    return list(zip(*(t.split(sizes) for t in tensors)))


def _input_gates(pre: Tensor, store: Tensor, schedule: SweepSchedule, level: int) -> Tensor:
    """:math:`G_\\ell = P_\\ell + C_\\ell S` for one level (``pre`` = :math:`P_\\ell`)."""
    start, end = schedule.bounds[level]
    if start == 0:
        return pre
    if schedule.coef is not None:
        return torch.addmm(pre, schedule.coef[start:end, :2 * start], store[:2 * start])
    columns, receivers, weights = schedule.edges[level]
    terms = store.index_select(0, columns) * weights.unsqueeze(1)
    return pre.index_add(0, receivers, terms)


def _store_gradient(grad_gates: Tensor, schedule: SweepSchedule, level: int, out: Tensor) -> None:
    """Write :math:`\\partial L/\\partial S` of one level's store rows into ``out`` [2m, 3h].

    Only later levels read these rows, and their gate gradients are final by now.
    """
    start, end = schedule.bounds[level]
    if schedule.coef is not None:
        torch.mm(schedule.coef[end:, 2 * start:2 * end].t(), grad_gates[end:].flatten(1), out=out)
        return
    columns, receivers, weights = schedule.sender_edges[level]
    terms = grad_gates.flatten(1).index_select(0, receivers) * weights.unsqueeze(1)
    out.index_add_(0, columns, terms)

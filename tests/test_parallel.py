"""Networks of a meta-batch run concurrently (``net_threads``) with the same results."""

from __future__ import annotations

import threading

import pytest
import torch

from ghn_pyg.train import Trainer
from ghn_pyg.train.parallel import NetworkPool, resolve_net_threads

from .test_train import config, ghn_state


def test_pool_keeps_order_restores_threads_and_raises():
    pool = NetworkPool(2)
    saved = torch.get_num_threads()
    seen: list[tuple[int, int, str]] = []

    def work(k: int) -> int:
        seen.append((k, torch.get_num_threads(), threading.current_thread().name))
        return k * k

    assert pool.map(work, 5) == [0, 1, 4, 9, 16]
    assert {threads for _, threads, _ in seen} == {1}  # each op single-threaded
    assert all(name.startswith("ghn-net") for _, _, name in seen)
    assert torch.get_num_threads() == saved

    def fail(k: int) -> int:
        if k == 2:
            raise ValueError("network 2 failed")
        return k

    with pytest.raises(ValueError, match="network 2 failed"):
        pool.map(fail, 4)
    assert torch.get_num_threads() == saved
    pool.close()
    assert NetworkPool(1).map(lambda k: threading.current_thread().name, 2) == \
        [threading.current_thread().name] * 2
    with pytest.raises(ValueError, match="at least one thread"):
        NetworkPool(0)


def test_auto_threads_follow_the_device():
    assert resolve_net_threads(3, torch.device("cpu")) == 3
    assert resolve_net_threads(0, torch.device("cpu")) == torch.get_num_threads()
    assert resolve_net_threads(0, torch.device("cuda")) == 1


@pytest.mark.parametrize("quantized", [False, True])
def test_concurrent_networks_train_exactly_like_sequential_ones(graphs, tmp_path, quantized):
    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # sequential networks with single-threaded ops
    try:
        extra = dict(bits=(32, 8, 4, 2), range_images=16, net_grad_clip=1.0) if quantized else {}
        one = Trainer(config(graphs, tmp_path / "one", meta_batch=4, net_threads=1, **extra))
        two = Trainer(config(graphs, tmp_path / "two", meta_batch=4, net_threads=2, **extra))
        assert two.networks.threads == 2 and one.networks.threads == 1
        for _ in range(3):
            a, b = one.train_step(), two.train_step()
            assert a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"]
        first, second = ghn_state(one), ghn_state(two)
        assert all(torch.equal(first[k], second[k]) for k in first)
    finally:
        torch.set_num_threads(saved)

"""Regression guard: the shipped GHNs still reach the accuracy measured when shipped."""

from __future__ import annotations

import json

import pytest

from ghn_pyg.data import find_fashion_mnist, load_images
from ghn_pyg.nn import GHN
from ghn_pyg.nn.ghn import PRETRAINED_DIR
from ghn_pyg.train.evaluate import regression_accuracy

REFERENCE = PRETRAINED_DIR / "regression.json"


def _fmnist_missing() -> bool:
    try:
        find_fashion_mnist()
        return False
    except FileNotFoundError:
        return True


pytestmark = [
    pytest.mark.skipif(not REFERENCE.is_file(), reason="no shipped checkpoints yet"),
    pytest.mark.skipif(_fmnist_missing(), reason="Fashion-MNIST is not installed "
                                                 "(apt-get install dataset-fashion-mnist)"),
]


def cases():
    if not REFERENCE.is_file():
        return []
    reference = json.loads(REFERENCE.read_text())
    return [(name, int(bits), value, reference)
            for name, by_bits in reference["accuracy"].items() for bits, value in by_bits.items()]


@pytest.mark.parametrize("name, bits, expected, reference", cases())
def test_shipped_ghn_accuracy(name, bits, expected, reference):
    images = load_images("fashion-mnist", "test")
    accuracy = regression_accuracy(GHN.from_pretrained(name), images, bits, reference["archs"],
                                   reference["seed"], reference["images"], reference["batch_size"])
    assert accuracy >= expected - reference["margin"], (name, bits, accuracy, expected)

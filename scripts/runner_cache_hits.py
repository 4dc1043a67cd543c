"""How often the trainer's runner cache hits: a fixed set (the first N architectures
drawn, what ``Trainer`` keeps) against a least-recently-used cache of the same size.

Replays the training run's architecture draws (``MixtureSampler`` / ``ArchSampler`` of
the given dataset sizes, mixture weights, meta-batch and seed) and prints the share of
draws, from ``--from`` on, whose runner each policy already holds.

    python scripts/runner_cache_hits.py --sizes 10000,3000 --weights 9,1 --cache 8000
"""

from __future__ import annotations

import argparse
from collections import OrderedDict

from ghn_pyg.report import markdown_table
from ghn_pyg.train.sampling import ArchSampler, MixtureSampler


def hit_rates(draws: list[list[int]], capacity: int, first: int) -> tuple[float, float]:
    """``(fixed set, LRU)`` hit rates over the steps of ``draws`` from ``first`` on."""
    kept: set[int] = set()
    lru: OrderedDict[int, None] = OrderedDict()
    hits_kept = hits_lru = total = 0
    for step, indices in enumerate(draws):
        for i in indices:
            counted = step >= first
            total += counted
            hits_kept += counted and i in kept
            if i not in kept and len(kept) < capacity:
                kept.add(i)
            if i in lru:
                hits_lru += counted
                lru.move_to_end(i)
            else:
                lru[i] = None
                if len(lru) > capacity:
                    lru.popitem(last=False)
    return hits_kept / max(total, 1), hits_lru / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,3000", help="architectures per dataset")
    parser.add_argument("--weights", default="9,1", help="mixture weights (one dataset: ignored)")
    parser.add_argument("--cache", type=int, nargs="+", default=[8000, 10000])
    parser.add_argument("--meta-batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--from", dest="first", type=int, default=2000,
                        help="count draws from this step on")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if len(sizes) == 1:
        sampler = ArchSampler(sizes[0], args.meta_batch, args.seed)
    else:
        weights = [float(w) for w in args.weights.split(",")]
        sampler = MixtureSampler(sizes, weights, args.meta_batch, args.seed)
    draws = [sampler.indices(step) for step in range(args.steps)]
    rows = [[capacity, *(f"{100 * r:.0f}%" for r in hit_rates(draws, capacity, args.first))]
            for capacity in args.cache]
    print(f"datasets {sizes}, weights {args.weights}, meta-batch {args.meta_batch}, seed "
          f"{args.seed}; draws of steps {args.first}-{args.steps}")
    print(markdown_table(["runners kept", "first N kept (trainer)", "least recently used"],
                         rows))


if __name__ == "__main__":
    main()

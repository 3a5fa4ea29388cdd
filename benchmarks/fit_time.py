"""Wall time of whole fits (defaults, seeded) on a synthetic shape: the issue's "a fit takes X s" figures.

Usage: ``python -m benchmarks.fit_time --shape ml-latest-small --algorithm TorchALS --n-factors 50``
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .synthetic import SHAPES, synthetic_ratings


def main(argv=None):
    """Fit once to warm up, then ``--repeat`` times; print the median wall time and every one."""
    parser = argparse.ArgumentParser(description="Time whole fits on a synthetic shape.")
    parser.add_argument("--shape", default="ml-latest-small", choices=list(SHAPES))
    parser.add_argument("--algorithm", default="TorchALS", choices=["TorchALS", "TorchSVD", "TorchSVDpp", "TorchNMF"])
    parser.add_argument("--n-factors", type=int, default=None, help="default: the algorithm's")
    parser.add_argument("--layout", default="auto", choices=["auto", "dense", "sparse"])
    parser.add_argument("--repeat", type=int, default=3, help="timed fits, after one warm-up fit")
    args = parser.parse_args(argv)

    import surprise_torch
    from surprise_torch import train_on_arrays

    users, items, ratings, n_users, n_items = synthetic_ratings(args.shape)
    params = {} if args.n_factors is None else {"n_factors": args.n_factors}
    algo = getattr(surprise_torch, args.algorithm)(**params)
    times = []
    for _ in range(args.repeat + 1):
        start = time.perf_counter()
        train_on_arrays(algo._trainer, users, items, ratings, n_users=n_users, n_items=n_items, random_state=0,
                        layout=args.layout, **algo._trainer_kwargs())
        times.append(time.perf_counter() - start)
    print(f"{algo!r} on the {args.shape} shape ({ratings.size:,} ratings, layout {args.layout}): median fit "
          f"{np.median(times[1:]):.3f} s over {args.repeat} (after a warm-up: {times[0]:.3f} s); "
          f"all: {', '.join(f'{t:.3f}' for t in times[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

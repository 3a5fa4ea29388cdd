"""How much an algorithm's ML-100K RMSE moves with its seed alone: is a change a regression or a new start?

For each algorithm and each ``random_state`` in ``--seeds``, the mean test RMSE over
``KFold(5, random_state=42)``'s folds, then the mean and range over the seeds. A change that moves one
seed's RMSE by less than this range has not shown that it made the model worse.

Usage: ``python -m benchmarks.seed_spread --algorithms TorchALS TorchSVD --seeds 0 1 2 3 4 5``.
"""

from __future__ import annotations

import argparse

import numpy as np


def seed_spread(algorithms, seeds):
    """``{algorithm: [mean fold RMSE for each seed]}`` on ML-100K's five folds."""
    from surprise import accuracy
    from surprise.model_selection import KFold

    import surprise_torch
    from surprise_torch.datasets import load_builtin

    folds = list(KFold(5, random_state=42).split(load_builtin("ml-100k")))
    out = {}
    for name in algorithms:
        cls = getattr(surprise_torch, name)
        out[name] = [float(np.mean([accuracy.rmse(cls(random_state=seed).fit(train).test(test), verbose=False)
                                    for train, test in folds])) for seed in seeds]
    return out


def main(argv=None):
    """Print each algorithm's RMSE per seed, their mean and their range."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", nargs="+", default=["TorchSVD", "TorchALS"])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(6)))
    args = parser.parse_args(argv)
    for name, rmses in seed_spread(args.algorithms, args.seeds).items():
        per_seed = " ".join(f"{r:.4f}" for r in rmses)
        print(f"{name}: {per_seed}  mean {np.mean(rmses):.4f}  range {min(rmses):.4f}-{max(rmses):.4f}")


if __name__ == "__main__":
    main()

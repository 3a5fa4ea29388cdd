"""Which ``reg_all`` a cross-validated search picks on a synthetic shape's training ratings, and what it costs.

The held-out comparison in ``benchmarks/scaling.py`` (``--set reg_all=...``) scores models trained on all
of a shape's training ratings; a search picks from models trained on its folds, a fraction of them. This
runs ``surprise_torch.model_selection.GridSearchCV(TorchSVD, {"reg_all": ...})`` on the same training
ratings (a Surprise Dataset built from the arrays), as a user tuning at that size would, and prints each
grid point's mean fold RMSE, the pick, the wall time and the peak memory.

Usage: ``python -m benchmarks.search_at_scale --shape ml-1m --reg-all 0.06 0.08 0.1 0.12 --cv 3``.
"""

from __future__ import annotations

import argparse
import resource
import time

from .scaling import holdout_split
from .synthetic import SHAPES, synthetic_ratings


def search(shape, reg_all, cv):
    """The search's ``cv_results`` means per grid point, its pick and its wall seconds."""
    import pandas as pd
    from surprise import Dataset, Reader
    from surprise.model_selection import KFold

    from surprise_torch import TorchSVD
    from surprise_torch.model_selection import GridSearchCV

    users, items, ratings, _, _ = synthetic_ratings(shape)
    (users, items, ratings), _ = holdout_split(users, items, ratings)
    data = Dataset.load_from_df(pd.DataFrame({"user": users, "item": items, "rating": ratings}),
                                Reader(rating_scale=(1, 5)))
    start = time.perf_counter()
    grid = GridSearchCV(TorchSVD, {"reg_all": reg_all, "random_state": [0]}, measures=["rmse"],
                        cv=KFold(cv, random_state=0))
    grid.fit(data)
    wall = time.perf_counter() - start
    means = dict(zip(reg_all, (float(m) for m in grid.cv_results["mean_test_rmse"])))
    return means, grid.best_params["rmse"]["reg_all"], wall


def main(argv=None):
    """Print each grid point's mean fold RMSE, the pick, the wall time and the peak memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="ml-1m", choices=list(SHAPES))
    parser.add_argument("--reg-all", nargs="+", type=float, default=[0.06, 0.08, 0.1, 0.12])
    parser.add_argument("--cv", type=int, default=3)
    args = parser.parse_args(argv)
    means, best, wall = search(args.shape, args.reg_all, args.cv)
    print(f"{args.shape}, KFold({args.cv}, random_state=0) of the training ratings, TorchSVD defaults otherwise:")
    for reg, rmse in means.items():
        print(f"  reg_all={reg:g}: mean fold RMSE {rmse:.4f}{'  <- picked' if reg == best else ''}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    print(f"  {len(means) * args.cv} fits in {wall:.1f} s, peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main()

"""The search behind TorchSVD's and TorchALS's defaults, kept so it can be rerun and read.

Every configuration is cross-validated on ML-100K with the benchmark's folds
(5-fold ``KFold(random_state=42)``); fit time is the mean per fold, with
Surprise's SVD timed in the same run as the yardstick. Writes
``tuning.json`` and ``tuning.md`` (sorted by RMSE) to ``--out``.

Usage: ``python -m benchmarks.tune_defaults --out benchmarks/results/tuning`` (the committed
``tuning/`` holds TorchALS and TorchSVD, ``tuning-svdpp/`` TorchSVDpp: the full grids, run when
training saw raw ratings). Since training standardises the ratings (so that parameters mean the
same on every rating scale), the defaults come from a finer grid around those optima:
``python -m benchmarks.tune_defaults --grid standardised --out benchmarks/results/tuning-standardised``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

from surprise import SVD, accuracy
from surprise.model_selection import KFold

from surprise_torch import TorchALS, TorchSVD, TorchSVDpp
from surprise_torch.datasets import load_builtin

from .environment import describe_environment

GRIDS = {
    "TorchALS": (TorchALS, {"n_factors": [10, 20, 30, 50], "reg": [0.1, 0.125, 0.15],
                            "reg_bu": [0.02, 0.05], "n_epochs": [6, 10, 15]}),
    "TorchSVD": (TorchSVD, {"n_factors": [50, 100, 200], "n_epochs": [20, 30, 50],
                            "lr_all": [0.05, 0.1], "reg_all": [0.08, 0.1, 0.12]}),
    "TorchSVDpp": (TorchSVDpp, {"n_factors": [20, 50], "n_epochs": [20, 30, 50],
                                "lr_all": [0.05, 0.1], "reg_all": [0.1, 0.12, 0.15]}),
}

#: Around the full grids' optima, after training began to standardise the ratings.
STANDARDISED_GRIDS = {
    "TorchALS": (TorchALS, {"reg": [0.1, 0.11, 0.12, 0.125], "reg_bu": [0.04, 0.05, 0.06]}),
    "TorchSVD": (TorchSVD, {"reg_all": [0.1, 0.11, 0.12], "lr_all": [0.08, 0.09, 0.1]}),
    "TorchSVDpp": (TorchSVDpp, {"reg_all": [0.1, 0.11, 0.12], "lr_all": [0.08, 0.1]}),
}


def cross_validate(make, folds):
    """Mean test RMSE and mean fit seconds of ``make()`` over pre-split folds."""
    rmse, fit = [], []
    for trainset, testset in folds:
        algo = make()
        start = time.perf_counter()
        algo.fit(trainset)
        fit.append(time.perf_counter() - start)
        rmse.append(accuracy.rmse(algo.test(testset), verbose=False))
    return statistics.fmean(rmse), statistics.fmean(fit)


def main(argv=None):
    """Cross-validate every configuration of the chosen grid and write the ranked table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    parser.add_argument("--grid", choices=["full", "standardised"], default="full",
                        help="the full grids, or the finer ones around their optima (see the module docstring)")
    parser.add_argument("--out", default="benchmarks/results/tuning")
    args = parser.parse_args(argv)
    grids = GRIDS if args.grid == "full" else STANDARDISED_GRIDS
    folds = list(KFold(5, random_state=42).split(load_builtin("ml-100k")))
    cross_validate(lambda: TorchALS(random_state=0), folds[:1])  # warm-up, untimed
    svd_rmse, svd_fit = cross_validate(lambda: SVD(random_state=0), folds)
    print(f"Surprise SVD: rmse {svd_rmse:.4f} fit {svd_fit:.3f}s", file=sys.stderr)
    rows = []
    for name in args.algorithms:
        cls, grid = grids[name]
        for values in itertools.product(*grid.values()):
            params = dict(zip(grid, values))
            if name == "TorchALS":
                params["reg_bi"] = params["reg_bu"]
            rmse, fit = cross_validate(lambda: cls(random_state=0, **params), folds)
            rows.append({"algorithm": name, "params": params, "rmse": rmse, "fit_s": fit,
                         "fit_vs_svd": fit / svd_fit})
            print(f"{name} {params} rmse {rmse:.4f} fit {fit:.3f}s ({fit / svd_fit:.2f}x SVD)",
                  file=sys.stderr, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"environment": describe_environment("cpu"), "surprise_svd": {"rmse": svd_rmse, "fit_s": svd_fit},
               "rows": rows}
    (out / "tuning.json").write_text(json.dumps(payload, indent=2))
    lines = [f"Surprise SVD in the same run: RMSE {svd_rmse:.4f}, fit {svd_fit:.3f} s per fold.", "",
             "| algorithm | parameters | RMSE | fit s | fit vs SVD |", "|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (r["algorithm"], r["rmse"])):
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items())
        lines.append(f"| {row['algorithm']} | {params} | {row['rmse']:.4f} | {row['fit_s']:.3f} | "
                     f"{row['fit_vs_svd']:.2f}x |")
    (out / "tuning.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

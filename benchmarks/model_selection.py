"""Model-selection benchmark: our stacked searches against Surprise's per-fit ones, same folds, same run.

ML-100K, ``KFold(5, random_state=42)``, every grid with ``random_state=0``.
Each search runs in a fresh process (so each pays its imports and first
fits, as a user's script does), timed from the call to its return, with the
process's peak RSS. Runs:

- ``GridSearchCV(TorchSVD, {"n_factors": [50, 100], "reg_all": [0.05, 0.1, 0.15], "lr_all": [0.05, 0.1]})``
  (60 fits) with ``surprise_torch.model_selection`` against Surprise's
  ``GridSearchCV`` with ``n_jobs=1``, and against Surprise's
  ``GridSearchCV(SVD, same n_factors and reg_all, lr_all [0.005, 0.01], n_jobs=-1)``;
- the same for ``TorchALS`` over ``{"n_factors": [20, 50], "reg": [0.05, 0.1, 0.2]}``
  (Surprise's SVD over those ``n_factors`` and ``reg_all``, ``lr_all [0.005, 0.01]``);
- ``cross_validate(TorchSVD(), data, cv=5)`` with ``n_jobs=1`` and ``2``, ours and Surprise's;
- the first fit in a fresh process against a second one (the per-process penalty).

Every cell of our searches is compared with Surprise's search of the same
class: the largest difference of any ``split*_test_rmse`` and whether
``best_params`` agree.

Usage: ``python -m benchmarks.model_selection --out benchmarks/results/model-selection-cpu``
(about 3 minutes on a 2-core CPU per repeat). ``--device cuda`` runs our
searches on a GPU (Surprise's stay on the CPU).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from .environment import describe_environment

SVD_GRID = {"n_factors": [50, 100], "reg_all": [0.05, 0.1, 0.15], "lr_all": [0.05, 0.1]}
ALS_GRID = {"n_factors": [20, 50], "reg": [0.05, 0.1, 0.2]}
SURPRISE_SVD_GRIDS = {
    "svd": {"n_factors": [50, 100], "reg_all": [0.05, 0.1, 0.15], "lr_all": [0.005, 0.01]},
    "als": {"n_factors": [20, 50], "reg_all": [0.05, 0.1, 0.2], "lr_all": [0.005, 0.01]},
}

#: name: (grid family, which search module, algorithm, n_jobs)
SEARCHES = {
    "svd/ours": ("svd", "ours", "TorchSVD", 1),
    "svd/surprise-TorchSVD": ("svd", "surprise", "TorchSVD", 1),
    "svd/surprise-SVD-all-cores": ("svd", "surprise", "SVD", -1),
    "als/ours": ("als", "ours", "TorchALS", 1),
    "als/surprise-TorchALS": ("als", "surprise", "TorchALS", 1),
    "als/surprise-SVD-all-cores": ("als", "surprise", "SVD", -1),
}
#: Building KFold(5, random_state=42)'s folds of the synthetic ML-1M shape: Surprise's and ours.
FOLDS = {"folds/surprise": "surprise", "folds/ours": "ours"}
CROSS_VALIDATIONS = {
    "cv/ours-n_jobs=1": ("ours", 1), "cv/ours-n_jobs=2": ("ours", 2),
    "cv/surprise-n_jobs=1": ("surprise", 1), "cv/surprise-n_jobs=2": ("surprise", 2),
}


def _grid(family, algorithm, device):
    if algorithm == "SVD":
        grid = dict(SURPRISE_SVD_GRIDS[family])
    else:
        grid = dict(SVD_GRID if family == "svd" else ALS_GRID)
        grid["device"] = [device]
    grid["random_state"] = [0]
    return grid


def _class(name):
    import surprise

    import surprise_torch

    return getattr(surprise_torch, name, None) or getattr(surprise, name)


def worker(name, device):
    """Run one search or cross-validation in this (fresh) process; return its figures."""
    start = time.perf_counter()
    from surprise.model_selection import KFold

    from surprise_torch.datasets import load_builtin

    data = _synthetic_dataset("ml-1m") if name in FOLDS else load_builtin("ml-100k")
    cv = KFold(5, random_state=42)
    loaded = time.perf_counter()
    result = {}
    if name in SEARCHES:
        family, module, algorithm, n_jobs = SEARCHES[name]
        search_module = _search_module(module)
        search = search_module.GridSearchCV(_class(algorithm), _grid(family, algorithm, device),
                                            measures=["rmse", "mae"], cv=cv, n_jobs=n_jobs)
        search.fit(data)
        result["split_test_rmse"] = [search.cv_results[f"split{s}_test_rmse"].tolist() for s in range(5)]
        result["best_params"] = {k: v for k, v in search.best_params["rmse"].items() if k != "device"}
        result["best_rmse"] = float(search.best_score["rmse"])
        result["stacked"] = getattr(search, "n_stacked_", 0)
    elif name in CROSS_VALIDATIONS:
        module, n_jobs = CROSS_VALIDATIONS[name]
        from surprise_torch import TorchSVD

        out = _search_module(module).cross_validate(TorchSVD(random_state=0, device=device), data, cv=cv,
                                                    n_jobs=n_jobs)
        result["mean_rmse"] = float(out["test_rmse"].mean())
    elif name in FOLDS:
        from surprise_torch import _folds

        folds = _folds.split(cv, data) if FOLDS[name] == "ours" else list(cv.split(data))
        result["ratings"] = sum(train.n_ratings for train, _ in folds) // (len(folds) - 1)
    elif name == "first-fit":
        from surprise_torch import TorchSVD

        trainset = next(cv.split(data))[0]
        times = []
        for _ in range(3):
            begin = time.perf_counter()
            TorchSVD(random_state=0, device=device).fit(trainset)
            times.append(time.perf_counter() - begin)
        result["fit_s"] = times
    result["wall_s"] = time.perf_counter() - loaded
    result["load_s"] = loaded - start
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    result["peak_rss_children_gib"] = children
    return result


def _synthetic_dataset(shape):
    """A Surprise Dataset of a synthetic shape, read from a CSV file as users load theirs."""
    import tempfile

    import numpy as np
    from surprise import Dataset, Reader

    from .synthetic import synthetic_ratings

    users, items, ratings, _, _ = synthetic_ratings(shape)
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/ratings.csv"
        np.savetxt(path, np.column_stack([users, items, ratings]), fmt=["%d", "%d", "%.1f"], delimiter=",")
        return Dataset.load_from_file(path, Reader(line_format="user item rating", sep=",", rating_scale=(1, 5)))


def _search_module(module):
    if module == "ours":
        import surprise_torch.model_selection as search_module
    else:
        import surprise.model_selection as search_module
    return search_module


def run(name, device, log):
    """One worker in its own process."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.model_selection", "--worker", name, "--device", device],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    log(f"{name:30s} {result['wall_s']:7.2f} s   peak {result['peak_rss_gib']:.2f} GiB")
    return result


def _against(ratio, target):
    """A ratio as the table shows it: bold where it meets its target."""
    text = f"{ratio:.2f}x"
    return f"**{text}**" if ratio <= target else f"{text} (not met)"


def markdown(results, env):
    """The README's table, from the medians of the repeats."""
    import statistics

    def wall(name):
        return statistics.median(r["wall_s"] for r in results[name])

    lines = [f"Measured on {env['cpu']} ({env['cpu_count']} cores), torch {env['torch']}, device {env['device']}; "
             "medians of the repeats, each search in a fresh process, wall seconds from the call to its return.", ""]
    lines += ["| grid | ours | Surprise's GridSearchCV, same class, n_jobs=1 | ratio (target <= 0.33) "
              "| Surprise's SVD grid, n_jobs=-1 | ratio (target <= 0.5) | our peak RSS | max cell difference "
              "| same best_params |",
              "|---|---|---|---|---|---|---|---|---|"]
    for family, algorithm in (("svd", "TorchSVD"), ("als", "TorchALS")):
        ours, same, svd = wall(f"{family}/ours"), wall(f"{family}/surprise-{algorithm}"), wall(
            f"{family}/surprise-SVD-all-cores")
        mine, theirs = results[f"{family}/ours"][0], results[f"{family}/surprise-{algorithm}"][0]
        diff = max(abs(a - b) for row_a, row_b in zip(mine["split_test_rmse"], theirs["split_test_rmse"])
                   for a, b in zip(row_a, row_b))
        peak = max(r["peak_rss_gib"] for r in results[f"{family}/ours"])
        lines.append(f"| {algorithm} {len(mine['split_test_rmse'][0])} points x 5 folds | {ours:.2f} s | {same:.2f} s "
                     f"| {_against(ours / same, 0.33)} | {svd:.2f} s | {_against(ours / svd, 0.5)} | {peak:.2f} GiB "
                     f"| {diff:.1e} "
                     f"| {mine['best_params'] == theirs['best_params']} |")
    lines += ["", "| cross_validate(TorchSVD(), cv=5) | n_jobs=1 | n_jobs=2 | ratio |", "|---|---|---|---|"]
    for module in ("ours", "surprise"):
        one, two = wall(f"cv/{module}-n_jobs=1"), wall(f"cv/{module}-n_jobs=2")
        lines.append(f"| {module} | {one:.2f} s | {two:.2f} s | {two / one:.2f}x |")
    ours, theirs = wall("folds/ours"), wall("folds/surprise")
    lines += ["", f"KFold(5, random_state=42)'s folds of the synthetic ML-1M shape "
              f"({results['folds/ours'][0]['ratings']:,} ratings): Surprise builds them in {theirs:.2f} s, "
              f"ours in {ours:.2f} s ({ours / theirs:.2f}x)."]
    fits = results["first-fit"][0]["fit_s"]
    lines += ["", f"First TorchSVD fit in a fresh process: {fits[0]:.3f} s; the next two: "
              f"{fits[1]:.3f} s, {fits[2]:.3f} s."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    """Run every search, each in its own process, and write the table and JSON to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/model-selection-cpu"))
    parser.add_argument("--device", default="cpu", help="where our searches train (Surprise's use the CPU)")
    parser.add_argument("--repeat", type=int, default=1, help="repeats, in alternating order")
    parser.add_argument("--only", nargs="*", help="run only these names")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.device)))
        return

    def log(message):
        print(message, flush=True)

    names = args.only or [*SEARCHES, *CROSS_VALIDATIONS, *FOLDS, "first-fit"]
    results = {name: [] for name in names}
    for repeat in range(args.repeat):
        for name in (names if repeat % 2 == 0 else names[::-1]):
            results[name].append(run(name, args.device, log))
    env = describe_environment(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model_selection.json").write_text(json.dumps({"environment": env, "results": results}, indent=1))
    if not args.only:
        table = markdown(results, env)
        (args.out / "model_selection.md").write_text(table)
        print(table)


if __name__ == "__main__":
    main()

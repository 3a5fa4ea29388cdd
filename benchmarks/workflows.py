"""Workflow benchmark: what users meet beyond one idle fit.

Four sections, each timed against Surprise in the same run on the same folds
(ML-100K, ``KFold(5, random_state=42)``):

1. **Threads under load.** A default fit of fold 1 with the machine idle and
   beside one busy process (a CPU-bound Python loop), under our thread policy
   and with torch's own default (every core); Surprise's single-threaded SVD
   for reference. Then ``cross_validate(..., n_jobs=2)`` against ``n_jobs=1``.
   And the measurement behind the policy's line: fit time on one thread and
   on all, idle, as the data grows.
2. **Rating scales.** ML-100K mapped affinely onto other scales (stretched 5x,
   Jester's -10..10, 0..100 scores, 0.5..5 half stars), every algorithm with
   its defaults; RMSE divided by the stretch, so rows compare with 1..5.
3. **Large testsets.** Surprise's FAQ top-N recipe, ``test`` of the whole
   anti-testset of ML-100K (1.49M pairs), each algorithm in its own process:
   seconds and extra peak memory. And ``test`` as Surprise's own
   ``cross_validate`` times it.

Usage: ``python -m benchmarks.workflows --out benchmarks/results/workflows-cpu``
(about 4 minutes on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .environment import describe_environment


def _load():
    from surprise.model_selection import KFold

    from surprise_torch.datasets import load_builtin

    data = load_builtin("ml-100k")
    return data, list(KFold(5, random_state=42).split(data))


def _algorithms(names=("SVD", "TorchSVD", "TorchALS", "TorchSVDpp", "TorchNMF")):
    from surprise import SVD

    from surprise_torch import TorchALS, TorchBayesMF, TorchNMF, TorchSVD, TorchSVDpp

    factories = {"SVD": lambda: SVD(random_state=0), "TorchSVD": lambda: TorchSVD(random_state=0),
                 "TorchALS": lambda: TorchALS(random_state=0), "TorchSVDpp": lambda: TorchSVDpp(random_state=0),
                 "TorchNMF": lambda: TorchNMF(random_state=0), "TorchBayesMF": lambda: TorchBayesMF(random_state=0)}
    return {name: factories[name] for name in names}


@contextlib.contextmanager
def busy_process():
    """One other CPU-bound process on the machine for the duration."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.5)
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def _median_fit(make, trainset, repeat):
    times = []
    for _ in range(repeat):
        algo = make()
        start = time.perf_counter()
        algo.fit(trainset)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def threads_under_load(folds, repeat, log):
    """Fit seconds of fold 1, idle and loaded, policy and all-cores."""
    import torch

    import surprise_torch

    trainset = folds[0][0]
    cores = torch.get_num_threads()
    rows = []
    for name, make in _algorithms(("SVD", "TorchSVD", "TorchALS")).items():
        make().fit(trainset)  # warm-up: one-time imports and thread pools
        settings = [("single-threaded", None)] if name == "SVD" else [("policy", None), (f"{cores} threads", cores)]
        for setting, pinned in settings:
            surprise_torch.set_num_threads(pinned)
            try:
                idle = _median_fit(make, trainset, repeat)
                with busy_process():
                    loaded = _median_fit(make, trainset, repeat)
            finally:
                surprise_torch.set_num_threads(None)
            rows.append({"algorithm": name, "threads": setting, "idle_s": idle, "loaded_s": loaded})
            log(f"  threads: {name:<9} {setting:<16} idle {idle:.3f}s  loaded {loaded:.3f}s")
    return rows


def cross_validate_jobs(data, log):
    """Wall seconds of cross_validate with n_jobs=1 and 2 (workers included).

    joblib keeps its worker processes between calls, so n_jobs=2 runs twice:
    first with fresh workers (each starts Python and imports torch, as in a
    user's first call), then with the same workers again.
    """
    from joblib.externals.loky import get_reusable_executor
    from surprise.model_selection import KFold, cross_validate

    rows = []
    for name, make in _algorithms(("SVD", "TorchSVD", "TorchALS")).items():
        for n_jobs, workers in ((1, "-"), (2, "fresh"), (2, "warm")):
            if workers == "fresh":
                get_reusable_executor().shutdown(wait=True)
            start = time.perf_counter()
            result = cross_validate(make(), data, cv=KFold(5, random_state=42), n_jobs=n_jobs)
            wall = time.perf_counter() - start
            rows.append({"algorithm": name, "n_jobs": n_jobs, "workers": workers, "wall_s": wall,
                         "fit_s": statistics.fmean(result["fit_time"]),
                         "test_s": statistics.fmean(result["test_time"]),
                         "rmse": statistics.fmean(result["test_rmse"])})
            log(f"  cross_validate: {name:<9} n_jobs={n_jobs} ({workers} workers) wall {wall:.2f}s  "
                f"test {rows[-1]['test_s']:.3f}s/fold")
    return rows


def thread_line(log):
    """Idle fit seconds on one thread and on all, as the data grows (the policy's line)."""
    import torch

    import surprise_torch
    from surprise_torch import train_on_arrays
    from surprise_torch.trainers import train_als, train_svd

    from .synthetic import synthetic_ratings

    users, items, ratings, n_users, n_items = synthetic_ratings("ml-1m")
    rng = np.random.default_rng(0)
    cores = torch.get_num_threads()
    rows = []
    for n in (100_000, 300_000, 1_000_000):
        keep = np.sort(rng.choice(ratings.size, n, replace=False))
        for name, trainer, params in (("TorchSVD", train_svd, {"n_factors": 100, "n_epochs": 10}),
                                      ("TorchALS", train_als, {"n_factors": 20, "n_epochs": 10})):
            seconds = {}
            for threads in (1, cores):
                surprise_torch.set_num_threads(threads)
                runs = []
                for _ in range(2):
                    start = time.perf_counter()
                    train_on_arrays(trainer, users[keep], items[keep], ratings[keep], n_users=n_users,
                                    n_items=n_items, device="cpu", random_state=0, **params)
                    runs.append(time.perf_counter() - start)
                seconds[threads] = min(runs)
            surprise_torch.set_num_threads(None)
            work = n * trainer.work_per_rating(**params)
            rows.append({"ratings": n, "algorithm": name, "work": work, "one_s": seconds[1],
                         "all_s": seconds[cores], "cores": cores,
                         "policy": "one" if work < surprise_torch._threads.SINGLE_THREAD_WORK else "all"})
            log(f"  line: {name:<9} {n:>9,} ratings  work {work / 1e6:6.1f}M  1 thread {seconds[1]:.3f}s  "
                f"{cores} threads {seconds[cores]:.3f}s")
    return rows


#: name -> (a, b): ratings r in 1..5 become a * r + b.
SCALES = {"1..5 (ML-100K)": (1.0, 0.0), "5..25 (x5)": (5.0, 0.0), "-10..10 (Jester-like)": (5.0, -15.0),
          "0..100": (25.0, -25.0), "0.5..5 (half stars)": (1.125, -0.625)}


def rating_scales(data, log):
    """Mean RMSE over the folds, per scale, divided by the stretch ``a``."""
    from surprise import Dataset, Reader, accuracy
    from surprise.model_selection import KFold

    rows = []
    for scale, (a, b) in SCALES.items():
        mapped = [(u, i, a * r + b, t) for u, i, r, t in data.raw_ratings]
        low, high = (a * x + b for x in data.reader.rating_scale)
        reader = Reader(rating_scale=(low, high))
        scaled = Dataset.load_from_folds([], reader)  # a container Surprise fills below
        scaled.raw_ratings = mapped
        folds = list(KFold(5, random_state=42).split(scaled))
        names = ("SVD", "TorchSVD", "TorchALS", "TorchSVDpp", "TorchBayesMF") + (("TorchNMF",) if low >= 0 else ())
        for name, make in _algorithms(names).items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Surprise's SVD may overflow on stretched scales
                rmse = [accuracy.rmse(make().fit(tr).test(te), verbose=False) / a for tr, te in folds]
            rows.append({"scale": scale, "a": a, "b": b, "algorithm": name, "rmse": statistics.fmean(rmse)})
            log(f"  scale {scale:<22} {name:<10} RMSE/a {rows[-1]['rmse']:.4f}")
    return rows


def anti_testset_worker(name):
    """In its own process: fit on all of ML-100K, then test its anti-testset; seconds and extra peak RSS."""
    from surprise_torch.datasets import load_builtin

    trainset = load_builtin("ml-100k").build_full_trainset()
    algo = _algorithms((name,))[name]().fit(trainset)
    anti = trainset.build_anti_testset()
    gc.collect()
    before = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    start = time.perf_counter()
    predictions = algo.test(anti)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"algorithm": name, "pairs": len(anti), "test_s": seconds, "extra_peak_gib": (peak - before) / 2**30,
            "n_predictions": len(predictions)}


def anti_testsets(log):
    """Test the full ML-100K anti-testset with each algorithm, each in its own process (for its peak memory)."""
    rows = []
    for name in ("SVD", "TorchSVD", "TorchALS", "TorchSVDpp"):
        out = subprocess.run([sys.executable, "-m", "benchmarks.workflows", "--anti-worker", name],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        log(f"  anti-testset: {name:<10} {rows[-1]['pairs']:,} pairs  test {rows[-1]['test_s']:.2f}s  "
            f"extra peak {rows[-1]['extra_peak_gib']:.2f} GiB")
    return rows


SECTIONS = ("threads", "cross_validate", "thread_line", "scales", "anti_testset")


def _ratio(value, reference):
    return f"{value / reference:.2f}x" if reference else "-"


def markdown(results):
    """The four tables, with ratios to Surprise's SVD measured in the same run."""
    out = []
    rows = results["threads"]
    svd = next(r for r in rows if r["algorithm"] == "SVD")
    out += ["### Threads under load (ML-100K fold 1, default parameters, fit seconds, median of repeats)", "",
            "| algorithm | threads | idle s | beside a busy process s | slowdown | loaded vs SVD loaded |",
            "|---|---|---|---|---|---|"]
    out += [f"| {r['algorithm']} | {r['threads']} | {r['idle_s']:.3f} | {r['loaded_s']:.3f} | "
            f"{_ratio(r['loaded_s'], r['idle_s'])} | {_ratio(r['loaded_s'], svd['loaded_s'])} |" for r in rows]
    rows = results["cross_validate"]
    out += ["", "### cross_validate, 5 folds: n_jobs=2 against n_jobs=1", "",
            "| algorithm | n_jobs | joblib workers | wall s | vs n_jobs=1 | fit s/fold | "
            "test s/fold (as cross_validate times it) | test vs SVD | RMSE |", "|---|---|---|---|---|---|---|---|---|"]
    one = {r["algorithm"]: r for r in rows if r["n_jobs"] == 1}
    svd_test = {(r["n_jobs"], r.get("workers")): r["test_s"] for r in rows if r["algorithm"] == "SVD"}
    out += [f"| {r['algorithm']} | {r['n_jobs']} | {r.get('workers', '-')} | {r['wall_s']:.2f} | "
            f"{_ratio(r['wall_s'], one[r['algorithm']]['wall_s'])} | {r['fit_s']:.3f} | {r['test_s']:.3f} | "
            f"{_ratio(r['test_s'], svd_test[(r['n_jobs'], r.get('workers'))])} | {r['rmse']:.4f} |" for r in rows]
    rows = results["thread_line"]
    out += ["", "### Where one thread stops being enough (idle, synthetic ML-1M shape subsampled)", "",
            "| algorithm | ratings | work per product | 1 thread s | all threads s | gain | policy uses |",
            "|---|---|---|---|---|---|---|"]
    out += [f"| {r['algorithm']} | {r['ratings']:,} | {r['work'] / 1e6:.0f}M | {r['one_s']:.3f} | {r['all_s']:.3f} | "
            f"{r['one_s'] / r['all_s']:.2f}x | {r['policy']} |" for r in rows]
    rows = results["scales"]
    names = list(dict.fromkeys(r["algorithm"] for r in rows))
    out += ["", "### Rating scales (ML-100K mapped to a*r+b, defaults, 5-fold mean RMSE / a)", "",
            "| scale | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for scale in dict.fromkeys(r["scale"] for r in rows):
        cells = {r["algorithm"]: f"{r['rmse']:.4f}" for r in rows if r["scale"] == scale}
        out.append(f"| {scale} | " + " | ".join(cells.get(n, "n/a") for n in names) + " |")
    rows = results["anti_testset"]
    svd = next(r for r in rows if r["algorithm"] == "SVD")
    out += ["", "### Top-N recipe: test(trainset.build_anti_testset()) on all of ML-100K", "",
            "| algorithm | pairs | test s | vs SVD | extra peak GiB | vs SVD |", "|---|---|---|---|---|---|"]
    out += [f"| {r['algorithm']} | {r['pairs']:,} | {r['test_s']:.2f} | {_ratio(r['test_s'], svd['test_s'])} | "
            f"{r['extra_peak_gib']:.2f} | {_ratio(r['extra_peak_gib'], svd['extra_peak_gib'])} |" for r in rows]
    return "\n".join(out)


def main(argv=None):
    """Run the chosen sections, merge the others from ``--out``, and write the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench-results/workflows", help="output folder")
    parser.add_argument("--repeat", type=int, default=3, help="fits per setting in the threads section")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS),
                        help="run only these sections, keeping the others from an earlier workflows.json in --out")
    parser.add_argument("--anti-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.anti_worker:
        print(json.dumps(anti_testset_worker(args.anti_worker)))
        return 0

    def log(message):
        print(message, file=sys.stderr, flush=True)

    out = Path(args.out)
    previous = out / "workflows.json"
    results = json.loads(previous.read_text()) if set(args.sections) != set(SECTIONS) and previous.is_file() else {}
    # Checked before anything runs: the table needs every section, and the ones not run come from --out.
    missing = set(SECTIONS) - set(args.sections) - set(results)
    if missing:
        parser.error(f"no earlier results for {sorted(missing)} in {previous}; run every section once there, "
                     "or name these sections too")
    env = describe_environment("cpu")
    data, folds = _load()
    runs = {"threads": lambda: threads_under_load(folds, args.repeat, log),
            "cross_validate": lambda: cross_validate_jobs(data, log), "thread_line": lambda: thread_line(log),
            "scales": lambda: rating_scales(data, log), "anti_testset": lambda: anti_testsets(log)}
    results["environment"] = env
    for section in args.sections:
        results[section] = runs[section]()
    table = markdown(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "workflows.json").write_text(json.dumps(results, indent=2))
    header = ("Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()) + "\n\n"
              "Reproduce: `python -m benchmarks.workflows --out " + str(args.out) + "`\n\n")
    (out / "workflows.md").write_text(header + table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

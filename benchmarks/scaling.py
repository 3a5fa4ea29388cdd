"""Time per epoch and peak memory on synthetic data shaped like ML-1M, ML-10M, ML-20M, Netflix.

Each (algorithm, shape) runs in its own process so that its peak memory is
its own. Our algorithms go through the same path as ``fit`` after Surprise's
Trainset (ratings arrays -> tensors -> trainer); Surprise's SVD gets a real
Trainset and runs on the ML-1M and ML-10M shapes only (larger ones take it
tens of minutes). Optional competitors (LensKit's ALS, Spark's ALS, cornac's
MF) are skipped with a line saying so when not installed. A shape whose
dense layout does not fit is reported as refused, with the estimate ``fit``
gives, instead of crashing.

Usage: ``python -m benchmarks.scaling --out benchmarks/results/scaling-cpu``; ``--set reg_all=0.08``
gives our algorithms other constructor arguments (their rows say which).
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .environment import describe_environment
from .synthetic import SHAPES, synthetic_ratings

#: Epochs (ALS: sweeps) each algorithm runs. ALS and SVD++/NMF rows time a few; TorchSVD, Surprise's SVD
#: and cornac's MF run their defaults (30, 20, 20), so that their held-out RMSEs compare fitted models.
EPOCHS = {"TorchALS": 3, "TorchALS-cholesky": 3, "TorchSVD": 30, "TorchSVDpp": 5, "TorchNMF": 5, "TorchBayesMF": 3, "SVD": 20,
          "LensKit-ALS": 3, "Spark-ALS": 5, "cornac-MF": 20}

#: Shapes Surprise's SVD runs on (pure-Python Trainset building and 2-3 s per epoch at ML-10M).
SURPRISE_SHAPES = ("ml-1m", "ml-10m", "light-users")

#: Share of each synthetic rating set held out (seeded) to score every algorithm's predictions.
HOLDOUT = 0.1


def holdout_split(users, items, ratings, fraction=HOLDOUT, seed=0):
    """(train, test) triples of arrays: a seeded random ``fraction`` of the ratings held out."""
    test = np.random.default_rng(seed).random(ratings.size) < fraction
    return (users[~test], items[~test], ratings[~test]), (users[test], items[test], ratings[test])


def heldout_rmse(mu, pu, qi, bu, bi, test):
    """RMSE on held-out (user, item, rating) arrays of ``mu + bu + bi + pu . qi``, clipped to 1..5 stars."""
    users, items, ratings = test
    est = mu + bu[users] + bi[items]
    # In blocks: the Bayesian model's rows hold every kept sample (thousands of columns).
    for start in range(0, len(users), 8192):
        block = slice(start, start + 8192)
        est[block] += np.einsum("ij,ij->i", pu[users[block]], qi[items[block]])
    return float(np.sqrt(np.mean((np.clip(est, 1, 5) - ratings) ** 2)))


def worker(algorithm, shape, device, epochs, layout, als_factors, fitted=False, params=None, fits=1, pause=0.0):
    """Run one algorithm on one shape; returns a JSON-able dict.

    With ``fitted``, our algorithms run all their adapter's defaults (epochs
    and factors included), so that their held-out RMSEs compare fitted models.
    ``params`` overrides our algorithms' constructor arguments (``--set``).
    With ``fits`` above 1, our algorithms fit that many times in the process
    and the last fit's first and later epochs are reported too (``next_fit_*``):
    a fit after another, as in ``cross_validate``'s later folds, ``pause``
    seconds after the one before it ended (the time a fold's Trainset takes
    to build: long enough for a virtual machine's host to take back the
    memory the last fit freed, see ``benchmarks.first_epoch``).
    """
    import torch

    from surprise_torch import TorchALS, TorchBayesMF, TorchNMF, TorchSVD, TorchSVDpp, train_on_arrays
    from surprise_torch._config import resolve_device
    from surprise_torch.arrays import choose_layout

    users, items, ratings, n_users, n_items = synthetic_ratings(shape)
    (users, items, ratings), test = holdout_split(users, items, ratings)
    out = {"algorithm": algorithm, "shape": shape, "users": n_users, "items": n_items,
           "ratings": int(ratings.size), "epochs": epochs}
    if algorithm == "SVD":
        return out | _surprise_svd(users, items, ratings, n_users, n_items, epochs, test)
    if algorithm == "LensKit-ALS":
        return out | _lenskit_als(users, items, ratings, n_users, n_items, epochs, als_factors)
    if algorithm == "cornac-MF":
        return out | _cornac_mf(users, items, ratings, n_users, n_items, epochs, test)
    if algorithm == "Spark-ALS":
        return out | _spark_als(users, items, ratings, n_users, n_items, epochs, als_factors, test)
    dev = resolve_device(device)
    # Each trainer with the defaults of its Surprise adapter (TorchALS and TorchBayesMF: --als-factors,
    # the sampler timed without burn-in), or (fitted) with all of them.
    params = dict(params or {})
    if params:
        out["params"] = params
    if fitted:
        algo = {"TorchALS": TorchALS, "TorchALS-cholesky": functools.partial(TorchALS, solver="cholesky"),
                "TorchSVD": TorchSVD, "TorchSVDpp": TorchSVDpp, "TorchNMF": TorchNMF,
                "TorchBayesMF": TorchBayesMF}[algorithm](**params)
        kwargs = algo._trainer_kwargs()
        epochs = out["epochs"] = kwargs["n_epochs"]
    else:
        sized = {"n_factors": als_factors}
        algo = {"TorchALS": lambda: TorchALS(**sized | params),
                "TorchALS-cholesky": lambda: TorchALS(**sized | {"solver": "cholesky"} | params),
                "TorchSVD": lambda: TorchSVD(**params), "TorchSVDpp": lambda: TorchSVDpp(**params),
                "TorchNMF": lambda: TorchNMF(**params),
                "TorchBayesMF": lambda: TorchBayesMF(**sized | {"burn_in": 0} | params)}[algorithm]()
        kwargs = algo._trainer_kwargs() | {"n_epochs": epochs}
    out["n_factors"] = kwargs["n_factors"]
    # What train_on_arrays will choose (reported also when it refuses to allocate).
    out["layout"] = choose_layout(layout, n_users, n_items, torch.float32, dev, n_ratings=int(ratings.size))
    stamps, faults = [], []

    def on_epoch(epoch, metrics):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)

    fit = functools.partial(train_on_arrays, algo._trainer, users, items, ratings, n_users=n_users,
                            n_items=n_items, layout=layout, device=dev, dtype=torch.float32, random_state=0,
                            callback=on_epoch, **kwargs)
    faults_at_start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    try:
        model = fit()
    except MemoryError as exc:
        return out | {"status": "refused", "reason": str(exc)}
    per_epoch = np.diff([start] + stamps)
    epoch_s = float(np.median(per_epoch[1:] if epochs > 1 else per_epoch))
    flops = epoch_flops(algorithm, n_users, n_items, int(ratings.size), kwargs["n_factors"],
                        kwargs.get("cg_steps", 0))
    host = {name: getattr(model, name).double().cpu().numpy() for name in ("pu", "qi", "bu", "bi")}
    if "pu_samples_" in model.extras:  # the posterior mean of the kept samples' dot products
        host["pu"], host["qi"] = (model.extras[name].double().cpu().numpy() for name in ("pu_samples_", "qi_samples_"))
    if "implicit_" in model.extras:
        host["pu"] = host["pu"] + model.extras["implicit_"].double().cpu().numpy()
    out |= {"status": "ok", "first_epoch_s": float(per_epoch[0]), "epoch_s": epoch_s,
            # Pages the kernel handed the process fresh during the first epoch (setup included).
            "first_epoch_faults": faults[0] - faults_at_start if faults else None,
            "train_rmse": model.history["train_rmse"][-1], "test_rmse": heldout_rmse(model.global_mean, test=test, **host),
            "gflop_per_epoch": flops / 1e9,
            "gflops": flops / epoch_s / 1e9,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    del model  # freed before any next fit, as a fold's model is before the next fold's
    for _ in range(fits - 1):
        time.sleep(pause)
        stamps.clear()
        start = time.perf_counter()
        fit()
        per_epoch = np.diff([start] + stamps)
        out |= {"next_fit_first_epoch_s": float(per_epoch[0]),
                "next_fit_epoch_s": float(np.median(per_epoch[1:] if epochs > 1 else per_epoch))}
    if dev.type == "cuda":
        out["peak_gpu_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    return out


def epoch_flops(algorithm, n_users, n_items, nnz, k, cg_steps=0):
    """Floating-point operations of one epoch (ALS: one sweep), counted from the algorithm.

    Exact ALS (TorchALS-cholesky, LensKit's, the Bayesian sampler's draws),
    per side: the Gram matrices by batched GEMMs over gathered blocks
    (2 nnz d^2; rows shorter than d use the cheaper kernel form, not
    counted), right-hand sides (2 nnz d), Cholesky (n d^3 / 3) and solves
    (2 n d^2), d = k + 1. Conjugate-gradient ALS (TorchALS), per side: the
    first residual and each step's product with the normal equations, a
    sampled product and a sparse product each (2 nnz d twice), and about
    ten length-d vector operations per row and step. SVD: the sampled
    product and two gradient products, 2 nnz (k + 2) each; SVD++ adds the
    implicit sums and their gradient (2 nnz k each). NMF: the sampled
    product and four update products, 2 nnz k each.
    """
    d = k + 1
    if algorithm == "TorchALS":
        return sum(2 * 2 * nnz * d * (cg_steps + 1) + 10 * 2 * n * d * cg_steps for n in (n_users, n_items))
    if algorithm in ("TorchALS-cholesky", "LensKit-ALS", "Spark-ALS", "TorchBayesMF"):
        als = sum(2 * nnz * d * d + 2 * nnz * d + n * d ** 3 / 3 + 2 * n * d * d for n in (n_users, n_items))
        # The sampler adds, per side, the perturbation's sampled product, and the fit's once.
        return als + (3 * 2 * nnz * (k + 2) if algorithm == "TorchBayesMF" else 0)
    if algorithm in ("TorchSVD", "TorchSVDpp"):
        return 3 * 2 * nnz * (k + 2) + (2 * 2 * nnz * k if algorithm == "TorchSVDpp" else 0)
    return 5 * 2 * nnz * k


def gemm_gflops(device="cpu", n=2048, repeat=5, trials=5):
    """This machine's dense float32 GEMM rate, the yardstick for the sparse kernels.

    The best of several trials after a warm-up, as shared machines are noisy.
    """
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = 0.0
    for trial in range(trials + 1):
        if a.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeat):
            a @ b
        if a.is_cuda:
            torch.cuda.synchronize()
        if trial:  # the first is the warm-up
            best = max(best, 2 * n ** 3 * repeat / (time.perf_counter() - start) / 1e9)
    return best


def _lenskit_als(users, items, ratings, n_users, n_items, epochs, k):
    """LensKit's biased ALS (Rust kernels, multi-threaded) on the same ratings, timed per sweep."""
    import importlib.util

    if importlib.util.find_spec("lenskit") is None:
        return {"status": "skipped", "reason": "lenskit is not installed (pip install lenskit)"}
    import pandas as pd
    from lenskit.als import BiasedMFScorer
    from lenskit.data import from_interactions_df
    from lenskit.training import TrainingOptions

    start = time.perf_counter()
    data = from_interactions_df(pd.DataFrame({"user_id": users, "item_id": items,
                                              "rating": ratings.astype(np.float64)}))
    stamps = []
    for _ in BiasedMFScorer(embedding_size=k, epochs=epochs).training_loop(data, TrainingOptions()):
        stamps.append(time.perf_counter())
    per_epoch = np.diff([start] + stamps)
    epoch_s = float(np.median(per_epoch[1:]))
    flops = epoch_flops("LensKit-ALS", n_users, n_items, int(ratings.size), k)
    return {"status": "ok", "n_factors": k, "first_epoch_s": float(per_epoch[0]), "epoch_s": epoch_s,
            "gflop_per_epoch": flops / 1e9, "gflops": flops / epoch_s / 1e9,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def _cornac_mf(users, items, ratings, n_users, n_items, epochs, test):
    """cornac's MF (Cython SGD on every core) with k=100 and its other defaults; seconds per epoch from the whole fit."""
    import importlib.util

    if importlib.util.find_spec("cornac") is None:
        return {"status": "skipped", "reason": "cornac is not installed (pip install cornac)"}
    from cornac.data import Dataset
    from cornac.models import MF

    start = time.perf_counter()
    data = Dataset.from_uir(list(zip(users.tolist(), items.tolist(), ratings.astype(float).tolist())), seed=0)
    conversion = time.perf_counter() - start
    start = time.perf_counter()
    model = MF(k=100, max_iter=epochs, verbose=False).fit(data)  # cornac's defaults otherwise (lambda_reg 0.02)
    fit_s = time.perf_counter() - start
    # cornac numbers users and items itself: map them back to ours (absent ones predict from the biases alone).
    pu, qi = np.zeros((n_users, 100)), np.zeros((n_items, 100))
    bu, bi = np.zeros(n_users), np.zeros(n_items)
    rows_u = np.array(list(data.uid_map.keys())), np.array(list(data.uid_map.values()))
    rows_i = np.array(list(data.iid_map.keys())), np.array(list(data.iid_map.values()))
    pu[rows_u[0]], bu[rows_u[0]] = model.u_factors[rows_u[1]], model.u_biases[rows_u[1]]
    qi[rows_i[0]], bi[rows_i[0]] = model.i_factors[rows_i[1]], model.i_biases[rows_i[1]]
    return {"status": "ok", "n_factors": 100, "conversion_s": conversion, "epoch_s": fit_s / epochs,
            "test_rmse": heldout_rmse(float(model.global_mean), pu, qi, bu, bi, test),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def _spark_als(users, items, ratings, n_users, n_items, epochs, k, test):
    """Spark MLlib's ALS (explicit, ALS-WR regularisation 0.1) in local mode on every core.

    After a warm-up fit (the JVM compiles its kernels), fits of 1 and of
    ``epochs`` sweeps: the first is the first-epoch time (everything after
    the DataFrame exists), the difference over ``epochs - 1`` the time per
    sweep. Peak RSS adds the JVM's high-water mark to this process's.
    Spark's model has no biases: it predicts ``pu . qi`` (users or items it
    did not see: 0, clipped to 1 star).
    """
    import importlib.util

    if importlib.util.find_spec("pyspark") is None:
        return {"status": "skipped", "reason": "pyspark is not installed (pip install pyspark; needs Java 17)"}
    import pandas as pd
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[*]").appName("scaling")
             .config("spark.driver.memory", "12g").config("spark.sql.execution.arrow.pyspark.enabled", "true")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    try:
        frame = spark.createDataFrame(pd.DataFrame({"user": users.astype(np.int32), "item": items.astype(np.int32),
                                                    "rating": ratings.astype(np.float32)})).cache()
        frame.count()
        times = {}
        for sweeps in (1, 1, epochs):  # the first is the warm-up
            start = time.perf_counter()
            model = ALS(rank=k, maxIter=sweeps, regParam=0.1, userCol="user", itemCol="item", ratingCol="rating",
                        seed=0).fit(frame)
            times[sweeps] = time.perf_counter() - start
        pu, qi = np.zeros((n_users, k)), np.zeros((n_items, k))
        for table, rows in ((pu, model.userFactors), (qi, model.itemFactors)):
            factors = rows.toPandas()
            table[factors["id"].to_numpy()] = np.stack(factors["features"].to_numpy())
        with open(f"/proc/{spark.sparkContext._gateway.proc.pid}/status") as status:
            jvm_kib = int(re.search(r"VmHWM:\s+(\d+)", status.read())[1])
    finally:
        spark.stop()
    epoch_s = (times[epochs] - times[1]) / (epochs - 1)
    flops = epoch_flops("Spark-ALS", n_users, n_items, int(ratings.size), k)
    return {"status": "ok", "n_factors": k, "first_epoch_s": times[1], "epoch_s": epoch_s,
            "gflop_per_epoch": flops / 1e9, "gflops": flops / epoch_s / 1e9,
            "test_rmse": heldout_rmse(0.0, pu, qi, np.zeros(n_users), np.zeros(n_items), test),
            "peak_rss_gib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + jvm_kib) / 2**20}


def _surprise_svd(users, items, ratings, n_users, n_items, epochs, test):
    from surprise import SVD
    from surprise.trainset import Trainset

    start = time.perf_counter()
    ur, ir = {u: [] for u in range(n_users)}, {i: [] for i in range(n_items)}
    for u, i, r in zip(users.tolist(), items.tolist(), ratings.tolist()):
        ur[u].append((i, r))
        ir[i].append((u, r))
    trainset = Trainset(ur, ir, n_users, n_items, len(ratings), (1, 5),
                        {str(u): u for u in range(n_users)}, {str(i): i for i in range(n_items)})
    conversion = time.perf_counter() - start
    start = time.perf_counter()
    algo = SVD(n_epochs=epochs, random_state=0).fit(trainset)
    return {"status": "ok", "conversion_s": conversion, "epoch_s": (time.perf_counter() - start) / epochs,
            "test_rmse": heldout_rmse(trainset.global_mean, algo.pu, algo.qi, algo.bu, algo.bi, test),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


HEADER = """s / epoch: median over the epochs after the first (TorchALS: one sweep; TorchSVD: one optimizer
step; SVD: one SGD pass). First epoch s includes everything before it: validating the arrays, building
the tensors in the chosen layout, indexing the observed entries and laying out the row blocks
(TorchALS-cholesky) or tiles (TorchALS). TorchALS is the default, conjugate-gradient solver (3 steps
per half-sweep); TorchALS-cholesky solves exactly. GFLOP/s: the epoch's
floating-point operations counted from the algorithm (benchmarks/scaling.py, epoch_flops) over its time;
"of GEMM" compares that with this machine's dense float32 GEMM. Peak RSS: the whole worker process,
data generation included. Surprise's SVD gets a Trainset built from the same arrays; LensKit's ALS
(when installed) a LensKit Dataset, and its GFLOP/s counts the same normal equations as TorchALS-cholesky's;
Spark's ALS (when installed; local mode, regParam 0.1; s / epoch from fits of 1 and 5 sweeps after a
warm-up fit; peak RSS includes the JVM's) a DataFrame; cornac's MF (when installed; k=100 and its
defaults, 20 epochs; its s / epoch is the whole fit over 20) a cornac Dataset.
Every algorithm trains on the same seeded 90% of the ratings; held-out RMSE scores the other 10%
(predictions clipped to 1..5; not extracted from LensKit's model) after the epochs run here
(benchmarks/scaling.py, EPOCHS): TorchSVD, Surprise's SVD and cornac's MF run their default epochs
(30, 20, 20), so theirs compare fitted models; the ALS, SVD++ and NMF rows time a few sweeps only.

"""


def _layout_text(row):
    if row.get("status") == "ok":
        return "fits" if row["algorithm"] not in ("SVD", "LensKit-ALS", "Spark-ALS", "cornac-MF") else "n/a"
    reason = row.get("reason", row.get("error", "failed"))
    match = re.search(r"needs about (\S+) GiB .* only (\S+) GiB", reason)
    if match:
        return f"does not fit: needs {match[1]} GiB, {match[2]} GiB available"
    return f"{row.get('status')}: {reason}".replace("|", "/")


def _label(row):
    """The algorithm's name, with the arguments ``--set`` gave it."""
    params = row.get("params")
    return row["algorithm"] + (f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")


def markdown(rows, gemm, env=None):
    """The scaling rows as a Markdown table, after a header explaining the columns and naming the machine."""
    lines = ["| shape | users x items | training ratings | algorithm | factors | epochs | layout | s / epoch | "
             "first epoch s | GFLOP/s | of GEMM | held-out RMSE | peak RSS GiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        size = f"{r['users']:,} x {r['items']:,}"
        head = (f"| {r['shape']} | {size} | {r['ratings']:,} | {_label(r)} | {r.get('n_factors', 100)} | "
                f"{r.get('epochs', '-')} | ")
        if r.get("status") == "ok":
            first = f"{r['first_epoch_s']:.2f}" if "first_epoch_s" in r else "-"
            rate = f"{r['gflops']:.1f} | {r['gflops'] / gemm:.1%}" if "gflops" in r and gemm else "- | -"
            heldout = f"{r['test_rmse']:.4f}" if "test_rmse" in r else "-"
            lines.append(head + f"{r.get('layout', 'n/a')} | {r['epoch_s']:.3f} | {first} | {rate} | {heldout} | "
                         f"{r['peak_rss_gib']:.2f} |")
        else:
            lines.append(head + f"{r.get('layout', '-')} | - | - | - | - | - | {_layout_text(r)} |")
    machine = (f"Machine: {env['cpu']} ({env['cpu_count']} cores), torch {env['torch']}, device {env['device']}. "
               if env else "")
    return HEADER + machine + f"Dense float32 GEMM on this machine: {gemm:.0f} GFLOP/s.\n\n" + "\n".join(lines)


def _parse_settings(parser, settings):
    """``NAME=VALUE`` strings as a dict, each value a Python literal (a bare word stays a string)."""
    params = {}
    for setting in settings:
        name, sep, value = setting.partition("=")
        if not sep or not name.isidentifier():
            parser.error(f"--set takes NAME=VALUE, not {setting!r}")
        try:
            params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name] = value
    return params


def main(argv=None):
    """Run every (shape, algorithm) in its own process (or, with ``--worker``, be that process)."""
    parser = argparse.ArgumentParser(description="Time per epoch and peak memory on synthetic shapes.")
    parser.add_argument("--shapes", nargs="+", default=["ml-1m", "ml-10m", "ml-20m"], choices=list(SHAPES))
    parser.add_argument("--algorithms", nargs="+", default=["SVD", "TorchALS", "TorchSVD", "TorchSVDpp", "TorchNMF"],
                        choices=list(EPOCHS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--layout", default="auto", choices=["auto", "dense", "sparse"],
                        help="layout of our algorithms (default auto: sparse on the CPU and CUDA; "
                             "see surprise_torch.arrays.choose_layout)")
    parser.add_argument("--als-factors", type=int, default=50, help="TorchALS and TorchBayesMF factors (default 50)")
    parser.add_argument("--fitted", action="store_true",
                        help="our algorithms with all their defaults (epochs, factors): held-out RMSEs of fitted models")
    parser.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE",
                        help="constructor arguments of our algorithms, e.g. --set reg_all=0.07 (Python literals)")
    parser.add_argument("--out", default="bench-results/scaling")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per run")
    parser.add_argument("--worker", nargs=2, metavar=("ALGORITHM", "SHAPE"), help=argparse.SUPPRESS)
    parser.add_argument("--fits", type=int, default=1, help=argparse.SUPPRESS)  # the worker's (see worker)
    parser.add_argument("--pause", type=float, default=0.0, help=argparse.SUPPRESS)  # the worker's (see worker)
    args = parser.parse_args(argv)
    params = _parse_settings(parser, args.set)
    if args.worker:
        algorithm, shape = args.worker
        print(json.dumps(worker(algorithm, shape, args.device, EPOCHS[algorithm], args.layout, args.als_factors,
                                args.fitted, params, args.fits, args.pause)))
        return 0
    gemm = gemm_gflops(args.device)
    env = describe_environment(args.device)
    rows = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for shape in args.shapes:
        for algorithm in args.algorithms:
            if algorithm == "SVD" and shape not in SURPRISE_SHAPES:
                continue
            print(f"{algorithm} on {shape}...", file=sys.stderr, flush=True)
            n_users, n_items, n_ratings = SHAPES[shape]
            base = {"algorithm": algorithm, "shape": shape, "users": n_users, "items": n_items,
                    "ratings": n_ratings}
            try:
                proc = subprocess.run([sys.executable, "-m", "benchmarks.scaling", "--device", args.device,
                                       "--layout", args.layout, "--als-factors", str(args.als_factors),
                                       *(["--fitted"] if args.fitted else []),
                                       *(["--set", *args.set] if args.set else []),
                                       "--worker", algorithm, shape], capture_output=True, text=True,
                                      timeout=args.timeout)
                row = json.loads(proc.stdout) if proc.returncode == 0 else base | {
                    "status": "failed", "error": proc.stderr.strip().splitlines()[-1][:200]}
            except subprocess.TimeoutExpired:
                row = base | {"status": "timeout", "error": f"over {args.timeout:.0f} s"}
            print(f"  {row}", file=sys.stderr, flush=True)
            rows.append(row)
            # Rewritten after every run, so an interrupted sweep keeps what finished.
            (out / "scaling.json").write_text(json.dumps({"environment": env, "gemm_gflops": gemm, "rows": rows},
                                                         indent=2))
            (out / "scaling.md").write_text(markdown(rows, gemm, env) + "\n")
    print(markdown(rows, gemm, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())

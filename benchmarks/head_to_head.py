"""Head-to-head benchmark: Surprise's algorithms and ours, same folds, one process.

Prints a table like Surprise's README (mean and std of test RMSE and MAE over
the folds, fit and test seconds, and each time as a ratio to the Surprise
counterpart measured in the same run), and writes it as JSON and Markdown with
a figure of accuracy against fit time and of the per-epoch training curves.

Run ``surprise-torch-bench --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from surprise import NMF, SVD, BaselineOnly, SVDpp, accuracy
from surprise.model_selection import KFold

from surprise_torch import TorchALS, TorchBayesMF, TorchNMF, TorchSVD, TorchSVDpp
from surprise_torch._config import resolve_device
from surprise_torch.algorithms._base import TorchMFAlgo
from surprise_torch.datasets import dataset_path, load_builtin

from .competitors import CornacMF, MyFMBayes, cornac_available, myfm_available
from .environment import describe_environment

#: name -> (factory taking the device, the Surprise algorithm its times are compared with)
ALGORITHMS = {
    "SVD": (lambda device: SVD(random_state=0), "SVD"),
    "SVDpp": (lambda device: SVDpp(random_state=0, cache_ratings=True), "SVDpp"),
    "NMF": (lambda device: NMF(random_state=0), "NMF"),
    "BaselineOnly": (lambda device: BaselineOnly(verbose=False), "BaselineOnly"),
    "TorchSVD": (lambda device: TorchSVD(random_state=0, device=device), "SVD"),
    "TorchALS": (lambda device: TorchALS(random_state=0, device=device), "SVD"),
    # The exact solver, beside the default conjugate gradients (not run by default).
    "TorchALS-cholesky": (lambda device: TorchALS(random_state=0, device=device, solver="cholesky"), "SVD"),
    "TorchSVDpp": (lambda device: TorchSVDpp(random_state=0, device=device), "SVDpp"),
    "TorchNMF": (lambda device: TorchNMF(random_state=0, device=device), "NMF"),
    # Its defaults are myFM's row's rank and sweeps (10, 200): the speed comparison.
    "TorchBayesMF": (lambda device: TorchBayesMF(random_state=0, device=device), "SVD"),
}
if cornac_available():
    ALGORITHMS["cornac-MF"] = (lambda device: CornacMF(), "SVD")
    ALGORITHMS["cornac-MF-k100"] = (lambda device: CornacMF(k=100, lambda_reg=0.1, max_iter=50), "SVD")
if myfm_available():
    ALGORITHMS["myFM-r10-200"] = (lambda device: MyFMBayes(rank=10, n_iter=200), "SVD")
    ALGORITHMS["myFM-r10-200-one-group"] = (lambda device: MyFMBayes(rank=10, n_iter=200, grouping=False), "SVD")
DEFAULT_ALGORITHMS = (["SVD", "SVDpp", "NMF", "BaselineOnly", "TorchSVD", "TorchALS", "TorchSVDpp", "TorchNMF",
                       "TorchBayesMF"] + [a for a in ALGORITHMS if a.startswith("cornac") or a == "myFM-r10-200"])


@dataclass
class Result:
    """One algorithm's scores on one dataset, per fold and summarised."""

    algorithm: str
    dataset: str
    counterpart: str
    rmse: list = field(default_factory=list)
    mae: list = field(default_factory=list)
    fit_s: list = field(default_factory=list)
    test_s: list = field(default_factory=list)
    convert_s: list = field(default_factory=list)
    curves: dict = field(default_factory=dict)

    def summary(self):
        """Means and standard deviations over the finished folds."""
        def mean_std(values):
            return (statistics.fmean(values), statistics.pstdev(values)) if values else (float("nan"),) * 2
        return {name: mean_std(getattr(self, name)) for name in ("rmse", "mae", "fit_s", "test_s", "convert_s")}


def load_dataset(name):
    """The Surprise Dataset for ``name``; ml-100k is fetched if missing, any other must be there
    (``load_builtin`` says where, and ``main`` checks before anything runs)."""
    return load_builtin(name, download=name == "ml-100k")


def warm_up(factory, folds):
    """Fit once on a small slice, untimed, so one-time start-up costs (thread
    pools, BLAS initialisation) are not charged to the first fold."""
    trainset, testset = folds[0]
    factory().fit(trainset).test(testset[:100])


def run_algorithm(name, dataset_name, folds, device, repeat, epochs_verbose, log):
    """Cross-validate one algorithm on pre-split folds; returns a Result."""
    make, counterpart = ALGORITHMS[name]
    result = Result(name, dataset_name, counterpart)
    warm_up(lambda: make(device), folds)
    for fold, (trainset, testset) in enumerate(folds, 1):
        fit_times, test_times = [], []
        for _ in range(repeat):
            algo = make(device)
            if epochs_verbose and isinstance(algo, TorchMFAlgo):
                algo.verbose = True
            start = time.perf_counter()
            algo.fit(trainset)
            fit_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            predictions = algo.test(testset)
            test_times.append(time.perf_counter() - start)
        # The fastest of the repeats is the least disturbed by the shared machine.
        result.fit_s.append(min(fit_times))
        result.test_s.append(min(test_times))
        if isinstance(algo, TorchMFAlgo):
            result.convert_s.append(algo.conversion_s_)
        result.rmse.append(accuracy.rmse(predictions, verbose=False))
        result.mae.append(accuracy.mae(predictions, verbose=False))
        log(f"  {name:<13} fold {fold}/{len(folds)}  rmse {result.rmse[-1]:.4f}  "
            f"fit {result.fit_s[-1]:.3f}s  test {result.test_s[-1]:.3f}s")
    if isinstance(make(device), TorchMFAlgo):
        # Curves come from a separate, untimed fit on fold 1 that also scores
        # the testset after every epoch.
        trainset, testset = folds[0]
        result.curves = make(device).fit(trainset, eval_set=testset).history
    return result


def ratios(results):
    """Each result's mean fit and test time over its Surprise counterpart's, same dataset."""
    by_key = {(r.dataset, r.algorithm): r.summary() for r in results}
    out = {}
    for r in results:
        ref = by_key.get((r.dataset, r.counterpart))
        if ref is None:
            out[(r.dataset, r.algorithm)] = (None, None)
            continue
        s = r.summary()
        out[(r.dataset, r.algorithm)] = (s["fit_s"][0] / ref["fit_s"][0], s["test_s"][0] / ref["test_s"][0])
    return out


def markdown_table(results):
    """The results as a Markdown table, one row per algorithm and dataset."""
    ratio = ratios(results)
    lines = ["| dataset | algorithm | RMSE | MAE | fit s | of which Trainset conversion s | test s | fit vs | test vs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r.summary()
        fit_r, test_r = (_ratio_text(x, r.counterpart) for x in ratio[(r.dataset, r.algorithm)])
        lines.append(
            f"| {r.dataset} | {r.algorithm} | {s['rmse'][0]:.4f} ± {s['rmse'][1]:.4f} | "
            f"{s['mae'][0]:.4f} ± {s['mae'][1]:.4f} | {s['fit_s'][0]:.3f} | "
            f"{_seconds(s['convert_s'][0])} | {s['test_s'][0]:.3f} | "
            f"{fit_r} | {test_r} |"
        )
    return "\n".join(lines)


def _seconds(value):
    return "-" if value != value else f"{value:.3f}"  # NaN: not measured (Surprise's own algorithms)


def _ratio_text(value, counterpart):
    return "n/a" if value is None else f"{value:.2f}x {counterpart}"


def write_results(results, env, args, out_dir: Path, log):
    """Write results.json, results.md and (with matplotlib) results.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(results)
    payload = {"environment": env, "arguments": vars(args), "table_markdown": table,
               "results": [asdict(r) | {"summary": r.summary()} for r in results]}
    (out_dir / "results.json").write_text(json.dumps(payload, indent=2))
    header = (f"Folds: {args.folds}-fold KFold(random_state=42); times are seconds per fold, the best "
              f"of {args.repeat} repeat(s), after one untimed warm-up fit.\n\nEnvironment: "
              + ", ".join(f"{k} {v}" for k, v in env.items()) + "\n\n")
    (out_dir / "results.md").write_text(header + table + "\n")
    written = ["results.json", "results.md"]
    try:
        from .figures import draw
    except ImportError as exc:  # matplotlib is an optional extra
        log(f"(no figure: {exc}; pip install matplotlib)")
    else:
        draw(results, out_dir / "results.png")
        written.append("results.png")
    log(f"Wrote {', '.join(str(out_dir / name) for name in written)}")
    return table


def build_parser():
    """The ``surprise-torch-bench`` command line."""
    parser = argparse.ArgumentParser(
        prog="surprise-torch-bench",
        description="Cross-validate Surprise's algorithms and surprise_torch's on the same folds, "
                    "print the table, and write results.json, results.md and results.png.")
    parser.add_argument("--algorithms", nargs="+", default=DEFAULT_ALGORITHMS, choices=list(ALGORITHMS),
                        metavar="NAME", help=f"algorithms to run, among {', '.join(ALGORITHMS)} "
                        f"(default: {' '.join(DEFAULT_ALGORITHMS)}); ratios need each one's counterpart")
    parser.add_argument("--datasets", nargs="+", default=None, metavar="NAME",
                        help="ml-100k (fetched if missing) and ml-1m (used only if already in Surprise's "
                             "data folder); default: ml-100k, plus ml-1m when present")
    parser.add_argument("--folds", type=int, default=5, help="KFold splits, random_state=42 (default 5)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="times each fold is fitted and tested; the fastest is kept (default 1)")
    parser.add_argument("--device", default="auto", help="device for our algorithms: auto, cpu, cuda, mps")
    parser.add_argument("--out", default="bench-results", help="output folder (default ./bench-results)")
    parser.add_argument("--epochs", action="store_true", help="also print every epoch of our algorithms")
    return parser


def main(argv=None):
    """Entry point of ``surprise-torch-bench``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.folds < 2 or args.repeat < 1:
        parser.error("--folds must be >= 2 and --repeat >= 1")
    datasets = args.datasets or ["ml-100k"] + (["ml-1m"] if dataset_path("ml-1m").is_file() else [])
    # Arguments that only fail once a dataset is loaded or a fit starts: usage errors now, not tracebacks.
    try:
        resolve_device(args.device)
        for name in datasets:
            if name != "ml-100k" and not dataset_path(name).is_file():
                raise ValueError(f"--datasets: {name} is not in Surprise's data folder ({dataset_path(name)}); "
                                 "put it there, or set SURPRISE_DATA_FOLDER.")
    except ValueError as exc:
        parser.error(str(exc))

    def log(message):
        print(message, file=sys.stderr, flush=True)

    env = describe_environment(args.device)
    log("Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()))
    results = []
    try:
        for dataset_name in datasets:
            data = load_dataset(dataset_name)
            folds = list(KFold(args.folds, random_state=42).split(data))
            log(f"{dataset_name}: {len(data.raw_ratings)} ratings, {args.folds} folds")
            for name in args.algorithms:
                results.append(run_algorithm(name, dataset_name, folds, args.device, args.repeat,
                                             args.epochs, log))
    except KeyboardInterrupt:
        log("Interrupted: writing the results of the finished algorithms.")
        print(write_results(results, env, args, Path(args.out), log))
        return 130
    print(write_results(results, env, args, Path(args.out), log))
    return 0


if __name__ == "__main__":
    sys.exit(main())

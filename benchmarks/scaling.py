"""Time per epoch and peak memory on synthetic data shaped like ML-1M, ML-10M, ML-20M, Netflix.

Each (algorithm, shape) runs in its own process so that its peak memory is
its own. Our algorithms go through the same path as ``fit`` after Surprise's
Trainset (ratings arrays -> dense tensors -> trainer); Surprise's SVD gets a
real Trainset and is run on the ML-1M shape only (larger ones take it tens of
minutes). A shape whose dense layout does not fit is reported as refused,
with the estimate ``fit`` gives, instead of crashing.

Usage: ``python -m benchmarks.scaling --out benchmarks/results/scaling-cpu``
"""

from __future__ import annotations

import argparse
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

EPOCHS = {"TorchALS": 3, "TorchSVD": 5, "TorchSVDpp": 5, "TorchNMF": 5, "SVD": 3}


def worker(algorithm, shape, device, epochs):
    """Run one algorithm on one shape; returns a JSON-able dict."""
    import torch

    from surprise_torch import TorchALS, TorchNMF, TorchSVD, TorchSVDpp
    from surprise_torch._config import resolve_device
    from surprise_torch._data import RatingArrays, to_dense

    users, items, ratings, n_users, n_items = synthetic_ratings(shape)
    out = {"algorithm": algorithm, "shape": shape, "users": n_users, "items": n_items,
           "ratings": int(ratings.size), "epochs": epochs}
    if algorithm == "SVD":
        return out | _surprise_svd(users, items, ratings, n_users, n_items, epochs)
    dev = resolve_device(device)
    arrays = RatingArrays(users, items, ratings.astype(np.float64), n_users, n_items)
    start = time.perf_counter()
    try:
        dense_ratings, mask = to_dense(arrays, dev, torch.float32)
    except MemoryError as exc:
        return out | {"status": "refused", "reason": str(exc)}
    if dev.type == "cuda":
        torch.cuda.synchronize()
    out["conversion_s"] = time.perf_counter() - start
    stamps = []

    def on_epoch(epoch, metrics):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    # Each trainer with the defaults of its Surprise adapter.
    algo = {"TorchALS": TorchALS, "TorchSVD": TorchSVD, "TorchSVDpp": TorchSVDpp, "TorchNMF": TorchNMF}[algorithm]()
    kwargs = algo._trainer_kwargs() | {"n_epochs": epochs}
    start = time.perf_counter()
    model = algo._trainer(dense_ratings, mask, generator=torch.Generator().manual_seed(0), callback=on_epoch,
                          **kwargs)
    per_epoch = np.diff([start] + stamps)
    out |= {"status": "ok", "first_epoch_s": float(per_epoch[0]),
            "epoch_s": float(np.median(per_epoch[1:] if epochs > 1 else per_epoch)),
            "train_rmse": model.history["train_rmse"][-1],
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if dev.type == "cuda":
        out["peak_gpu_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    return out


def _surprise_svd(users, items, ratings, n_users, n_items, epochs):
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
    SVD(n_epochs=epochs, random_state=0).fit(trainset)
    return {"status": "ok", "conversion_s": conversion, "epoch_s": (time.perf_counter() - start) / epochs,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


HEADER = """s / epoch: median over the epochs after the first (TorchALS: one sweep; TorchSVD: one optimizer
step; SVD: one SGD pass). First epoch s includes the trainer's one-time setup (indexing the observed
entries; for TorchSVD, torch.optim's first-use import of torch._dynamo, about 1 s once per process).
Convert s: ratings arrays to dense tensors (for Surprise's SVD: building its Trainset). Peak RSS: the
whole worker process, data generation included.

"""


def _layout_text(row):
    if row.get("status") == "ok":
        return "fits" if row["algorithm"] != "SVD" else "n/a"
    reason = row.get("reason", row.get("error", "failed"))
    match = re.search(r"needs about (\S+) GiB .* only (\S+) GiB", reason)
    if match:
        return f"does not fit: needs {match[1]} GiB, {match[2]} GiB available"
    return f"{row.get('status')}: {reason}".replace("|", "/")


def markdown(rows):
    """The scaling rows as a Markdown table, after a header explaining the columns."""
    lines = ["| shape | users x items | ratings | algorithm | s / epoch | first epoch s | convert s | "
             "peak RSS GiB | dense layout |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        size = f"{r['users']:,} x {r['items']:,}"
        if r.get("status") == "ok":
            first = f"{r['first_epoch_s']:.3f}" if "first_epoch_s" in r else "-"
            lines.append(f"| {r['shape']} | {size} | {r['ratings']:,} | {r['algorithm']} | {r['epoch_s']:.3f} | "
                         f"{first} | {r['conversion_s']:.2f} | {r['peak_rss_gib']:.2f} | {_layout_text(r)} |")
        else:
            lines.append(f"| {r['shape']} | {size} | {r['ratings']:,} | {r['algorithm']} | - | - | - | - | "
                         f"{_layout_text(r)} |")
    return HEADER + "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Time per epoch and peak memory on synthetic shapes.")
    parser.add_argument("--shapes", nargs="+", default=["ml-1m", "ml-10m", "ml-20m"], choices=list(SHAPES))
    parser.add_argument("--algorithms", nargs="+", default=["SVD", "TorchALS", "TorchSVD", "TorchSVDpp", "TorchNMF"],
                        choices=list(EPOCHS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="bench-results/scaling")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per run")
    parser.add_argument("--worker", nargs=2, metavar=("ALGORITHM", "SHAPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        algorithm, shape = args.worker
        print(json.dumps(worker(algorithm, shape, args.device, EPOCHS[algorithm])))
        return 0
    rows = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for shape in args.shapes:
        for algorithm in args.algorithms:
            if algorithm == "SVD" and shape != "ml-1m":
                continue
            print(f"{algorithm} on {shape}...", file=sys.stderr, flush=True)
            n_users, n_items, n_ratings = SHAPES[shape]
            base = {"algorithm": algorithm, "shape": shape, "users": n_users, "items": n_items,
                    "ratings": n_ratings}
            try:
                proc = subprocess.run([sys.executable, "-m", "benchmarks.scaling", "--device", args.device,
                                       "--worker", algorithm, shape], capture_output=True, text=True,
                                      timeout=args.timeout)
                row = json.loads(proc.stdout) if proc.returncode == 0 else base | {
                    "status": "failed", "error": proc.stderr.strip().splitlines()[-1][:200]}
            except subprocess.TimeoutExpired:
                row = base | {"status": "timeout", "error": f"over {args.timeout:.0f} s"}
            print(f"  {row}", file=sys.stderr, flush=True)
            rows.append(row)
            # Rewritten after every run, so an interrupted sweep keeps what finished.
            (out / "scaling.json").write_text(json.dumps({"environment": describe_environment(args.device),
                                                          "rows": rows}, indent=2))
            (out / "scaling.md").write_text(markdown(rows) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

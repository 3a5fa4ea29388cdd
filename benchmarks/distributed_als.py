"""Distributed ALS with 1, 2, ... processes on a synthetic shape: speed-up and bytes exchanged.

Each process count is launched with ``torchrun`` (``python -m
torch.distributed.run``); on CPUs with gloo, the machine's cores are split
evenly between the processes so that every run uses the same hardware. Rank 0
reports the median seconds per sweep and saves its factors, which are
compared with the single-process run's.

Usage::

    python -m benchmarks.distributed_als --shape ml-1m --procs 1 2 --out benchmarks/results/distributed-cpu

On several GPUs of one machine (NCCL, one process per GPU)::

    python -m benchmarks.distributed_als --device cuda --procs 1 2 4 8

The same worker runs across machines with torchrun's multi-node options
(see the README).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .environment import describe_environment
from .synthetic import SHAPES, synthetic_ratings


def exchanged_bytes(n_users, n_items, n_factors, world, element_size=4):
    """Bytes all processes receive per sweep: two all_gathers of padded shards, plus the loss sum."""
    d = n_factors + 1
    shards = -(-n_users // world) + -(-n_items // world)
    return world * (world - 1) * (shards * d * element_size + 2 * element_size)


def worker(args):
    """One rank's run, under torchrun."""
    import torch
    import torch.distributed as dist

    from surprise_torch import train_on_arrays

    use_cuda = args.device == "cuda"
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        device = torch.device("cpu")
    users, items, ratings, n_users, n_items = synthetic_ratings(args.shape)
    stamps = []

    def on_epoch(epoch, metrics):
        if use_cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    dist.barrier()
    start = time.perf_counter()
    model = train_on_arrays("als", users, items, ratings, n_users=n_users, n_items=n_items, layout="sparse",
                            device=device, n_factors=args.factors, n_epochs=args.sweeps, random_state=0,
                            callback=on_epoch, group=dist.group.WORLD)
    per_sweep = np.diff([start] + stamps)
    if rank == 0:
        np.save(Path(args.out) / f"qi-{world}.npy", model.qi.cpu().numpy())
        print(json.dumps({
            "processes": world, "threads_per_process": torch.get_num_threads() if not use_cuda else None,
            "first_sweep_s": float(per_sweep[0]), "sweep_s": float(np.median(per_sweep[1:])),
            "train_rmse": model.history["train_rmse"][-1],
            "bytes_per_sweep": exchanged_bytes(n_users, n_items, args.factors, world),
        }))
    dist.destroy_process_group()


def main(argv=None):
    """Launch each process count with torchrun, print the speed-up table and write it to ``--out``."""
    parser = argparse.ArgumentParser(description="Distributed ALS speed-up with torchrun.")
    parser.add_argument("--shape", default="ml-1m", choices=list(SHAPES))
    parser.add_argument("--procs", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--factors", type=int, default=50)
    parser.add_argument("--sweeps", type=int, default=4)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default="bench-results/distributed")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.worker:
        worker(args)
        return 0
    rows = []
    for procs in args.procs:
        print(f"{procs} process(es)...", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
               "-m", "benchmarks.distributed_als", "--worker", "--shape", args.shape, "--factors",
               str(args.factors), "--sweeps", str(args.sweeps), "--device", args.device, "--out", args.out]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"torchrun with {procs} process(es) failed:\n{proc.stderr[-2000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    base = rows[0]
    reference = np.load(Path(args.out) / f"qi-{base['processes']}.npy")
    n_users, n_items, n_ratings = SHAPES[args.shape]
    lines = [f"ALS, {args.factors} factors, synthetic {args.shape} shape ({n_users:,} x {n_items:,}, "
             f"{n_ratings:,} ratings), {args.device}; median of sweeps 2..{args.sweeps}.", "",
             "| processes | threads each | s / sweep | speed-up | MB exchanged / sweep | train RMSE | "
             "max abs diff of qi vs first row |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        diff = float(np.abs(np.load(Path(args.out) / f"qi-{row['processes']}.npy") - reference).max())
        row["max_abs_diff_qi"] = diff
        lines.append(f"| {row['processes']} | {row['threads_per_process'] or '-'} | {row['sweep_s']:.3f} | "
                     f"{base['sweep_s'] / row['sweep_s']:.2f}x | {row['bytes_per_sweep'] / 1e6:.2f} | "
                     f"{row['train_rmse']:.4f} | {diff:.1e} |")
    table = "\n".join(lines)
    (Path(args.out) / "distributed.md").write_text(table + "\n")
    (Path(args.out) / "distributed.json").write_text(json.dumps(
        {"environment": describe_environment(args.device), "arguments": vars(args), "rows": rows}, indent=2))
    for npy in Path(args.out).glob("qi-*.npy"):
        npy.unlink()
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

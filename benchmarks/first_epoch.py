"""A fit's first epoch against its later ones, over many processes: where the setup's time goes.

The first epoch of a fit from arrays includes everything before it: validation, the rating scale, the
sparse index, the item side's tiles, the initial draws, and the first touch of every buffer. On a shared
machine one process's first epoch can take 30% longer than the next one's for reasons outside the code, so
a change to the setup is judged here over many processes, run alternately so that the machine's slow
spells fall on every variant alike, by the median. Each process is one
``python -m benchmarks.scaling --worker`` (the same fit and timing as the scaling table).

A variant is a checkout (``--checkouts``: a directory holding another revision of this repository, e.g. a
``git worktree``) and an environment (``--variants``: ``NAME=VALUE`` assignments separated by spaces, or
``default``). For example, how much of the first epoch is the kernel handing out fresh pages::

    python -m benchmarks.first_epoch --repeat 8 --variants default \\
        "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967295"

(the second keeps freed memory in the process, so buffers reuse pages touched before the fit).
Each process fits twice (``--fits``): the second fit's first epoch against its later ones is what
``cross_validate``'s later folds see. Results go to ``--out`` as JSON and a Markdown table.

Before each round of processes, probes (:func:`probe_round`) time writing memory that a new process has
never touched, in 4 KB and in 2 MB pages, each followed by :data:`PROBE_SETTLE_S` of quiet so that the fits
do not reuse its pages. On a virtual machine whose balloon device reports free memory to the host (this
one's does), the host takes back free 2 MB blocks a few seconds after they are freed and hands them out
again on first touch, at many times the cost of memory freed just now (1 GB in 4 KB pages: 2.16-2.41 s against
0.11-0.15 s here; 2 MB pages, which come from exactly those blocks, 160-205 ms per 100 MB against 10-13).
A first epoch writes tens to hundreds of MB of new buffers, so its time follows the probes from hour to
hour: first epochs of runs with different probe figures are not comparable, only the checkouts and variants
inside one run are.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .environment import describe_environment
from .synthetic import SHAPES


#: Megabytes the probe writes, twice.
PROBE_MB = 64

#: Seconds to wait after each probe: Linux reports freed memory to the host about two seconds after it is
#: freed, so the next process finds the probe's pages as far from the host as its own.
PROBE_SETTLE_S = 3.0

_PROBE = """
import ctypes, sys, time
import numpy as np
n, huge = int(sys.argv[1]) * 2 ** 20, sys.argv[2] == "huge"
times = []
for _ in range(2):
    a = np.empty(n + 2 ** 21, np.uint8)
    start = -(-a.ctypes.data // 2 ** 21) * 2 ** 21
    if huge:  # MADV_HUGEPAGE, as the fits' large buffers are advised (surprise_torch.trainers._memory)
        ctypes.CDLL(None).madvise(ctypes.c_void_p(start), ctypes.c_size_t(n), 14)
    a = a[start - a.ctypes.data:][:n]
    begin = time.perf_counter()
    a.fill(1)
    times.append(time.perf_counter() - begin)
    del a
print(*times)
"""


def fresh_memory_ms(mb: int = PROBE_MB, huge: bool = False, timeout: float = 60) -> dict | None:
    """Milliseconds per 100 MB to write memory a new process has never touched, and to write it again at once.

    ``fresh`` is the first write of ``mb`` MB in a new process: what a first
    epoch's new buffers cost. ``refault`` is the same size again, right after
    freeing the first (returned to the kernel, which hands the same pages
    back before it has reported them to the host): what fresh memory costs
    the guest alone. With ``huge``, the memory is marked ``MADV_HUGEPAGE``
    first (2 MB pages where transparent huge pages are ``madvise`` or
    ``always``), as a fit's large buffers are. None if the probe fails.
    """
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(mb), "huge" if huge else "small"], capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        return None
    fresh, refault = map(float, proc.stdout.split())
    return {"fresh": fresh * 1e3 * 100 / mb, "refault": refault * 1e3 * 100 / mb}


def probe_round() -> dict:
    """One round of probes, 4 KB and 2 MB pages, each followed by :data:`PROBE_SETTLE_S` of quiet."""
    out = {}
    for name, huge in (("small_pages", False), ("huge_pages", True)):
        out[name] = fresh_memory_ms(huge=huge)
        time.sleep(PROBE_SETTLE_S)
    return out


def run_once(checkout: Path, variant: str, algorithm: str, shape: str, timeout: float, fits: int = 1,
             pause: float = 0.0) -> dict:
    """One worker process of ``benchmarks.scaling`` in ``checkout`` with ``variant``'s environment,
    fitting ``fits`` times, ``pause`` seconds apart (the later fits' first epochs as ``next_fit_*``)."""
    env = dict(os.environ)
    if variant != "default":
        env |= dict(assignment.split("=", 1) for assignment in variant.split())
    # --pause only when asked for: checkouts older than it compare as before.
    paused = ["--pause", str(pause)] if pause else []
    proc = subprocess.run([sys.executable, "-m", "benchmarks.scaling", "--fits", str(fits), *paused,
                           "--worker", algorithm, shape],
                          cwd=checkout, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"status": "failed", "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(runs: list) -> dict:
    """Median, smallest and largest of each measure over one variant's successful runs."""
    ok = [run for run in runs if run.get("status") == "ok"]
    out = {"runs": len(runs), "ok": len(ok)}
    measures = {"first_epoch_s": lambda r: r["first_epoch_s"], "epoch_s": lambda r: r["epoch_s"],
                "ratio": lambda r: r["first_epoch_s"] / r["epoch_s"],
                "first_epoch_faults": lambda r: r.get("first_epoch_faults"),
                "next_ratio": lambda r: (r["next_fit_first_epoch_s"] / r["next_fit_epoch_s"]
                                         if "next_fit_first_epoch_s" in r else None),
                "peak_rss_gib": lambda r: r["peak_rss_gib"]}
    for name, value in measures.items():
        values = [v for v in map(value, ok) if v is not None]
        if values:
            out[name] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return out


def markdown(summaries: dict, algorithm: str, shape: str) -> str:
    """The table of :func:`summarise` per variant."""
    lines = [f"{algorithm} on the {shape} shape: median (smallest-largest) over processes run alternately.", "",
             "| checkout | environment | runs | first epoch s | later epoch s | first / later | fresh pages "
             "in the first epoch | peak RSS GiB | the process's next fit: first / later |",
             "|---|---|---|---|---|---|---|---|---|"]

    def cell(summary, name, fmt):
        if name not in summary:
            return "-"
        s = summary[name]
        return f"{s['median']:{fmt}} ({s['min']:{fmt}}-{s['max']:{fmt}})"

    for (checkout, variant), s in summaries.items():
        lines.append(f"| {checkout} | `{variant}` | {s['ok']}/{s['runs']} | {cell(s, 'first_epoch_s', '.3f')} | "
                     f"{cell(s, 'epoch_s', '.3f')} | {cell(s, 'ratio', '.2f')} | "
                     f"{cell(s, 'first_epoch_faults', '.0f')} | {cell(s, 'peak_rss_gib', '.3f')} | "
                     f"{cell(s, 'next_ratio', '.2f')} |")
    return "\n".join(lines)


def probe_line(probes: list) -> str:
    """The probes' medians and ranges (rounds of :func:`probe_round`), as a sentence under the table."""

    def cell(kind, name):
        values = [p[kind][name] for p in probes if p.get(kind) is not None]
        if not values:
            return "the probe failed"
        return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"

    return (f"Fresh memory in this run ({len(probes)} rounds of {PROBE_MB} MB probes), ms per 100 MB: never touched "
            f"{cell('small_pages', 'fresh')} in 4 KB pages and {cell('huge_pages', 'fresh')} in 2 MB pages; "
            f"just freed {cell('small_pages', 'refault')} and {cell('huge_pages', 'refault')}.")


def main(argv=None):
    """Run every (checkout, variant) ``--repeat`` times, alternating, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", default="TorchSVD")
    parser.add_argument("--shape", default="ml-10m", choices=sorted(SHAPES))
    parser.add_argument("--repeat", type=int, default=8, help="processes per variant")
    parser.add_argument("--checkouts", nargs="+", default=["."], help="repository directories to compare")
    parser.add_argument("--variants", nargs="+", default=["default"],
                        help='environments to compare: "NAME=VALUE NAME=VALUE" or default')
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per process")
    parser.add_argument("--out", default="bench-results/first-epoch")
    parser.add_argument("--fits", type=int, default=2,
                        help="fits per process (default 2): the first in a fresh process, the next as in "
                             "cross_validate's later folds (1: the first only)")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds between a process's fits (default 0), as building a fold's Trainset takes")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.fits < 1:
        parser.error("--fits must be at least 1")
    if args.pause < 0:
        parser.error("--pause must not be negative")
    combos = [(checkout, variant) for checkout in args.checkouts for variant in args.variants]
    runs = {combo: [] for combo in combos}
    probes = []
    for repetition in range(args.repeat):
        probes.append(probe_round())
        for checkout, variant in combos:
            try:
                row = run_once(Path(checkout).resolve(), variant, args.algorithm, args.shape, args.timeout,
                               args.fits, args.pause)
            except subprocess.TimeoutExpired:
                row = {"status": "timeout"}
            runs[checkout, variant].append(row)
            print(f"{repetition + 1}/{args.repeat} {checkout} {variant}: "
                  f"{row.get('first_epoch_s', row.get('status'))}", file=sys.stderr, flush=True)
    summaries = {combo: summarise(rows) for combo, rows in runs.items()}
    table = markdown(summaries, args.algorithm, args.shape) + "\n\n" + probe_line(probes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "first_epoch.json").write_text(json.dumps(
        {"environment": describe_environment("cpu"), "algorithm": args.algorithm, "shape": args.shape,
         "fresh_memory_ms_per_100mb": probes,
         "variants": [{"checkout": c, "environment": v, "summary": summaries[c, v], "runs": runs[c, v]}
                      for c, v in combos]}, indent=2))
    (out / "first_epoch.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

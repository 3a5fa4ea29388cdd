"""Where a fit's first epoch goes: each setup step's and epoch step's start, duration and fresh pages, in one process.

``benchmarks.first_epoch`` says how a first epoch compares with the later ones
over many processes; this says what the first one is made of. It fits (once by default) on a
synthetic shape (as ``benchmarks.scaling`` does, the same split and defaults)
with timers around the library's setup steps, and prints, per step, when it
started after the fit began, how long it took and how many pages the kernel
handed the process fresh meanwhile (each costs about a microsecond here), then
the epochs::

    python -m benchmarks.setup_timeline --shape ml-10m

With ``--fits 3`` it fits three times in the one process and prints each
fit's timeline: the later ones pay no step's first call in a process, so
what they still spend before the first product is the setup's own work.

The steps are internal functions, wrapped here by name: a rename in the
library shows up as an ``AttributeError`` here, not as a silently missing row.
Steps that run on a worker thread (the initial draws, beside the item side's
tile cut) overlap the step that started them. The epoch steps (the sampled
product of the residuals, the last-sound-state copy, the item side's reorder,
the optimizer's step) appear once per epoch: the first epoch's against the
next one's is what its first writes cost.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from .scaling import holdout_split, synthetic_ratings
from .synthetic import SHAPES

#: (module, attribute) of each timed step, in the order a fit reaches them.
STEPS = [("surprise_torch.arrays", "as_rating_arrays"), ("surprise_torch.arrays", "_setup"),
         ("surprise_torch.arrays", "_scale_of"), ("surprise_torch.arrays", "RatingScale.standardise"),
         ("surprise_torch.arrays", "ratings_tensor"), ("surprise_torch.trainers.svd", "observed_ratings"),
         ("surprise_torch.trainers.svd", "centred"), ("surprise_torch.trainers.svd", "init_factors"),
         ("surprise_torch.trainers._observed", "Observed.prepare_item_product"),
         # Then each epoch's steps that write buffers first touched in the first epoch.
         ("torch.sparse", "sampled_addmm"), ("surprise_torch.trainers.svd", "keep_rows"),
         ("surprise_torch.trainers._observed", "gather"), ("surprise_torch.trainers._optim", "_Plain.step")]


def timed(rows: list, patch=setattr):
    """Wrap every step of :data:`STEPS` so that each call appends ``(name, start, end, fresh pages)`` to ``rows``.

    Fresh pages are the process's minor page faults during the call (every
    thread's: a step's work on a worker lane counts too).

    ``patch(owner, name, wrapper)`` installs each wrapper (``setattr``; a
    test passes pytest's ``monkeypatch.setattr``, which undoes it).
    """
    import importlib

    for module_name, path in STEPS:
        owner = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        original = getattr(owner, name)

        def wrapper(*args, _original=original, _name=path, **kwargs):
            faults, start = _faults(), time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                rows.append((_name, start, time.perf_counter(), _faults() - faults))

        patch(owner, name, wrapper)


def _faults() -> int:
    """Minor page faults of the process so far (0 where ``resource`` is missing: Windows)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main(argv=None):
    """Fit TorchSVD's trainer with the steps timed, ``--fits`` times in one process; print each timeline in ms.

    The first fit pays every step's first call in a new process; a later
    one shows the setup's own work, what no first call explains.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="ml-10m", choices=sorted(SHAPES))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fits", type=int, default=1,
                        help="fits in the process, each timed (the later ones pay no first calls)")
    args = parser.parse_args(argv)
    if args.fits < 1:
        parser.error("--fits must be at least 1")
    from surprise_torch import TorchSVD, train_on_arrays

    users, items, ratings, n_users, n_items = synthetic_ratings(args.shape)
    (users, items, ratings), _ = holdout_split(users, items, ratings)
    algo = TorchSVD()
    rows, stamps = [], []
    timed(rows)
    for fit in range(1, args.fits + 1):
        rows.clear()
        stamps.clear()
        start = time.perf_counter()
        train_on_arrays(algo._trainer, users, items, ratings, n_users=n_users, n_items=n_items, layout="sparse",
                        device="cpu", dtype=torch.float32, random_state=0,
                        callback=lambda epoch, metrics: stamps.append(time.perf_counter()),
                        **algo._trainer_kwargs() | {"n_epochs": args.epochs})
        which = "one fit in a fresh process" if fit == 1 else f"fit {fit} of the same process"
        print(f"TorchSVD, {args.shape} shape, {which} (ms after the fit began)")
        print("| step | start | duration | fresh pages |\n|---|---|---|---|")
        for name, begin, end, faults in rows:
            print(f"| {name} | {(begin - start) * 1e3:.1f} | {(end - begin) * 1e3:.1f} | {faults:,} |")
        for epoch, (begin, end) in enumerate(zip([start] + stamps, stamps), 1):
            print(f"| epoch {epoch} | {(begin - start) * 1e3:.1f} | {(end - begin) * 1e3:.1f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

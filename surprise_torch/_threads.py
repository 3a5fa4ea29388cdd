"""How many CPU threads a fit uses, and how the caller's setting survives it.

The policy, applied by :func:`~surprise_torch.train_on_arrays` (so by every
algorithm class) to every fit on the CPU:

1. :func:`set_num_threads` pins an exact count, for users who know better.
2. Otherwise torch's current setting is the most a fit may use. It already
   holds what the user chose (``torch.set_num_threads``, ``OMP_NUM_THREADS``
   or ``MKL_NUM_THREADS``), and inside Surprise's ``n_jobs`` workers it holds
   cores / n_jobs, because joblib's default (loky) backend sets
   ``OMP_NUM_THREADS`` that way in every worker before torch starts there.
3. A fit whose per-epoch products are small (under
   :data:`SINGLE_THREAD_WORK` multiply-adds) runs on one thread. Each epoch
   is hundreds of short parallel regions; when any other process takes a
   core, every region waits for the thread that lost it, and a fit that takes
   0.2 s alone takes seconds. Below the line, a second thread gains little
   even on an idle machine (see :data:`SINGLE_THREAD_WORK`).
4. The caller's setting is restored afterwards, also when the fit raises.
5. Model selection (:mod:`surprise_torch.model_selection`) runs its
   stacked programs in :func:`run_lanes`: as many side by side as a large
   fit would get threads, each on one Python thread with one torch thread,
   instead of one program at a time on all of them. Batched Cholesky
   factors one matrix per LAPACK call on one core, and each epoch holds
   many short parallel regions; independent programs keep both cores busy
   (ML-100K grids: 10-20% faster than one program on two threads).

GPU fits are left alone: their work is on the device.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["set_num_threads", "fit_threads", "thread_policy", "lane_count", "lanes_running", "run_lanes",
           "run_beside", "workers", "SINGLE_THREAD_WORK"]

#: Multiply-adds of a fit's widest per-epoch product (ratings x product width,
#: see each trainer's ``work_per_rating``) under which the fit runs on one
#: thread. Measured on a 2-core CPU (``python -m benchmarks.workflows``): an
#: ML-100K fold (80k ratings; TorchSVD's 8M, TorchALS's 18M) fits only 1.15-1.25x
#: faster on two threads than on one when the machine is idle, but 1.3-3x
#: slower (and, reported on another machine, up to 30x) beside one busy
#: process; from 1M ratings x 100 factors (10^8) two threads fit 1.6x faster idle.
SINGLE_THREAD_WORK = 2 ** 25

_pinned: int | None = None

# Set on the threads of run_lanes: every fit there runs on its own one thread.
_lane = threading.local()


def set_num_threads(n: int | None) -> None:
    """Pin the number of CPU threads every fit uses, or return to the policy.

    Parameters
    ----------
    n : int or None
        Threads for every fit from now on, whatever its size; ``None``
        restores the automatic policy (module docstring).

    Raises
    ------
    ValueError
        If ``n`` is not None or a positive integer.
    """
    global _pinned
    if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1):
        raise ValueError(f"n must be None or a positive integer, got {n!r}.")
    _pinned = None if n is None else int(n)


def fit_threads(work: float) -> int:
    """The number of threads a CPU fit of ``work`` multiply-adds per product uses now.

    Parameters
    ----------
    work : float
        Ratings times the width of the trainer's widest per-epoch product.

    Returns
    -------
    int
    """
    if getattr(_lane, "active", False):
        return 1
    if _pinned is not None:
        return _pinned
    allowed = torch.get_num_threads()
    return 1 if work < SINGLE_THREAD_WORK else allowed


@contextlib.contextmanager
def thread_policy(work: float, device: torch.device):
    """Run the enclosed fit with :func:`fit_threads` threads, then restore the caller's count.

    Parameters
    ----------
    work : float
        As for :func:`fit_threads`.
    device : torch.device
        Threads are only changed for CPU fits.

    Yields
    ------
    int
        The threads the fit runs with.
    """
    previous = torch.get_num_threads()
    threads = fit_threads(work) if device.type == "cpu" else previous
    if threads != previous:
        torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def lanes_running() -> int:
    """How many lanes of :func:`run_lanes` run beside the calling thread's, itself included (1 outside lanes).

    Each lane's programs may take only this share of the memory a lone program may.
    """
    return getattr(_lane, "of", 1) if getattr(_lane, "active", False) else 1


def lane_count() -> int:
    """How many independent CPU programs :func:`run_lanes` should run side by side: a large fit's threads."""
    return fit_threads(float("inf"))


def run_lanes(jobs: list, n_lanes: int) -> None:
    """Run ``jobs`` on ``n_lanes`` lanes side by side, each lane a thread with one torch thread.

    The lanes are the calling thread and workers kept for the process (see
    :func:`run_beside`); every job runs as a lane's (:func:`fit_threads` is
    1 there, :func:`lanes_running` is ``n_lanes``).

    Each lane takes the next job whenever it finishes one, so that a lane
    slowed down (by another process on the machine, say) takes fewer. Over
    four alternating pairs of runs of an ML-100K grid on a shared 2-core
    machine, the spread of wall times fell from 0.7 s (the jobs split
    between the lanes beforehand) to 0.2 s, for the same mean.

    Parameters
    ----------
    jobs : list of callable
        Called without arguments, in order as lanes come free.
    n_lanes : int
        Lanes to run. With one (or one job) the jobs run in the calling
        thread as it is; otherwise torch is set to one thread meanwhile
        (restored afterwards).

    Raises
    ------
    Exception
        The first exception a job raised, once every lane has stopped (no
        lane starts another job after it).
    """
    jobs = list(jobs)
    n_lanes = min(n_lanes, len(jobs))
    if n_lanes <= 1:
        for job in jobs:
            job()
        return

    def in_lane(job):
        def run():
            _lane.active, _lane.of = True, n_lanes
            try:
                job()
            finally:
                _lane.active = False
        return run

    run_beside([], [in_lane(job) for job in jobs], n_lanes)


_pool = (None, 0)  # worker threads kept for the process beside the calling one, and how many
_pool_lock = threading.Lock()
_in_worker = threading.local()  # set on a worker while it runs a lane of run_beside


def _forget_pool():
    # A forked child inherits the pool but none of its threads: work sent to it would never run.
    global _pool, _pool_lock
    _pool, _pool_lock = (None, 0), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def workers(n: int) -> ThreadPoolExecutor:
    """A pool of at least ``n`` worker threads, kept for the process.

    Kept rather than made per call: a new thread's memory comes from a new
    allocator arena, whose pages are fresh (ML-10M's tile cut on two new
    threads: 27k page faults against 9k on the calling thread).
    """
    global _pool
    with _pool_lock:
        if _pool[1] < n:
            _pool = (ThreadPoolExecutor(n, thread_name_prefix="surprise_torch"), n)
        return _pool[0]


def run_beside(first: list, jobs: list, lanes: int) -> None:
    """Run ``first`` on a worker thread, and ``jobs`` on ``lanes`` lanes, each lane one torch thread.

    The calling thread is a lane; the worker lanes (:func:`workers`) run
    ``first``, then take ``jobs`` as the calling one does, the next whenever
    one finishes. A worker allocates from its own arena, whose pages are
    fresh the first time, so the worker starts with ``first``: the work
    that allocates least. With one lane, everything runs on the calling
    thread as it is, as it does on a worker (a lane waiting for lanes queued
    behind it on the same workers could wait for ever).

    Parameters
    ----------
    first : list of callable
        Run in order on one worker lane before it takes any of ``jobs``.
    jobs : list of callable
        Independent jobs, each run once, in any order, on any lane.
    lanes : int
        Lanes, the calling thread's included: the threads the work may use.

    Raises
    ------
    Exception
        The first exception a lane raised, once every lane has stopped (no
        lane takes another job after it).
    """
    if lanes <= 1 or getattr(_in_worker, "active", False):
        for job in [*first, *jobs]:
            job()
        return
    pending, lock, failed = iter(jobs), threading.Lock(), threading.Event()

    def lane(start=(), worker=False):
        _in_worker.active = worker
        try:
            for job in start:
                job()
            while not failed.is_set():
                with lock:
                    job = next(pending, None)
                if job is None:
                    return
                job()
        except BaseException:
            failed.set()
            raise
        finally:
            _in_worker.active = False

    previous = torch.get_num_threads()
    # One thread per lane before any lane starts: a worker's torch call on more would start a second
    # OpenMP team beside the caller's.
    torch.set_num_threads(1)
    try:
        futures = [workers(lanes - 1).submit(lane, first if w == 0 else (), True)
                   for w in range(lanes - 1)]
        error = None
        try:
            lane()
        except BaseException as exc:
            error = exc
        for future in futures:  # every lane stops before the threads are restored
            if future.exception() is not None and error is None:
                error = future.exception()
        if error is not None:
            raise error
    finally:
        torch.set_num_threads(previous)

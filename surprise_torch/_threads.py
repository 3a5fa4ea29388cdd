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

GPU fits are left alone: their work is on the device.
"""

from __future__ import annotations

import contextlib
import numbers

import torch

__all__ = ["set_num_threads", "fit_threads", "thread_policy", "SINGLE_THREAD_WORK"]

#: Multiply-adds of a fit's widest per-epoch product (ratings x product width,
#: see each trainer's ``work_per_rating``) under which the fit runs on one
#: thread. Measured on a 2-core CPU (``python -m benchmarks.workflows``): an
#: ML-100K fold (80k ratings; TorchSVD's 8M, TorchALS's 18M) fits only 1.15-1.25x
#: faster on two threads than on one when the machine is idle, but 1.3-3x
#: slower (and, reported on another machine, up to 30x) beside one busy
#: process; from 1M ratings x 100 factors (10^8) two threads fit 1.6x faster idle.
SINGLE_THREAD_WORK = 2 ** 25

_pinned: int | None = None


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

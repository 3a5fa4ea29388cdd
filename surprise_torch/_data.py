"""Moving ratings between Surprise's containers and tensors, without per-rating Python code."""

from __future__ import annotations

import functools
import glob
import itertools
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch

#: Dense ``n_users x n_items`` buffers of the dense layout (the ratings and
#: the mask; the trainers then work on the observed entries only), used to
#: judge whether it fits before anything is allocated.
DENSE_BUFFERS = 2


@dataclass(frozen=True)
class RatingArrays:
    """The ratings of a trainset as parallel NumPy arrays of inner ids.

    Attributes
    ----------
    users, items : numpy.ndarray of int64
        Inner user and item ids.
    ratings : numpy.ndarray of float64 (or float32, as given to train_on_arrays)
        The ratings, in the trainset's scale.
    n_users, n_items : int
        Sizes of the id spaces (the dense matrix shape).
    ordered : bool, default False
        True when the ratings are known to be sorted by (user, item) with
        no pair repeated (:func:`~surprise_torch.arrays.as_rating_arrays`
        makes them so), so that nothing needs to check or sort them again.
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    n_users: int
    n_items: int
    ordered: bool = False


#: One ``(inner item id, rating)`` tuple of a Trainset's ``ur`` lists, as a NumPy record.
_PAIR = np.dtype([("item", np.int64), ("rating", np.float64)])


def trainset_arrays(trainset) -> RatingArrays:
    """Extract a Surprise Trainset's ratings as arrays.

    Surprise keeps ratings as a dict of per-user lists of ``(item, rating)``
    tuples; flattening them with ``itertools.chain`` into ``np.fromiter``
    keeps the per-rating work in C. Read as records, a tuple each, rather
    than as a stream of both fields' floats: an ML-100K fold's 80,000
    ratings took 21 against 29 ms (a tenth of a TorchSVD fit; the same at
    ML-10M's size).

    Parameters
    ----------
    trainset : surprise.Trainset

    Returns
    -------
    RatingArrays
        Unvalidated: :func:`~surprise_torch.arrays.as_rating_arrays` checks
        them (empty, non-finite) on the way to the trainer.
    """
    arrays = getattr(trainset, "rating_arrays", None)
    if arrays is not None:  # a fold built with NumPy (see _folds.ArrayTrainset) carries them
        return arrays
    user_lists = [trainset.ur[u] for u in range(trainset.n_users)]
    counts = np.fromiter(map(len, user_lists), dtype=np.int64, count=trainset.n_users)
    pairs = np.fromiter(itertools.chain.from_iterable(user_lists), dtype=_PAIR, count=int(counts.sum()))
    return RatingArrays(
        users=np.repeat(np.arange(trainset.n_users, dtype=np.int64), counts),
        # One copy each, not one in every later pass over a strided field.
        items=np.ascontiguousarray(pairs["item"]),
        ratings=np.ascontiguousarray(pairs["rating"]),
        n_users=trainset.n_users,
        n_items=trainset.n_items,
    )


def dense_bytes(n_users: int, n_items: int, dtype: torch.dtype, buffers: int = DENSE_BUFFERS) -> int:
    """Bytes the dense layout needs for an ``n_users x n_items`` problem."""
    return n_users * n_items * torch.empty((), dtype=dtype).element_size() * buffers


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` in bytes, or None where it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        # MemAvailable counts reclaimable page cache, which free pages do not.
        try:
            with open("/proc/meminfo") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


@functools.lru_cache(maxsize=None)
def cache_bytes() -> int | None:
    """Size in bytes of the CPU's last-level data cache (as the first core sees it), or None where it cannot be told.

    Read from Linux's ``/sys/devices/system/cpu/cpu0/cache``; elsewhere None.
    """
    best = None
    for folder in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
        try:
            with open(f"{folder}/type") as kind, open(f"{folder}/level") as level, open(f"{folder}/size") as size:
                kind, level, size = kind.read().strip(), int(level.read()), size.read().strip()
            factor = {"K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30}.get(size[-1:].upper(), 1)
            size = int(size.rstrip("KMGkmg")) * factor
        except (OSError, ValueError):
            continue
        if kind != "Instruction" and (best is None or level > best[0]):
            best = (level, size)
    return None if best is None else best[1]


def tensor_view(array: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing ``array``'s memory (a contiguous copy where it is strided), only to read from.

    torch warns once per process about read-only arrays (pandas' copy-on-write
    columns, memory-mapped files), as writing through the tensor would change
    them. Nothing here writes through these views, so that warning is kept
    from the caller.
    """
    array = np.ascontiguousarray(array)
    if array.flags.writeable:
        return torch.from_numpy(array)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def to_dense(arrays: RatingArrays, device: torch.device, dtype: torch.dtype):
    """Scatter the ratings into a dense rating matrix and a 0/1 mask on ``device``.

    Parameters
    ----------
    arrays : RatingArrays
    device : torch.device
    dtype : torch.dtype

    Returns
    -------
    ratings, mask : torch.Tensor
        ``(n_users, n_items)`` tensors; unobserved entries are 0 in both. The
        mask is in ``dtype`` (not bool) because the trainers multiply by it.
    """
    users = tensor_view(arrays.users).to(device)
    items = tensor_view(arrays.items).to(device)
    shape = (arrays.n_users, arrays.n_items)
    ratings = torch.zeros(shape, dtype=dtype, device=device)
    ratings[users, items] = tensor_view(arrays.ratings).to(device=device, dtype=dtype)
    mask = torch.zeros(shape, dtype=dtype, device=device)
    mask[users, items] = 1
    return ratings, mask


def testset_indices(trainset, testset):
    """Map a Surprise testset's raw ids to inner ids, -1 where unknown.

    Parameters
    ----------
    trainset : surprise.Trainset
    testset : iterable of (raw_uid, raw_iid, r_ui)

    Returns
    -------
    uids, iids : list
        The raw ids, as given.
    r_ui : list
    users, items : numpy.ndarray of int64
        Inner ids, or -1 for users/items the trainset does not know.
    """
    testset = list(testset)
    if testset:
        uids, iids, r_ui = map(list, zip(*testset))
    else:
        uids, iids, r_ui = [], [], []
    # dict.get through map runs the lookups in C, once per rating.
    users = np.fromiter(map(trainset._raw2inner_id_users.get, uids, itertools.repeat(-1)),
                        dtype=np.int64, count=len(uids))
    items = np.fromiter(map(trainset._raw2inner_id_items.get, iids, itertools.repeat(-1)),
                        dtype=np.int64, count=len(iids))
    return uids, iids, r_ui, users, items

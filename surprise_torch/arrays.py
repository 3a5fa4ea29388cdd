"""Training straight from arrays of (user, item, rating), for data that never was a Trainset.

This is the layer the Surprise classes stand on: they flatten their Trainset
into arrays and call :func:`train_on_arrays`, which picks the tensor layout,
checks that data and model fit on the device before allocating anything, and
runs a trainer.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ._config import check_random_state, resolve_device, resolve_dtype
from ._data import RatingArrays, available_bytes, dense_bytes, to_dense
from .trainers import MFModel, train_als, train_nmf, train_svd

__all__ = ["train_on_arrays", "ratings_tensor", "choose_layout", "as_rating_arrays", "DENSE_BUDGET"]

#: The share of the device's available memory the dense layout may take under
#: ``layout="auto"``; above it the sparse layout is used. The dense matrix is
#: only an input format (training always runs on the observed entries), so it
#: is worth its memory only when that memory is plentiful.
DENSE_BUDGET = 0.25

_INDEX_BYTES_PER_RATING = 5 * 8  # users, items, item order, item columns, spare int64 per rating


def choose_layout(layout: str, n_users: int, n_items: int, dtype: torch.dtype, device: torch.device) -> str:
    """Resolve ``layout`` (``"auto"``, ``"dense"`` or ``"sparse"``) to dense or sparse.

    ``"auto"`` is dense when the dense layout needs at most
    :data:`DENSE_BUDGET` of the device's available memory (2 GiB where that
    cannot be told, as on MPS), sparse otherwise.
    """
    if layout not in ("auto", "dense", "sparse"):
        raise ValueError(f"layout must be 'auto', 'dense' or 'sparse', got {layout!r}.")
    if layout != "auto":
        return layout
    free = available_bytes(device)
    budget = DENSE_BUDGET * free if free is not None else 2 * 2**30
    return "dense" if dense_bytes(n_users, n_items, dtype) <= budget else "sparse"


def ratings_tensor(arrays: RatingArrays, layout: str, device, dtype):
    """The tensors trainers take: ``(dense ratings, mask)`` or ``(sparse COO ratings, None)``."""
    if layout == "dense":
        return to_dense(arrays, device, dtype)
    indices = torch.from_numpy(np.stack([arrays.users, arrays.items])).to(device)
    values = torch.from_numpy(arrays.ratings).to(device=device, dtype=dtype)
    coo = torch.sparse_coo_tensor(indices, values, (arrays.n_users, arrays.n_items), check_invariants=False)
    return coo.coalesce(), None


def training_bytes(trainer, n_users: int, n_items: int, n_ratings: int, dtype: torch.dtype, layout: str,
                   **kwargs) -> int:
    """Estimated peak memory of training: the data in its layout, its index, and the model.

    The model term is the trainer's ``memory_bytes`` (factors, optimizer
    state, normal-equation matrices); the estimate errs on the high side.
    """
    size = torch.empty((), dtype=dtype).element_size()
    data = dense_bytes(n_users, n_items, dtype) if layout == "dense" else n_ratings * (16 + size)
    per_rating = n_ratings * (_INDEX_BYTES_PER_RATING + 6 * size)
    return data + per_rating + trainer.memory_bytes(n_users, n_items, size, **kwargs)


def check_fits(trainer, n_users, n_items, n_ratings, dtype, layout, device, **kwargs):
    """Raise ``MemoryError`` before allocating if training would not fit on ``device``."""
    need = training_bytes(trainer, n_users, n_items, n_ratings, dtype, layout, **kwargs)
    free = available_bytes(device)
    if free is not None and need > free:
        halve = "dtype='float32', " if dtype == torch.float64 else ""
        sparse = "layout='sparse', " if layout == "dense" else ""
        raise MemoryError(
            f"Training on {n_users} users x {n_items} items ({n_ratings} ratings, {layout} layout) needs "
            f"about {need / 2**30:.1f} GiB on {device}, but only {free / 2**30:.1f} GiB is available. "
            f"Use {halve}{sparse}fewer n_factors, a device with more memory, or a subset of the data."
        )


def as_rating_arrays(users, items, ratings, n_users=None, n_items=None) -> RatingArrays:
    """Validate and normalise ``(user, item, rating)`` arrays.

    Ids must be integers in ``[0, n_users)`` and ``[0, n_items)``; a pair
    given more than once keeps its last rating (a matrix holds one value per
    cell).

    Raises
    ------
    ValueError
        For empty or mismatched arrays, negative or out-of-range ids, or
        NaN/infinite ratings.
    """
    users, items = np.asarray(users), np.asarray(items)
    ratings = np.asarray(ratings, dtype=np.float64)
    if not (users.ndim == items.ndim == ratings.ndim == 1) or not (len(users) == len(items) == len(ratings)):
        raise ValueError("users, items and ratings must be 1-D arrays of the same length.")
    if len(ratings) == 0:
        raise ValueError("There are no ratings to train on.")
    if not (np.issubdtype(users.dtype, np.integer) and np.issubdtype(items.dtype, np.integer)):
        raise ValueError("users and items must be integer ids (0-based); map raw ids to integers first.")
    if not np.isfinite(ratings).all():
        raise ValueError(f"{int((~np.isfinite(ratings)).sum())} rating(s) are NaN or infinite; remove them.")
    users, items = users.astype(np.int64), items.astype(np.int64)
    n_users = int(users.max()) + 1 if n_users is None else int(n_users)
    n_items = int(items.max()) + 1 if n_items is None else int(n_items)
    if users.min() < 0 or items.min() < 0 or users.max() >= n_users or items.max() >= n_items:
        raise ValueError(f"user ids must lie in [0, {n_users}) and item ids in [0, {n_items}).")
    keys = users * n_items + items
    # The last occurrence of each pair, sorted by (user, item).
    unique, last_from_end = np.unique(keys[::-1], return_index=True)
    if unique.size < keys.size:
        keep = keys.size - 1 - last_from_end
        users, items, ratings = users[keep], items[keep], ratings[keep]
    elif np.any(keys[1:] < keys[:-1]):
        order = np.argsort(keys, kind="stable")
        users, items, ratings = users[order], items[order], ratings[order]
    return RatingArrays(users, items, ratings, n_users, n_items)


def train_on_arrays(trainer, users, items, ratings, *, n_users=None, n_items=None, layout="auto",
                    device="auto", dtype=None, random_state=None, **params) -> MFModel:
    """Train a model on ``(user, item, rating)`` arrays.

    Parameters
    ----------
    trainer : str or callable
        ``"svd"``, ``"svdpp"``, ``"als"``, ``"nmf"``, or a trainer function
        (:func:`~surprise_torch.train_svd`, ...).
    users, items : array-like of int
        0-based ids.
    ratings : array-like of float
    n_users, n_items : int, optional
        Sizes of the id spaces; default one more than the largest id.
    layout : {"auto", "dense", "sparse"}, default "auto"
        How the ratings reach the trainer; see :func:`choose_layout`. Both
        give the same model.
    device : str or torch.device, default "auto"
    dtype : str or torch.dtype, optional
    random_state : int, optional
        Seed of the initial factors (ignored if ``generator`` is given).
    **params
        The trainer's own parameters (``n_factors``, ``n_epochs``, ...,
        ``generator``, ``eval_data``, ``callback``).

    Returns
    -------
    MFModel
        With ``timings``: the ``layout`` used and ``to_tensors_s``, the
        seconds spent building its tensors.

    Raises
    ------
    ValueError
        For invalid arrays, layout, device or dtype.
    MemoryError
        If data and model would not fit on the device, before allocating.
    """
    if isinstance(trainer, str):
        trainer = _trainer_named(trainer, params)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    arrays = as_rating_arrays(users, items, ratings, n_users, n_items)
    chosen = choose_layout(layout, arrays.n_users, arrays.n_items, dt, dev)
    sizing = {k: v for k, v in params.items() if k in ("n_factors", "biased", "implicit")}
    check_fits(trainer, arrays.n_users, arrays.n_items, len(arrays.ratings), dt, chosen, dev, **sizing)
    start = time.perf_counter()
    tensor, mask = ratings_tensor(arrays, chosen, dev, dt)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    to_tensors_s = time.perf_counter() - start
    params.setdefault("generator", check_random_state(random_state))
    model = trainer(tensor, mask, **params)
    model.timings = {"layout": chosen, "to_tensors_s": to_tensors_s}
    return model


def _trainer_named(name, params):
    trainers = {"svd": train_svd, "svdpp": train_svd, "als": train_als, "nmf": train_nmf}
    if name not in trainers:
        raise ValueError(f"trainer must be one of {sorted(trainers)} or a trainer function, got {name!r}.")
    if name == "svdpp":
        params.setdefault("implicit", True)
    return trainers[name]

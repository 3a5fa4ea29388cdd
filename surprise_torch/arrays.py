"""Training straight from arrays of (user, item, rating), for data that never was a Trainset.

This is the layer the Surprise classes stand on: they flatten their Trainset
into arrays and call :func:`train_on_arrays`, which picks the tensor layout,
checks that data and model fit on the device before allocating anything, and
runs a trainer.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch

from ._config import check_choice, check_int, check_random_state, resolve_device, resolve_dtype
from ._data import RatingArrays, available_bytes, cache_bytes, dense_bytes, tensor_view, to_dense
from ._threads import lanes_running, thread_policy
from .trainers import (MFModel, Stack, TrainingDivergedError, TrainingDivergedWarning, train_als, train_bayes_mf,
                       train_nmf, train_svd)
from .trainers._common import all_finite, mean_and_deviation64, sum64
from .trainers._observed import csr_tensor, index_dtype

__all__ = ["train_on_arrays", "train_rating_arrays", "train_stacked", "ratings_tensor", "choose_layout",
           "as_rating_arrays", "RatingScale", "DENSE_BUDGET", "DENSE_MAX_CELLS_PER_RATING", "STACK_MEMORY_SHARE",
           "CPU_ROUND_BYTES"]

#: Where ``layout="auto"`` may choose the dense layout (see :func:`choose_layout`):
#: the share of the device's available memory it may take; above it the
#: sparse layout is used. The dense matrix is only an input format (training
#: always runs on the observed entries), so it is worth its memory only when
#: that memory is plentiful.
DENSE_BUDGET = 0.25

#: Where ``layout="auto"`` may choose the dense layout, it does only for
#: matrices with at most this many cells per rating (at least 1/64 full;
#: ML-100K has 16, ML-1M 22), since building and scanning a mostly empty
#: matrix costs more than sorting the ratings: 3 ratings on a 12,000 x 12,000
#: matrix took 8.2 s and 1.4 GB dense against 2.5 s and 343 MB sparse.
DENSE_MAX_CELLS_PER_RATING = 64

#: Where ``layout="auto"`` may choose the dense layout, matrices this small
#: are dense however few their ratings: 8 MB in float32.
DENSE_ALWAYS_CELLS = 2 ** 20

_INDEX_BYTES_PER_RATING = 5 * 8  # users, items, item order, item columns, spare int64 per rating

#: What a fit that blows up does: warn and keep its last sound state, or raise.
ON_DIVERGENCE = ("warn", "raise")

#: Share of the device's available memory that one round of stacked fits may
#: take (by :func:`training_bytes`' estimate, which errs high); :func:`train_stacked`
#: takes more fits in further rounds.
STACK_MEMORY_SHARE = 0.5

#: On the CPU a round of stacked fits is also held to the last-level cache's
#: size, by the same estimate (to this many bytes where the size cannot be
#: read). The estimate counts about twice what a fit touches each epoch, so
#: two lanes' rounds together about fill the cache. Large rounds stream
#: every epoch's tables from memory and fault in fresh pages each round: an
#: ML-100K TorchSVD grid
#: (60 fits, two lanes of 15-fit rounds) took 3.40 s and 182k page faults,
#: against 2.75-3.0 s and 104k faults in rounds of 2-4 fits (the cache's
#: 32 MiB); TorchALS's grid 1.66 against 1.55 s. Rounds of one fit were slower.
CPU_ROUND_BYTES = 32 * 2 ** 20

#: Non-negative models (NMF) train on ratings scaled so that the largest is this.
NONNEGATIVE_TOP = 5.0


def choose_layout(layout: str, n_users: int, n_items: int, dtype: torch.dtype, device: torch.device,
                  n_ratings: int | None = None) -> str:
    """Resolve ``layout`` (``"auto"``, ``"dense"`` or ``"sparse"``) to dense or sparse.

    ``"auto"`` is sparse on the CPU and on CUDA devices. Every trainer works
    on the observed entries either way, so the dense matrix is only an input
    format there, and skipping it (building it, then scanning it for the
    observed entries) made fits 6-12% faster at ML-1M sizes.
    Elsewhere (MPS, whose sparse support is partial) it is dense when the
    dense layout needs at most :data:`DENSE_BUDGET` of the device's available
    memory (2 GiB where that cannot be told) and, given ``n_ratings``, the
    matrix has at most :data:`DENSE_MAX_CELLS_PER_RATING` cells per rating
    (or fewer than :data:`DENSE_ALWAYS_CELLS` cells); sparse otherwise.
    """
    if layout not in ("auto", "dense", "sparse"):
        raise ValueError(f"layout must be 'auto', 'dense' or 'sparse', got {layout!r}.")
    if layout != "auto":
        return layout
    if torch.device(device).type in ("cpu", "cuda"):
        return "sparse"
    cells = n_users * n_items
    if n_ratings is not None and cells > max(DENSE_ALWAYS_CELLS, DENSE_MAX_CELLS_PER_RATING * n_ratings):
        return "sparse"
    free = available_bytes(device)
    budget = DENSE_BUDGET * free if free is not None else 2 * 2**30
    return "dense" if dense_bytes(n_users, n_items, dtype) <= budget else "sparse"


def ratings_tensor(arrays: RatingArrays, layout: str, device, dtype):
    """The tensors trainers take: ``(dense ratings, mask)`` or ``(sparse CSR ratings, None)``.

    The CSR tensor's columns are sorted within each row, with int32 indices
    wherever they fit; on the CPU its columns are the arrays' own ids when
    those are int32 already. A COO tensor would copy both id arrays into
    int64 indices (ML-10M: 144 MB of fresh pages, 30-45 ms of a first epoch)
    that the trainers then narrow again.
    """
    if layout == "dense":
        return to_dense(arrays, device, dtype)
    users, items, ratings = arrays.users, arrays.items, arrays.ratings
    if not (arrays.ordered or _ordered(users, items, arrays.n_items)):
        users, items, ratings = _sort_pairs(users, items, ratings, arrays.n_users, arrays.n_items)
    narrow = index_dtype(max(len(items), arrays.n_items))
    ids = tensor_view(users)
    # The users are sorted: each row's start is found, not counted (no pass over every rating).
    rows = torch.arange(arrays.n_users + 1, dtype=ids.dtype)
    crow = torch.searchsorted(ids, rows, out_int32=narrow == torch.int32)
    cols = tensor_view(items).to(narrow)
    values = tensor_view(ratings).to(device=device, dtype=dtype)
    # Sorted by (user, item) with no pair repeated (checked or made so above), the values checked by
    # as_rating_arrays: the trainers need not check them again.
    return csr_tensor(crow.to(device), cols.to(device), values, (arrays.n_users, arrays.n_items),
                      validated=True), None


def training_bytes(trainer, n_users: int, n_items: int, n_ratings: int, dtype: torch.dtype, layout: str,
                   **kwargs) -> int:
    """Estimated peak memory of training: the data in its layout, its index, and the model.

    The model term is the trainer's ``memory_bytes`` (factors, optimizer
    state, normal-equation matrices); the estimate errs on the high side.
    """
    size = torch.empty((), dtype=dtype).element_size()
    data = dense_bytes(n_users, n_items, dtype) if layout == "dense" else n_ratings * (16 + size)
    per_rating = n_ratings * (_INDEX_BYTES_PER_RATING + 6 * size)
    return data + per_rating + trainer.memory_bytes(n_users, n_items, size, n_ratings=n_ratings, **kwargs)


def check_fits(trainer, n_users, n_items, n_ratings, dtype, layout, device, **kwargs):
    """Raise ``MemoryError`` before allocating if training would not fit on ``device``."""
    need = training_bytes(trainer, n_users, n_items, n_ratings, dtype, layout, **kwargs)
    free = available_bytes(device)
    if free is not None and need > free:
        halve = "dtype='float32', " if dtype == torch.float64 else ""
        sparse = "layout='sparse', " if layout == "dense" else ""
        fewer = "fewer n_factors or max_samples" if "max_samples" in kwargs else "fewer n_factors"
        raise MemoryError(
            f"Training on {n_users} users x {n_items} items ({n_ratings} ratings, {layout} layout) needs "
            f"about {need / 2**30:.1f} GiB on {device}, but only {free / 2**30:.1f} GiB is available. "
            f"Use {halve}{sparse}{fewer}, a device with more memory, or a subset of the data."
        )


def as_rating_arrays(users, items, ratings, n_users=None, n_items=None) -> RatingArrays:
    """Validate and normalise ``(user, item, rating)`` arrays.

    Ids must be integers in ``[0, n_users)`` and ``[0, n_items)``; a pair
    given more than once keeps its last rating (a matrix holds one value per
    cell).

    Raises
    ------
    ValueError
        For empty or mismatched arrays, negative or out-of-range ids,
        NaN/infinite ratings, or an ``n_users`` or ``n_items`` that is not a
        positive integer.
    """
    users, items, ratings = np.asarray(users), np.asarray(items), np.asarray(ratings)
    if not (users.ndim == items.ndim == ratings.ndim == 1) or not (len(users) == len(items) == len(ratings)):
        raise ValueError("users, items and ratings must be 1-D arrays of the same length.")
    # Contiguous once here, not in every pass below (each would copy a strided column again). float32 ratings
    # stay float32: a float64 copy of ML-10M's took 0.09 s of a first epoch.
    floating = ratings.dtype in (np.float32, np.float64)
    ratings = np.ascontiguousarray(ratings, dtype=ratings.dtype if floating else np.float64)
    if len(ratings) == 0:
        raise ValueError("There are no ratings to train on.")
    if not (np.issubdtype(users.dtype, np.integer) and np.issubdtype(items.dtype, np.integer)):
        raise ValueError("users and items must be integer ids (0-based); map raw ids to integers first.")
    # Every check is a pass on torch's threads with no array-sized temporary: NumPy's passes run on one
    # core, and each fresh temporary faults in new pages. With the rating scale's and the standardisation's
    # passes (RatingScale), ML-10M's ratings took 30 against 44 ms.
    if not all_finite(tensor_view(ratings)):
        bad = int((~torch.isfinite(tensor_view(ratings))).sum())
        raise ValueError(f"{bad} rating(s) are NaN or infinite; remove them.")
    users, items = np.ascontiguousarray(users, dtype=np.int64), np.ascontiguousarray(items, dtype=np.int64)
    (user_lo, user_hi), (item_lo, item_hi) = _range(users), _range(items)
    n_users = user_hi + 1 if n_users is None else check_int("n_users", n_users)
    n_items = item_hi + 1 if n_items is None else check_int("n_items", n_items)
    if user_lo < 0 or item_lo < 0 or user_hi >= n_users or item_hi >= n_items:
        raise ValueError(f"user ids must lie in [0, {n_users}) and item ids in [0, {n_items}).")
    if not _ordered(users, items, n_items):
        users, items, ratings = _sort_pairs(users, items, ratings, n_users, n_items)
    return RatingArrays(users, items, ratings, n_users, n_items, ordered=True)


def _sort_pairs(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int) -> tuple:
    """The ratings sorted by (user, item), keeping the last occurrence of each pair.

    In torch: its stable sort of integers is several times NumPy's, its
    gathers run on all its threads, and the keys are int32 where every
    ``(user, item)`` cell has one. ML-10M's 9M ratings in a Surprise
    Trainset's order (grouped by user) took 0.36 s against 0.67-0.76 s with
    int64 keys and NumPy's gathers, as the first sort of a process.
    """
    users_t, items_t = tensor_view(users), tensor_view(items)
    narrow = torch.int32 if n_users * n_items <= torch.iinfo(torch.int32).max else torch.int64
    keys = users_t.to(narrow) * n_items + items_t.to(narrow)
    keys, order = torch.sort(keys, stable=True)
    last = torch.ones_like(keys, dtype=torch.bool)
    torch.ne(keys[1:], keys[:-1], out=last[:-1])
    keep = order if bool(last.all()) else order[last]
    return tuple(tensor_view(a).index_select(0, keep).numpy() for a in (users, items, ratings))


def _range(values: np.ndarray) -> tuple:
    """The smallest and the largest value (NaN if any is), in one pass on torch's threads (NumPy's min
    and max make two serial ones: 12 against 5 ms for ML-10M's users and items)."""
    lo, hi = torch.aminmax(tensor_view(values))
    return lo.item(), hi.item()


#: Ratings per chunk of :func:`_ordered`'s check: its keys stay cached and their memory is reused.
_ORDER_CHUNK = 2 ** 18


def _ordered(users: np.ndarray, items: np.ndarray, n_items: int) -> bool:
    """Whether the ``(user, item)`` pairs are strictly increasing: sorted, none repeated.

    A chunk at a time, so that no array of every rating's key is made (72 MB
    at ML-10M's size, whose fresh pages cost more than comparing them).
    """
    users, items = tensor_view(users), tensor_view(items)
    previous = -1
    for start in range(0, len(users), _ORDER_CHUNK):
        # One pass for the keys: items + n_items * users (ML-10M: 9.5 against 11 ms for the check).
        keys = torch.add(items[start:start + _ORDER_CHUNK].long(), users[start:start + _ORDER_CHUNK].long(),
                         alpha=n_items)
        if keys[0] <= previous or bool((keys[1:] <= keys[:-1]).any()):
            return False
        previous = keys[-1]
    return True


def train_on_arrays(trainer, users, items, ratings, *, n_users=None, n_items=None, layout="auto",
                    device="auto", dtype=None, random_state=None, on_divergence="warn", label=None,
                    **params) -> MFModel:
    """Train a model on ``(user, item, rating)`` arrays.

    Three things are decided here for every fit, whichever trainer runs:

    - **Threads** (CPU): the policy of :mod:`surprise_torch._threads`: one
      thread for small fits, never more than torch's current setting, and the
      caller's setting restored afterwards.
    - **Rating scale**: the trainer sees standardised ratings ``(r - c) / s``
      (``c`` the mean for models with a mean term, else 0; ``s`` the spread
      around ``c``), and the fitted model is mapped back (``mu = c + s mu'``,
      biases times ``s``, factors times ``sqrt(s)``), so that fitting on
      ``a r + b`` gives estimates ``a est + b`` with the same parameters and
      seed: regularisation and learning rates mean the same on any scale.
      Models without a mean term (``biased=False``) are only scaled, so for
      them this holds with ``b = 0``; so is NMF, which needs non-negative
      ratings, by its largest rating over 5 (see :meth:`RatingScale.of`).
    - **Divergence**: a fit that blows up warns and returns its last sound
      state (``on_divergence="warn"``), or raises.

    Parameters
    ----------
    trainer : str or callable
        ``"svd"``, ``"svdpp"``, ``"als"``, ``"nmf"``, ``"bayes"``, or a trainer
        function (:func:`~surprise_torch.train_svd`, ...).
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
    random_state : None, int or numpy.random.RandomState, optional
        Seed of the initial factors (ignored if ``generator`` is given).
    on_divergence : {"warn", "raise"}, default "warn"
        When training blows up (a NaN, or a training RMSE far above
        predicting the mean): warn with a
        :class:`~surprise_torch.TrainingDivergedWarning` and return the last
        sound epoch's model (the mean model if none was sound), or raise
        :class:`~surprise_torch.TrainingDivergedError`.
    label : str, optional
        What to call this fit in warnings and errors (the algorithm classes
        pass their ``repr``, which names their non-default parameters).
    **params
        The trainer's own parameters (``n_factors``, ``n_epochs``, ...,
        ``generator``, ``eval_data``, ``callback``), in the ratings' own scale.

    Returns
    -------
    MFModel
        In the ratings' scale, with ``timings``: the ``layout`` used,
        ``to_tensors_s`` (the seconds spent building its tensors) and
        ``threads`` (the CPU threads it ran with).

    Raises
    ------
    ValueError
        For invalid arrays, layout, device or dtype, or ratings too large for
        the dtype.
    MemoryError
        If data and model would not fit on the device, before allocating.
    TrainingDivergedError
        If training blows up and ``on_divergence="raise"``.
    """
    arrays = as_rating_arrays(users, items, ratings, n_users, n_items)
    return train_rating_arrays(trainer, arrays, layout=layout, device=device, dtype=dtype,
                               random_state=random_state, on_divergence=on_divergence, label=label, **params)


def train_rating_arrays(trainer, arrays: RatingArrays, *, layout="auto", device="auto", dtype=None,
                        random_state=None, on_divergence="warn", label=None, **params) -> MFModel:
    """:func:`train_on_arrays` for arrays already checked by :func:`as_rating_arrays`.

    The algorithm classes call this, having validated (and deduplicated) the
    Trainset's ratings once, so that what they keep for prediction is exactly
    what was trained on.
    """
    trainer, dev, dt, chosen, sizing = _setup(trainer, [arrays], layout, device, dtype, on_divergence, params)
    label = label or f"train_on_arrays({getattr(trainer, '__name__', trainer)!s})"
    check_fits(trainer, arrays.n_users, arrays.n_items, len(arrays.ratings), dt, chosen, dev, **sizing)
    scale = _scale_of(trainer, arrays, params)
    params["eval_data"] = scale.standardise_eval(params.get("eval_data"))
    params["callback"] = scale.wrap_callback(params.get("callback"))
    params.setdefault("generator", check_random_state(random_state))
    with thread_policy(_work(trainer, len(arrays.ratings), sizing), dev) as threads:
        start = time.perf_counter()
        tensor, mask = ratings_tensor(scale.standardise(arrays), chosen, dev, dt)
        to_tensors_s = _synchronised(dev, start)
        accepts = inspect.signature(trainer).parameters
        if "on_divergence" in accepts:
            params["on_divergence"] = "raise" if on_divergence == "raise" else "recover"
        if "overwrite_ratings" in accepts:
            # The tensor's values are the standardised copy made above, read by nothing else.
            params["overwrite_ratings"] = True
        try:
            model = trainer(tensor, mask, **params)
        except TrainingDivergedError as exc:
            raise TrainingDivergedError(f"{label}: {exc}") from None
    model = scale.restore(model)
    model.timings = {"layout": chosen, "to_tensors_s": to_tensors_s, "threads": threads}
    if model.diverged is not None:
        warnings.warn(f"{label}: {model.diverged} Pass on_divergence='raise' to make this an error.",
                      TrainingDivergedWarning, stacklevel=3)
    return model


def train_stacked(trainer, datasets: list, per_fit: list, *, layout="auto", device="auto", dtype=None,
                  on_divergence="warn", labels=None, **params) -> list:
    """Train one model per dataset, many at once: stacked into one block-diagonal problem.

    What model selection runs: every fold times every grid point that share
    a trainer's shape (``n_factors``, ``biased``, ...) train as one tensor
    program, so that one epoch is one set of products for all of them (see
    :mod:`surprise_torch.trainers._stack`). Each model ends as
    :func:`train_rating_arrays` would have fitted it alone, up to float
    rounding: its own rating scale, seed, hyperparameters and divergence.
    The fits are taken in rounds that each need at most
    :data:`STACK_MEMORY_SHARE` of the device's available memory (by
    :func:`training_bytes`' estimate), at least one fit a round.

    Parameters
    ----------
    trainer : str or callable
        ``"svd"``, ``"svdpp"``, ``"als"`` or a trainer function with a
        ``stacked`` attribute (:func:`~surprise_torch.train_svd`,
        :func:`~surprise_torch.train_als`).
    datasets : list of RatingArrays
        Each fit's ratings, checked by :func:`as_rating_arrays`.
    per_fit : list of dict
        Each fit's own trainer arguments (the same keys for every fit): any
        of the stacked trainer's per-fit arguments (``n_epochs``, ``lr``,
        ``reg``, ..., ``generator``), in the ratings' own scale.
    layout, device, dtype, on_divergence
        As for :func:`train_on_arrays`, shared by every fit.
    labels : list of str, optional
        What to call each fit in warnings and errors.
    **params
        The trainer arguments every fit shares (``n_factors``, ``biased``, ...).

    Returns
    -------
    list of MFModel
        In each dataset's scale, with ``timings``: ``layout``, ``threads``,
        ``stacked`` (fits in its round), and ``fit_s`` and ``to_tensors_s``,
        its round's seconds divided among the round's fits.

    Raises
    ------
    ValueError
        For a trainer that cannot stack, invalid arguments, or ratings too
        large for the dtype.
    MemoryError
        If a single fit would not fit on the device, before allocating.
    TrainingDivergedError
        If a fit blows up and ``on_divergence="raise"``, naming it.
    """
    if not datasets or len(per_fit) != len(datasets):
        raise ValueError(f"per_fit has {len(per_fit)} entries for {len(datasets)} datasets; give one per dataset.")
    labels = labels or [f"stacked fit {b}" for b in range(len(datasets))]
    total = (sum(a.n_users for a in datasets), sum(a.n_items for a in datasets), sum(len(a.ratings) for a in datasets))
    trainer, dev, dt, chosen, sizing = _setup(trainer, datasets, layout, device, dtype, on_divergence, params,
                                              shape=total)
    if getattr(trainer, "stacked", None) is None:
        raise ValueError(f"{getattr(trainer, '__name__', trainer)} cannot train stacked fits; fit them one by one.")
    need = []
    for arrays in datasets:
        check_fits(trainer, arrays.n_users, arrays.n_items, len(arrays.ratings), dt, chosen, dev, **sizing)
        need.append(training_bytes(trainer, arrays.n_users, arrays.n_items, len(arrays.ratings), dt, chosen, **sizing))
    scales = [_scale_of(trainer, arrays, params) for arrays in datasets]
    stacked_accepts = inspect.signature(trainer.stacked).parameters
    if "on_divergence" in stacked_accepts:
        # Every fit of a round goes on when one blows up; "raise" is decided below, naming the fit.
        params["on_divergence"] = "recover"
    if "overwrite_ratings" in stacked_accepts:
        # Each round's tensor holds the stacked copy of the standardised ratings, read by nothing else.
        params["overwrite_ratings"] = True
    models = [None] * len(datasets)
    for members in _rounds(need, available_bytes(dev), dev):
        stack = Stack.of_sizes([(datasets[b].n_users, datasets[b].n_items) for b in members])
        arrays = _stack_arrays([scales[b].standardise(datasets[b]) for b in members], stack)
        lists = {key: [per_fit[b][key] for b in members] for key in per_fit[0]}
        with thread_policy(_work(trainer, len(arrays.ratings), sizing), dev) as threads:
            start = time.perf_counter()
            tensor, mask = ratings_tensor(arrays, chosen, dev, dt)
            to_tensors_s = _synchronised(dev, start)
            fitted = trainer.stacked(tensor, mask, stack=stack, **lists, **params)
            round_s = _synchronised(dev, start) - to_tensors_s
        for b, model in zip(members, fitted):
            model = scales[b].restore(model)
            model.timings = {"layout": chosen, "threads": threads, "stacked": len(members),
                             "to_tensors_s": to_tensors_s / len(members), "fit_s": round_s / len(members)}
            models[b] = model
    for label, model in zip(labels, models):
        if model.diverged is not None:
            if on_divergence == "raise":
                raise TrainingDivergedError(f"{label}: {model.diverged}")
            warnings.warn(f"{label}: {model.diverged} Pass on_divergence='raise' to make this an error.",
                          TrainingDivergedWarning, stacklevel=2)
    return models


def _setup(trainer, datasets, layout, device, dtype, on_divergence, params, shape=None):
    """What every fit resolves first: the trainer, device, dtype, layout and the sizing arguments."""
    if isinstance(trainer, str):
        trainer = _trainer_named(trainer, params)
    check_choice("on_divergence", on_divergence, ON_DIVERGENCE)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    for arrays in datasets:
        _check_magnitude(arrays.ratings, dt)
    n_users, n_items, n_ratings = shape or (datasets[0].n_users, datasets[0].n_items, len(datasets[0].ratings))
    chosen = choose_layout(layout, n_users, n_items, dt, dev, n_ratings=n_ratings)
    sizing_keys = ("n_factors", "biased", "implicit", "max_samples", "solver", "cg_steps")
    sizing = {k: v for k, v in params.items() if k in sizing_keys}
    # The memory and work estimates compute with these before the trainer checks its arguments.
    for name, minimum in (("n_factors", 0), ("max_samples", 1), ("cg_steps", 1)):
        if name in sizing:
            check_int(name, sizing[name], minimum=minimum)
    return trainer, dev, dt, chosen, sizing


def _scale_of(trainer, arrays, params):
    biased = params.get("biased", _default(trainer, "biased", False))
    return RatingScale.of(arrays.ratings, centred=biased, nonnegative=getattr(trainer, "nonnegative", False))


def _work(trainer, n_ratings, sizing):
    """Multiply-adds of the widest per-epoch product, for the thread policy."""
    per_rating = getattr(trainer, "work_per_rating", None)
    return n_ratings * per_rating(**sizing) if per_rating is not None else float("inf")


def _synchronised(device, start):
    """Seconds since ``start``, once the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _rounds(need: list, free, device: torch.device) -> list:
    """Consecutive fits grouped into rounds of at most :data:`STACK_MEMORY_SHARE` of ``free`` bytes each
    (shared with the other lanes of a search that run beside this one), and on the CPU at most the
    last-level cache's size (see :data:`CPU_ROUND_BYTES`); at least one fit a round."""
    budget = STACK_MEMORY_SHARE * free / lanes_running() if free is not None else float("inf")
    if device.type == "cpu":
        budget = min(budget, cache_bytes() or CPU_ROUND_BYTES)
    rounds, current, used = [], [], 0
    for b, size in enumerate(need):
        if current and used + size > budget:
            rounds.append(current)
            current, used = [], 0
        current.append(b)
        used += size
    return rounds + [current]


def _stack_arrays(parts: list, stack: Stack) -> RatingArrays:
    """Several fits' arrays as one block-diagonal set: fit ``b``'s ids shifted by its stack offsets.

    The offsets grow, so where every part is ordered (sorted by (user, item),
    no pair repeated) the result is too, and says so: its CSR tensor needs
    neither sorting nor a check.
    """
    return RatingArrays(
        np.concatenate([part.users + stack.users[b] for b, part in enumerate(parts)]),
        np.concatenate([part.items + stack.items[b] for b, part in enumerate(parts)]),
        np.concatenate([part.ratings for part in parts]), *stack.shape,
        ordered=all(part.ordered for part in parts),
    )


def _default(function, name, fallback):
    parameter = inspect.signature(function).parameters.get(name)
    return fallback if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def _check_magnitude(ratings: np.ndarray, dtype: torch.dtype):
    if float(np.finfo(ratings.dtype).max) <= torch.finfo(dtype).max:
        return  # finite (as_rating_arrays checked) in a type no wider: they fit, no pass needed
    largest = max(map(abs, _range(ratings)))
    limit = torch.finfo(dtype).max
    if largest > limit:
        raise ValueError(f"A rating of magnitude {largest:.3g} does not fit in {dtype} (largest {limit:.3g}); "
                         "use dtype='float64', or rescale the ratings.")


@dataclass(frozen=True)
class RatingScale:
    """The affine map between the user's ratings and the standardised ones trainers see.

    ``standardised = (rating - center) / spread``. With ``center`` the mean
    and ``spread`` the root mean square around it, both move with any
    ``a * rating + b`` (``a > 0``), so the standardised ratings, and hence
    the trained model, do not; :meth:`restore` maps it back.
    """

    center: float
    spread: float

    @classmethod
    def of(cls, ratings: np.ndarray, centred: bool, nonnegative: bool = False) -> "RatingScale":
        """The scale of ``ratings``.

        Centred on their mean if ``centred``, else on 0, with the root mean
        square around the center as the spread. For ``nonnegative`` models
        (NMF) the ratings are only divided, by their largest value over
        :data:`NONNEGATIVE_TOP`: Surprise's NMF defaults (uniform factors in
        [0, 1], its regularisation) are meant for stars up to 5, so on such
        data nothing changes, and on any other the model is the same, scaled.
        """
        if nonnegative:
            center, spread = 0.0, max(map(abs, _range(ratings))) / NONNEGATIVE_TOP
        else:
            values = tensor_view(ratings)
            if centred:
                center, squares = mean_and_deviation64(values)
            else:
                center, squares = 0.0, sum64(values, square=True)
            spread = math.sqrt(squares / values.numel())
        # All ratings equal (to the center): any spread standardises them to 0.
        return cls(center, spread if spread > 0 and math.isfinite(spread) else 1.0)

    def standardise(self, arrays: RatingArrays) -> RatingArrays:
        """The same ratings, standardised."""
        # In the ratings' own dtype (float32 or float64), on torch's threads.
        standardised = torch.sub(tensor_view(arrays.ratings), self.center)
        return replace(arrays, ratings=standardised.div_(self.spread).numpy())

    def standardise_eval(self, data):
        """An :class:`EvalData` in the standardised scale (its ratings, clipping bounds and default)."""
        if data is None:
            return None
        low, high = data.rating_scale
        return replace(data, ratings=(data.ratings - self.center) / self.spread,
                       rating_scale=((low - self.center) / self.spread, (high - self.center) / self.spread),
                       default=(data.default - self.center) / self.spread)

    def metrics(self, metrics: dict) -> dict:
        """Per-epoch metrics back in the ratings' scale (RMSEs times ``spread``, losses times its square)."""
        return {name: value * (self.spread ** 2 if name == "loss" else self.spread) for name, value in metrics.items()}

    def wrap_callback(self, callback):
        """``callback`` receiving metrics in the ratings' scale."""
        if callback is None:
            return None
        return lambda epoch, metrics: callback(epoch, self.metrics(metrics))

    def restore(self, model: MFModel) -> MFModel:
        """The model in the ratings' scale (in float64 where the device has it).

        Each tensor is copied once and scaled in place, never aliasing the
        trained one: a product out of place made a second float64 copy beside
        the first. For TorchBayesMF's kept samples, most of a large fit's
        memory, that was the peak (20 bytes a value, now 12).
        """
        wide = model.pu.dtype if model.pu.device.type == "mps" else torch.float64

        def scaled(tensor, factor):
            return tensor.to(wide, copy=True).mul_(factor)

        root = math.sqrt(self.spread)
        history = {name: [self.metrics({name: v})[name] for v in values] for name, values in model.history.items()}
        return replace(
            model, global_mean=self.center + self.spread * model.global_mean,
            pu=scaled(model.pu, root), qi=scaled(model.qi, root),
            bu=scaled(model.bu, self.spread), bi=scaled(model.bi, self.spread),
            extras={name: scaled(t, root) for name, t in model.extras.items()}, history=history,
        )


def _trainer_named(name, params):
    trainers = {"svd": train_svd, "svdpp": train_svd, "als": train_als, "nmf": train_nmf, "bayes": train_bayes_mf}
    if name not in trainers:
        raise ValueError(f"trainer must be one of {sorted(trainers)} or a trainer function, got {name!r}.")
    if name == "svdpp":
        params.setdefault("implicit", True)
    return trainers[name]

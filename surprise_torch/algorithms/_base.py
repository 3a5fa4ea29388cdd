"""The Surprise side of every algorithm: parameters in, fitted NumPy arrays out.

:class:`TorchMFAlgo` turns a Trainset into tensors, hands them to a pure
trainer function, keeps the fitted factors as host NumPy arrays (so a model
trained on a GPU pickles and loads on a CPU-only machine) and answers
``estimate`` and a vectorised ``test``. It holds no numerics of its own beyond
reading out those arrays.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import itertools
import time

import numpy as np
import torch
from surprise import AlgoBase, PredictionImpossible
from surprise.prediction_algorithms.predictions import Prediction

from .._config import check_bool, check_choice, check_random_state, resolve_device, resolve_dtype
from .._data import testset_indices, trainset_arrays
from ..arrays import ON_DIVERGENCE, as_rating_arrays, train_rating_arrays, train_stacked
from ..trainers import EvalData

_UNKNOWN_REASON = "User and item are unknown."

#: Factor values gathered at once when estimating (256 KB of float64 per side).
ESTIMATE_BLOCK = 2 ** 15

#: Testset pairs converted and predicted at once by ``test``.
TEST_BLOCK = 2 ** 11


class TorchMFAlgo(AlgoBase):
    """Base of the matrix-factorization algorithms (not for direct use).

    Subclasses define ``__init__`` (storing every argument under its own
    name, scikit-learn style), ``_trainer`` (a pure function on tensors
    returning an :class:`~surprise_torch.MFModel`) and ``_trainer_kwargs``
    (validated trainer arguments from the parameters).

    Attributes
    ----------
    device_, layout_ : str
        Where and in which layout the last fit trained.
    n_threads_ : int
        The CPU threads it ran with (see :mod:`surprise_torch._threads`).
    diverged_ : str or None
        Why it stopped early and which epoch it kept, if it blew up.
    conversion_s_ : float
        Seconds spent converting the Trainset to tensors.
    """

    _trainer = None

    def __init__(self):
        AlgoBase.__init__(self)

    # -- parameters -----------------------------------------------------------------
    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self):
        """Return the constructor parameters, so ``type(a)(**a.get_params())`` rebuilds ``a``.

        Returns
        -------
        dict
        """
        return {name: getattr(self, name) for name in self._param_names()}

    def __repr__(self):
        defaults = inspect.signature(type(self).__init__).parameters
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if v is not defaults[k].default
                   and v != defaults[k].default]
        return f"{type(self).__name__}({', '.join(changed)})"

    # -- training -------------------------------------------------------------------
    def fit(self, trainset, eval_set=None):
        """Train on a Surprise Trainset.

        Parameters
        ----------
        trainset : surprise.Trainset
        eval_set : list of (uid, iid, r_ui), optional
            A Surprise testset whose RMSE is recorded after every epoch in
            ``history["eval_rmse"]`` (and TensorBoard), as the seed's test curve.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For an invalid parameter (named in the message), an empty trainset,
            non-finite ratings or ratings too large for ``dtype``, or an
            ``eval_set`` without true ratings.
        MemoryError
            If the data (in the chosen layout) and the model would not fit on
            the device; raised before allocating, with the estimate.
        TrainingDivergedError
            If training blows up and ``on_divergence="raise"``. With the
            default ``"warn"``, a :class:`~surprise_torch.TrainingDivergedWarning`
            names this algorithm and its parameters, and the last sound
            epoch's model is kept.
        """
        AlgoBase.fit(self, trainset)
        kwargs = self._trainer_kwargs()
        verbose = check_bool("verbose", self.verbose)
        check_choice("on_divergence", self.on_divergence, ON_DIVERGENCE)
        generator = check_random_state(self.random_state)
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, device)
        start = time.perf_counter()
        arrays = _rating_arrays(trainset)
        to_arrays_s = time.perf_counter() - start
        eval_data = self._eval_data(eval_set, kwargs.get("biased", True), device, dtype)
        with _EpochLog(type(self).__name__, kwargs["n_epochs"], verbose, self.log_dir) as log:
            model = train_rating_arrays(type(self)._trainer, arrays, layout=self.layout, device=device,
                                        dtype=dtype, generator=generator, eval_data=eval_data, callback=log,
                                        on_divergence=self.on_divergence, label=repr(self), **kwargs)
        self._adopt(model, device, to_arrays_s)
        return self

    def _adopt(self, model, device, to_arrays_s):
        """Keep a fitted model's arrays on the host, and what the fit ran on."""
        self.global_mean_ = model.global_mean
        self.pu = _host(model.pu)
        self.qi = _host(model.qi)
        self.bu = _host(model.bu)
        self.bi = _host(model.bi)
        for name, tensor in model.extras.items():
            setattr(self, name, _host(tensor))
        self.history = model.history
        self.diverged_ = model.diverged
        self.device_ = str(device)
        self.layout_ = model.timings["layout"]
        self.n_threads_ = model.timings["threads"]
        # What converting Surprise's Trainset cost, reported by the benchmark next to fit time.
        self.conversion_s_ = to_arrays_s + model.timings["to_tensors_s"]

    # -- stacked fits (model selection) ---------------------------------------------
    #: Trainer arguments that may differ between fits trained together as one
    #: stack (see :func:`fit_stacked`); None for algorithms that never stack.
    _stack_varying = None

    def _stack_key(self):
        """What this fit must share with the others of a stack, or None if it cannot join one.

        Fits stack when they have the same class and the same value of every
        trainer argument outside :attr:`_stack_varying`, and the same device,
        dtype, layout and ``on_divergence``. Verbose, TensorBoard-logging and
        distributed fits do not stack: their output is per fit.

        Raises
        ------
        ValueError
            For an invalid parameter, as ``fit`` would.
        """
        if self._stack_varying is None or getattr(type(self)._trainer, "stacked", None) is None:
            return None
        if check_bool("verbose", self.verbose) or self.log_dir is not None or getattr(self, "distributed", False):
            return None
        check_choice("on_divergence", self.on_divergence, ON_DIVERGENCE)
        shared = sorted((k, v) for k, v in self._trainer_kwargs().items() if k not in self._stack_varying)
        device = resolve_device(self.device)
        return (type(self), repr(shared), str(device), str(resolve_dtype(self.dtype, device)), self.layout,
                self.on_divergence)

    def _user_rows(self, users):
        """The factor rows that multiply :meth:`_item_factors` for these inner users (``pu`` here)."""
        return self.pu.take(users, axis=0)

    def _item_factors(self):
        """The item factor matrix of the estimate's dot product (``qi`` here)."""
        return self.qi

    def _eval_data(self, eval_set, biased, device, dtype):
        if eval_set is None:
            return None
        _, _, r_ui, users, items = testset_indices(self.trainset, eval_set)
        if any(r is None for r in r_ui):
            raise ValueError("eval_set holds pairs whose true rating r_ui is None; the per-epoch eval_rmse needs "
                             "true ratings (pass a testset, not an anti-testset).")
        return EvalData(
            users=torch.from_numpy(users).to(device), items=torch.from_numpy(items).to(device),
            ratings=torch.tensor(r_ui, dtype=dtype, device=device),
            rating_scale=tuple(float(b) for b in self.trainset.rating_scale),
            biased=biased, default=float(self.trainset.global_mean),
        )

    # -- prediction -----------------------------------------------------------------
    def _estimate_arrays(self, users, items):
        """Estimates for inner-id arrays (-1 = unknown) and which were impossible.

        The one place predictions are computed: ``estimate`` calls it with
        arrays of length one, so ``test`` and the ``predict`` loop agree to the
        last bit. Pairs are taken in blocks of :data:`ESTIMATE_BLOCK` factor
        values, so the gathered factor rows never hold more than a few MB,
        whatever ``n_factors`` and however many pairs.
        """
        known_u, known_i = users >= 0, items >= 0
        both = known_u & known_i
        u, i = np.where(known_u, users, 0), np.where(known_i, items, 0)
        dot = np.zeros(len(users))
        qi = self._item_factors()
        rows = max(1, ESTIMATE_BLOCK // max(1, qi.shape[1]))
        for start in range(0, len(users), rows):
            block = slice(start, start + rows)
            dot[block] = np.einsum("ij,ij->i", qi.take(i[block], axis=0), self._user_rows(u[block]))
        dot[~both] = 0.0
        if self.biased:
            est = self.global_mean_ + np.where(known_u, self.bu[u], 0.0) + np.where(known_i, self.bi[i], 0.0) + dot
            return est, np.zeros(len(users), dtype=bool)
        return dot, ~both

    def estimate(self, u, i):
        """Estimate the rating of inner user ``u`` for inner item ``i``.

        Follows Surprise's SVD: with biases, unknown users or items contribute
        only what is known (down to the global mean); without biases, an
        unknown user or item raises ``PredictionImpossible``.
        """
        users = np.array([u if self.trainset.knows_user(u) else -1], dtype=np.int64)
        items = np.array([i if self.trainset.knows_item(i) else -1], dtype=np.int64)
        est, impossible = self._estimate_arrays(users, items)
        if impossible[0]:
            raise PredictionImpossible(_UNKNOWN_REASON)
        return float(est[0])

    def test(self, testset, verbose=False):
        """Estimate a whole testset, vectorised, in bounded memory.

        Returns exactly what Surprise's per-rating ``predict`` loop returns:
        the same estimates, of the same types (a clipped estimate is the
        rating scale's own bound, an impossible one Surprise's default
        prediction), the same ``details``; only faster. The testset is taken
        in blocks of :data:`TEST_BLOCK` pairs, so beyond the predictions
        themselves memory stays a few MB, even for an anti-testset of millions
        of pairs.

        Parameters
        ----------
        testset : list of (uid, iid, r_ui)
        verbose : bool, default False
            Print every prediction, as Surprise does.

        Returns
        -------
        list of surprise.Prediction
        """
        testset = testset if isinstance(testset, list) else list(testset)
        predictions = []
        with _gc_paused():
            for start in range(0, len(testset), TEST_BLOCK):
                predictions.extend(self._predict_block(testset[start:start + TEST_BLOCK]))
        if verbose:
            for pred in predictions:
                print(pred)
        return predictions

    def _clipped_estimates(self, users, items):
        """The ``est`` of every prediction ``test`` would return for these inner ids (-1 unknown), as floats.

        What model selection scores: an impossible estimate is the default
        prediction, and every estimate is clipped to the rating scale.
        """
        est, impossible = self._estimate_arrays(users, items)
        if impossible.any():
            est = np.where(impossible, self.default_prediction(), est)
        return np.clip(est, *self.trainset.rating_scale)

    def _predict_block(self, testset):
        uids, iids, r_ui, users, items = testset_indices(self.trainset, testset)
        est, impossible = self._estimate_arrays(users, items)
        low, high = self.trainset.rating_scale
        values = est.tolist()
        # Surprise's predict clips with min(high, est) then max(low, est): a
        # clipped estimate is the bound itself (an int on a (1, 5) scale).
        default = self.default_prediction() if impossible.any() else None
        for index in np.flatnonzero(impossible).tolist():
            values[index] = default
        est = np.where(impossible, default if default is not None else 0.0, est)
        for index in np.flatnonzero(est >= high).tolist():
            values[index] = high
        for index in np.flatnonzero(est <= low).tolist():
            values[index] = low
        possible, unknown = {"was_impossible": False}, {"was_impossible": True, "reason": _UNKNOWN_REASON}
        details = map(dict.copy, (unknown if imp else possible for imp in impossible.tolist()))
        # tuple.__new__ builds each namedtuple in C, without a Python frame per prediction.
        return map(tuple.__new__, itertools.repeat(Prediction), zip(uids, iids, r_ui, values, details))


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while building many small objects.

    Creating tens of thousands of tuples and dicts triggers repeated full
    collections of the (large, torch-laden) heap, which cost more than the
    predictions themselves; nothing built here can form a reference cycle.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _host(tensor):
    """A float64 NumPy copy on the host, as Surprise keeps its factors."""
    return tensor.detach().to("cpu", torch.float64).numpy()


class _EpochLog:
    """Per-epoch reporting: Surprise-style progress lines and TensorBoard scalars."""

    def __init__(self, name, n_epochs, verbose, log_dir):
        self.name, self.n_epochs, self.verbose = name, n_epochs, verbose
        self.writer = None
        if log_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError(
                    f"log_dir={log_dir!r} needs the tensorboard package: "
                    "pip install tensorboard (or pip install 'surprise_torch[tensorboard]')."
                ) from exc
            self.writer = SummaryWriter(log_dir=str(log_dir))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.writer is not None:
            self.writer.close()
        return False

    def __call__(self, epoch, metrics):
        if self.verbose:
            shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            print(f"{self.name}: processing epoch {epoch}/{self.n_epochs}  {shown}")
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(key, value, epoch)


def _rating_arrays(trainset):
    """A Trainset's ratings, validated and deduplicated once: a pair rated twice keeps its
    last rating, and what the model keeps (SVD++'s N(u)) is what it trained on."""
    flat = trainset_arrays(trainset)
    return as_rating_arrays(flat.users, flat.items, flat.ratings, flat.n_users, flat.n_items)


def fit_stacked(algos, trainsets, converted=None):
    """Fit each algorithm on its trainset, all at once: ``algo.fit(trainset)`` for each, as one program.

    The fits train stacked into one block-diagonal problem (see
    :func:`~surprise_torch.arrays.train_stacked`) and end as each would have
    alone, up to float rounding: each algorithm is fitted in place, with
    its own parameters, seed and trainset, ready to ``test`` and ``predict``.

    Parameters
    ----------
    algos : list of TorchMFAlgo
        Algorithms whose stack keys (``algo._stack_key()``) are equal and
        not None: the same class and shape, differing only in per-fit
        parameters such as ``reg`` or ``lr_all``.
    trainsets : list of surprise.Trainset
        One per algorithm; the same trainset may recur (it is converted once).
    converted : dict, optional
        Trainsets already converted, by ``id``; filled with the ones
        converted here, so that several calls convert each trainset once.

    Returns
    -------
    list of TorchMFAlgo
        ``algos``, fitted; each also with ``fit_s_``, its share of its
        round's seconds, and ``stack_size_``, the fits in that round.

    Raises
    ------
    ValueError
        If the algorithms cannot share a stack.
    """
    if not algos or len(algos) != len(trainsets):
        raise ValueError("fit_stacked needs one trainset per algorithm, and at least one of each.")
    keys = {algo._stack_key() for algo in algos}
    if len(keys) != 1 or None in keys:
        raise ValueError("These algorithms cannot train as one stack: they must be of one class and differ only "
                         f"in {sorted(algos[0]._stack_varying or ())} (and random_state); fit them one by one.")
    first = algos[0]
    device = resolve_device(first.device)
    start = time.perf_counter()
    converted = {} if converted is None else converted
    for trainset in trainsets:
        if id(trainset) not in converted:
            converted[id(trainset)] = _rating_arrays(trainset)
    to_arrays_s = (time.perf_counter() - start) / len(algos)
    kwargs = [algo._trainer_kwargs() for algo in algos]
    shared = {k: v for k, v in kwargs[0].items() if k not in first._stack_varying}
    per_fit = [{k: kw[k] for k in first._stack_varying if k in kw}
               | {"generator": check_random_state(algo.random_state)} for kw, algo in zip(kwargs, algos)]
    models = train_stacked(type(first)._trainer, [converted[id(t)] for t in trainsets], per_fit,
                           layout=first.layout, device=device, dtype=resolve_dtype(first.dtype, device),
                           on_divergence=first.on_divergence, labels=[repr(algo) for algo in algos], **shared)
    for algo, trainset, model in zip(algos, trainsets, models):
        AlgoBase.fit(algo, trainset)
        algo._adopt(model, device, to_arrays_s)
        # Its share of its round's seconds, and how many fits shared that round.
        algo.fit_s_ = model.timings["fit_s"] + to_arrays_s
        algo.stack_size_ = model.timings["stacked"]
    return algos

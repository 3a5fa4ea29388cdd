"""Surprise's model selection, with every fit that can share a stack trained as one program.

Switching is a one-line import change::

    from surprise_torch.model_selection import GridSearchCV, RandomizedSearchCV, cross_validate

The classes and the function take Surprise's arguments and return Surprise's
objects (``cv_results`` with the same keys and layout, ``best_score``,
``best_params``, ``best_estimator``, ``best_index``, ``refit``, ``test``,
``predict``). Folds are Surprise's: its own splitters, or for ``KFold`` (and
``cv=None`` or an int) the same folds built with NumPy (:mod:`._folds`), so
every cell is the cell Surprise would compute.

What differs is how the fits run. Fits of this package's algorithms that
share a shape (the same class, ``n_factors``, ``biased``, device, ...; see
``TorchMFAlgo._stack_key``) and differ only in per-fit parameters
(``reg_all``, ``lr_all``, ``reg``, ``n_epochs``, ``random_state``, ...) train
stacked: every fold times every such grid point in one block-diagonal tensor
program (:func:`surprise_torch.algorithms.fit_stacked`), in rounds bounded by
the device's memory. Each ends as its lone fit would, up to float rounding.
Their scores are computed vectorised, with Surprise's ``accuracy`` formulas
(``fcp`` through Surprise's own function). Everything else (Surprise's
algorithms, TorchNMF, verbose or TensorBoard-logging fits) runs Surprise's
per-fit ``fit_and_score``, under joblib with ``n_jobs`` as in Surprise.

``n_jobs`` only parallelises those per-fit runs. A stacked program runs in
this process on the threads of the thread policy
(:mod:`surprise_torch._threads`): it is large enough for every core torch
is allowed, so worker processes, each paying torch's import and sharing
the same cores, would only slow it. A stacked cell's ``fit_time`` is its
share of its round's time; its ``test_time`` is its own.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sized
from itertools import product

import numpy as np
from joblib import Parallel, delayed
from surprise import accuracy
from surprise.dataset import DatasetUserFolds
from surprise.model_selection import GridSearchCV as _SurpriseGridSearchCV
from surprise.model_selection import RandomizedSearchCV as _SurpriseRandomizedSearchCV
from surprise.model_selection.split import get_cv
from surprise.model_selection import cross_validate as _surprise_cross_validate
from surprise.model_selection.validation import fit_and_score, print_summary
from surprise.utils import get_rng

from ._data import testset_indices
from . import _folds
from ._threads import lane_count, run_lanes
from .algorithms import fit_stacked

__all__ = ["GridSearchCV", "RandomizedSearchCV", "cross_validate"]

#: Parts per lane into which a CPU stack's fits are cut: lanes take the parts as they come free, so that
#: one slowed down by other work on the machine takes fewer (each part still trains in stacked rounds).
JOBS_PER_LANE = 4

#: The measures ``surprise.accuracy`` offers, by the names ``measures`` takes.
MEASURES = ("rmse", "mse", "mae", "fcp")

#: Measures computed from the estimate arrays, exactly as ``surprise.accuracy`` computes them.
_VECTORISED = {
    "rmse": lambda error: np.sqrt(np.mean(error ** 2)),
    "mse": lambda error: np.mean(error ** 2),
    "mae": lambda error: np.mean(np.abs(error)),
}


def evaluate(algos, splits, measures, return_train_measures=False, n_jobs=1, pre_dispatch="2*n_jobs",
             joblib_verbose=0):
    """Fit and score every algorithm on its split: Surprise's ``fit_and_score`` for each, stacked where possible.

    Parameters
    ----------
    algos : list of AlgoBase
        One algorithm instance per cell (not shared between cells).
    splits : list of (Trainset, testset)
        Each cell's split; cells of the same fold share the same objects.
    measures : list of str
        Lower-case names of ``surprise.accuracy`` functions.
    return_train_measures : bool
    n_jobs, pre_dispatch, joblib_verbose
        For the cells that run Surprise's per-fit path, as in Surprise.

    Returns
    -------
    results : list of tuple
        Per cell, what ``fit_and_score`` returns: test measures, train
        measures, fit time, test time.
    n_stacked : int
        How many cells trained stacked.
    """
    results = [None] * len(algos)
    groups = {}
    for cell, algo in enumerate(algos):
        key = algo._stack_key() if hasattr(algo, "_stack_key") else None
        groups.setdefault(key, []).append(cell)
    alone = groups.pop(None, [])
    converted = {}

    def job(cells):
        return lambda: fit_stacked([algos[c] for c in cells], [splits[c][0] for c in cells], converted)

    # CPU stacks are cut into JOBS_PER_LANE parts per lane, which the lanes take as they come free.
    n_lanes = lane_count()
    jobs = []
    for key, cells in groups.items():
        if key[2] == "cpu":  # the device, third in TorchMFAlgo._stack_key; GPU stacks run one after another
            parts = np.array_split(np.array(cells), min(n_lanes * JOBS_PER_LANE, len(cells)))
            jobs += [job(part.tolist()) for part in parts]
        else:
            job(cells)()
    run_lanes(jobs, n_lanes)
    scorer = _Scorer(measures, return_train_measures)
    for cells in groups.values():
        for c in cells:
            results[c] = scorer(algos[c], *splits[c])
    if alone:
        out = Parallel(n_jobs=n_jobs, pre_dispatch=pre_dispatch, verbose=joblib_verbose)(
            delayed(fit_and_score)(algos[c], *splits[c], measures, return_train_measures) for c in alone)
        for c, result in zip(alone, out):
            results[c] = result
    return results, len(algos) - len(alone)


class _Scorer:
    """Scores of fitted stacked cells, computed as ``fit_and_score`` would, a fold's id lookups done once."""

    def __init__(self, measures, return_train_measures):
        self.measures, self.return_train_measures = measures, return_train_measures
        self._indexed = {}

    def __call__(self, algo, trainset, testset):
        start = time.time()
        test = self._measures(algo, trainset, testset)
        test_time = time.time() - start
        train = self._measures(algo, trainset, None) if self.return_train_measures else {}
        return test, train, algo.fit_s_, test_time

    def _measures(self, algo, trainset, testset):
        if any(m not in _VECTORISED for m in self.measures):
            # fcp (or another measure) needs Surprise's predictions.
            predictions = algo.test(testset if testset is not None else trainset.build_testset())
            return {m: getattr(accuracy, m)(predictions, verbose=False) for m in self.measures}
        key = (id(trainset), id(testset))
        if key not in self._indexed:
            if getattr(testset, "trainset", None) is trainset:  # a fold of _folds.split: its ids are known
                self._indexed[key] = (testset.ratings, testset.users, testset.items)
            else:
                pairs = testset if testset is not None else trainset.build_testset()
                _, _, r_ui, users, items = testset_indices(trainset, pairs)
                self._indexed[key] = (np.asarray(r_ui, dtype=np.float64), users, items)
        truth, users, items = self._indexed[key]
        if truth.size == 0:
            raise ValueError("Prediction list is empty.")  # as surprise.accuracy says
        error = truth - algo._clipped_estimates(users, items)
        return {m: float(_VECTORISED[m](error)) for m in self.measures}


class _StackedSearch:
    """``fit`` for Surprise's search classes, through :func:`evaluate`."""

    #: What the class calls its grid (Surprise's argument name), in messages.
    _options_name = "param_grid"

    def _parse_options(self, params):
        """Surprise's parsing, after checking every parameter has a list of values (or a distribution).

        Surprise's ``__init__`` parses the grid and then takes the product of its lists: a string's letters
        would each be tried, a number fails in ``itertools.product``, an empty list leaves nothing to fit.
        """
        _check_options(params, self._options_name)
        return super()._parse_options(params)

    def fit(self, data):
        """Run the search: every parameter combination on every split, stacked where possible.

        Parameters
        ----------
        data : surprise.Dataset

        Raises
        ------
        ValueError
            With ``refit`` on data loaded with ``load_from_folds``, as Surprise;
            for a measure that ``surprise.accuracy`` lacks (where Surprise
            fails with an ``AttributeError`` after fitting).
        """
        if self.refit and isinstance(data, DatasetUserFolds):
            raise ValueError("refit cannot be used when data has been loaded with load_from_folds().")
        _check_measures(self.measures)
        splits = _folds.split(self.cv, data)
        cells = [(params, split) for params in self.param_combinations for split in splits]
        out, self.n_stacked_ = evaluate([self.algo_class(**params) for params, _ in cells], [s for _, s in cells],
                                        self.measures, self.return_train_measures, self.n_jobs, self.pre_dispatch,
                                        self.joblib_verbose)
        self._collect(out, len(splits))
        if self.refit:
            self.best_estimator[self.refit].fit(data.build_full_trainset())
        return self

    def _collect(self, out, n_splits):
        """Surprise's ``cv_results`` and ``best_*`` from the cells' results, in its layout.

        Surprise builds these inside its ``fit``, not in a function that could
        be called, so its rules are followed here; the tests compare every key
        and value with Surprise's own search.
        """
        test_dicts, train_dicts, fit_times, test_times = zip(*out)
        shape = (len(self.param_combinations), n_splits)
        cv_results, best_index, best_params, best_score, best_estimator = {}, {}, {}, {}, {}
        for m in self.measures:
            test = np.asarray([d[m] for d in test_dicts]).reshape(shape)
            train = np.asarray([d[m] for d in train_dicts]).reshape(shape) if self.return_train_measures else None
            for split in range(n_splits):
                cv_results[f"split{split}_test_{m}"] = test[:, split]
                if train is not None:
                    cv_results[f"split{split}_train_{m}"] = train[:, split]
            mean = test.mean(axis=1)
            cv_results[f"mean_test_{m}"] = mean
            cv_results[f"std_test_{m}"] = test.std(axis=1)
            if train is not None:
                cv_results[f"mean_train_{m}"] = train.mean(axis=1)
                cv_results[f"std_train_{m}"] = train.std(axis=1)
            order = mean.argsort()
            cv_results[f"rank_test_{m}"] = np.empty_like(order)
            if m in ("mae", "rmse", "mse"):
                cv_results[f"rank_test_{m}"][order] = np.arange(len(order)) + 1
                best_index[m] = mean.argmin()
            elif m in ("fcp",):
                cv_results[f"rank_test_{m}"][order] = np.arange(len(order), 0, -1)
                best_index[m] = mean.argmax()
            best_params[m] = self.param_combinations[best_index[m]]
            best_score[m] = mean[best_index[m]]
            best_estimator[m] = self.algo_class(**best_params[m])
        for name, times in (("fit", fit_times), ("test", test_times)):
            times = np.array(times).reshape(shape)
            cv_results[f"mean_{name}_time"] = times.mean(axis=1)
            cv_results[f"std_{name}_time"] = times.std(axis=1)
        cv_results["params"] = self.param_combinations
        for param in self.param_combinations[0]:
            cv_results["param_" + param] = [combination[param] for combination in self.param_combinations]
        self.best_index, self.best_params, self.best_score = best_index, best_params, best_score
        self.best_estimator, self.cv_results = best_estimator, cv_results


class GridSearchCV(_StackedSearch, _SurpriseGridSearchCV):
    """Surprise's ``GridSearchCV``, training the fits that can share a stack as one program.

    Takes exactly Surprise's arguments (``algo_class``, ``param_grid``,
    ``measures``, ``cv``, ``refit``, ``return_train_measures``, ``n_jobs``,
    ``pre_dispatch``, ``joblib_verbose``) and sets the same attributes; see
    the module docstring for what runs stacked and what ``n_jobs`` means.

    Attributes
    ----------
    cv_results, best_index, best_params, best_score, best_estimator : dict
        As Surprise's.
    n_stacked_ : int
        How many (parameter combination, fold) cells trained stacked; the
        others ran Surprise's per-fit path.
    """


class RandomizedSearchCV(_StackedSearch, _SurpriseRandomizedSearchCV):
    """Surprise's ``RandomizedSearchCV``, training the fits that can share a stack as one program.

    Takes exactly Surprise's arguments (with ``param_distributions`` of
    lists or scipy distributions, ``n_iter`` and ``random_state``), samples
    the same combinations, and sets the same attributes as
    :class:`GridSearchCV`. Where every parameter is a list, two things
    differ: ``random_state`` sets which combinations are drawn (Surprise's
    draws them from NumPy's global generator, so a seeded search picked
    other combinations on every run; with ``random_state=None`` the draws
    are Surprise's), and an ``n_iter`` past the number of combinations
    warns and tries each once, as scikit-learn's does (Surprise's fails
    inside NumPy).
    """

    _options_name = "param_distributions"

    @staticmethod
    def _sample_parameters(param_distributions, n_iter, random_state=None):
        """Surprise's sampling, except where every parameter is a list (see the class)."""
        if any(hasattr(v, "rvs") for v in param_distributions.values()):
            return _SurpriseRandomizedSearchCV._sample_parameters(param_distributions, n_iter, random_state)
        # Surprise draws these combinations from NumPy's global generator whatever random_state says; with
        # random_state=None, get_rng returns that generator, so those draws are Surprise's.
        grid = [dict(zip(param_distributions, values)) for values in product(*param_distributions.values())]
        if n_iter > len(grid):
            warnings.warn(f"n_iter={n_iter} is more than the {len(grid)} combinations of param_distributions' "
                          "lists; trying each once.", UserWarning, stacklevel=3)
            n_iter = len(grid)
        return get_rng(random_state).choice(grid, n_iter, replace=False)


def cross_validate(algo, data, measures=["rmse", "mae"], cv=None, return_train_measures=False, n_jobs=1,
                   pre_dispatch="2*n_jobs", verbose=False):
    """Surprise's ``cross_validate``, training every fold at once where the algorithm can stack.

    Parameters
    ----------
    algo : AlgoBase
        The algorithm to evaluate. This package's stackable algorithms train
        one copy per fold (``type(algo)(**algo.get_params())``), all folds in
        one program, and leave ``algo`` itself unfitted; any other goes to
        Surprise's ``cross_validate`` itself.
    data : surprise.Dataset
    measures, cv, return_train_measures, n_jobs, pre_dispatch, verbose
        As Surprise's; ``n_jobs`` only applies to the per-fit path.

    Returns
    -------
    dict
        ``test_*`` (and ``train_*``) arrays of each measure per fold,
        ``fit_time`` and ``test_time`` tuples, as Surprise returns.
    """
    measures = [m.lower() for m in measures]  # as Surprise's cross_validate does first
    _check_measures(measures)
    if not (hasattr(algo, "_stack_key") and algo._stack_key() is not None):
        _folds.check_splitter(cv, data)
        return _surprise_cross_validate(algo, data, measures, cv, return_train_measures, n_jobs, pre_dispatch,
                                        verbose)
    cv = get_cv(cv)
    splits = _folds.split(cv, data)
    out, _ = evaluate([type(algo)(**algo.get_params()) for _ in splits], splits, measures, return_train_measures)
    test_dicts, train_dicts, fit_times, test_times = zip(*out)
    test_measures, train_measures, ret = {}, {}, {}
    for m in measures:
        test_measures[m] = np.asarray([d[m] for d in test_dicts])
        ret["test_" + m] = test_measures[m]
        if return_train_measures:
            train_measures[m] = np.asarray([d[m] for d in train_dicts])
            ret["train_" + m] = train_measures[m]
    ret["fit_time"] = fit_times
    ret["test_time"] = test_times
    if verbose:
        print_summary(algo, measures, test_measures, train_measures, fit_times, test_times, cv.n_splits)
    return ret


def _check_measures(measures):
    """``ValueError`` for a measure ``surprise.accuracy`` lacks (Surprise raises ``AttributeError`` after fitting)."""
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        raise ValueError(f"measures {unknown} are not in surprise.accuracy; use any of {', '.join(MEASURES)}.")


def _check_options(options: dict, name: str):
    """``ValueError`` for a parameter given one value where a list belongs (Surprise iterates a string's
    letters, and fails on a number), or an empty list (no combination would be tried)."""
    for param, values in options.items():
        if hasattr(values, "rvs"):  # a scipy distribution (RandomizedSearchCV)
            continue
        if isinstance(values, Mapping):  # bsl_options, sim_options: lists inside, each dict one combination
            _check_options(values, f"{name}[{param!r}]")
            continue
        if isinstance(values, (str, bytes)) or not isinstance(values, Sized):
            raise ValueError(f"{name}[{param!r}] must be a list of values, got {values!r}: write [{values!r}].")
        if len(values) == 0:
            raise ValueError(f"{name}[{param!r}] is an empty list: no combination would be tried; list at least "
                             "one value.")

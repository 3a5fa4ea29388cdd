"""Stacked fits and the model-selection module: every result equals the per-fit one."""

import warnings

import numpy as np
import pytest
import torch
from surprise import SVD
from surprise import model_selection as surprise_ms
from surprise.model_selection import KFold

import surprise_torch._threads as threads
from surprise_torch import TorchALS, TorchNMF, TorchSVD, TorchSVDpp, TrainingDivergedWarning
from surprise_torch import model_selection as ours_ms
from surprise_torch.algorithms import fit_stacked
from surprise_torch.trainers import Stack, train_als, train_als_stacked, train_svd, train_svd_stacked

from .conftest import FAST

# -- the stacked trainers -------------------------------------------------------------


def _problems():
    """Three small random problems of different shapes; the third has a user with one rating."""
    rng = np.random.default_rng(0)
    problems = []
    for n_users, n_items, n_ratings in ((50, 40, 600), (30, 60, 500), (70, 20, 700)):
        users, items = rng.integers(0, n_users, n_ratings), rng.integers(0, n_items, n_ratings)
        keys = np.unique(users * n_items + items)
        users, items = keys // n_items, keys % n_items
        problems.append((users, items, rng.normal(3, 1, len(keys)), n_users, n_items))
    users, items, ratings, n_users, n_items = problems[2]
    lone = users != users[0]
    lone[0] = True  # users[0] keeps only its first rating
    problems[2] = (users[lone], items[lone], ratings[lone], n_users, n_items)
    return problems


def _coo(users, items, ratings, n_users, n_items):
    return torch.sparse_coo_tensor(torch.tensor(np.stack([users, items])), torch.tensor(ratings),
                                   (n_users, n_items), check_invariants=True).coalesce()


def _stacked(problems):
    stack = Stack.of_sizes([(p[3], p[4]) for p in problems])
    users = np.concatenate([p[0] + stack.users[b] for b, p in enumerate(problems)])
    items = np.concatenate([p[1] + stack.items[b] for b, p in enumerate(problems)])
    return _coo(users, items, np.concatenate([p[2] for p in problems]), *stack.shape), stack


def _assert_same_model(stacked, alone, tol):
    for name in ("pu", "qi", "bu", "bi"):
        torch.testing.assert_close(getattr(stacked, name), getattr(alone, name), rtol=tol, atol=tol)
    assert stacked.global_mean == pytest.approx(alone.global_mean, abs=1e-12)
    assert stacked.diverged == alone.diverged
    assert stacked.history.keys() == alone.history.keys()
    for name, values in alone.history.items():
        assert stacked.history[name] == pytest.approx(values, rel=1e-9)
    for name, tensor in alone.extras.items():
        torch.testing.assert_close(stacked.extras[name], tensor, rtol=tol, atol=tol)


@pytest.mark.parametrize("implicit", [False, True])
def test_stacked_svd_fits_equal_lone_fits(implicit):
    problems = _problems()
    ratings, stack = _stacked(problems)
    # Each fit its own rates, regularisation, prior, epochs and seed; the third blows up (lr 3).
    lr = [dict.fromkeys(("pu", "qi", "bu", "bi", "yj"), v) for v in (0.1, 0.05, 3.0)]
    reg = [dict.fromkeys(("pu", "qi", "bu", "bi", "yj"), v) for v in (0.1, 0.2, 0.1)]
    prior = [None, {"bu": 10.0, "bi": 10.0, "pu": 5.0, "qi": 5.0, "yj": 5.0}, 3.0]
    epochs = [10, 5, 10]
    shared = dict(n_factors=4, implicit=implicit, on_divergence="recover")
    models = train_svd_stacked(ratings, stack=stack, n_epochs=epochs, lr=lr, reg=reg, prior=prior,
                               generator=[torch.Generator().manual_seed(b) for b in range(3)], **shared)
    for b, (users, items, values, n_users, n_items) in enumerate(problems):
        alone = train_svd(_coo(users, items, values, n_users, n_items), n_epochs=epochs[b], lr=lr[b], reg=reg[b],
                          prior=prior[b], generator=torch.Generator().manual_seed(b), **shared)
        _assert_same_model(models[b], alone, 1e-10)
    assert models[2].diverged is not None and models[0].diverged is None


def test_a_stacked_fit_unsound_from_the_start_keeps_the_mean_model():
    problems = _problems()
    # Fit 1's squared errors overflow from the first epoch: no state of it is ever sound.
    problems[1] = (*problems[1][:2], problems[1][2] * 1e200, *problems[1][3:])
    ratings, stack = _stacked(problems)
    shared = dict(n_factors=4, n_epochs=4, on_divergence="recover")
    models = train_svd_stacked(ratings, stack=stack, generator=[torch.Generator().manual_seed(b) for b in range(3)],
                               **shared)
    assert models[1].diverged is not None and "epoch 1" in models[1].diverged
    for name in ("pu", "qi", "bu", "bi"):
        assert not getattr(models[1], name).any(), name  # the mean model
    for b in (0, 2):
        users, items, values, n_users, n_items = problems[b]
        alone = train_svd(_coo(users, items, values, n_users, n_items), generator=torch.Generator().manual_seed(b),
                          **shared)
        _assert_same_model(models[b], alone, 1e-10)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("biased", [True, False])
def test_stacked_als_fits_equal_lone_fits(biased, solver):
    problems = _problems()
    ratings, stack = _stacked(problems)
    # With exact solves the third fit has no regularisation and a user with one rating: its systems
    # are singular. Conjugate gradients refuse a zero penalty, so there it is only weak.
    weakest = 0.0 if solver == "cholesky" else 1e-3
    reg, reg_bu, epochs = [0.1, 0.05, weakest], [0.06, 0.1, weakest], [6, 3, 6]
    prior_bias, prior_factors = [0.0, 10.0, 0.0], [0.0, 5.0, 0.0]
    shared = dict(n_factors=4, biased=biased, on_divergence="recover", solver=solver)
    models = train_als_stacked(ratings, stack=stack, n_epochs=epochs, reg=reg, reg_bu=reg_bu, prior_bias=prior_bias,
                               prior_factors=prior_factors,
                               generator=[torch.Generator().manual_seed(b) for b in range(3)], **shared)
    for b, (users, items, values, n_users, n_items) in enumerate(problems):
        alone = train_als(_coo(users, items, values, n_users, n_items), n_epochs=epochs[b], reg=reg[b],
                          reg_bu=reg_bu[b], prior_bias=prior_bias[b], prior_factors=prior_factors[b],
                          generator=torch.Generator().manual_seed(b), **shared)
        _assert_same_model(models[b], alone, 1e-9)
    if biased and solver == "cholesky":
        assert models[2].diverged is not None
    assert models[0].diverged is None and models[1].diverged is None


def test_a_stack_must_cover_the_ratings():
    ratings, stack = _stacked(_problems())
    with pytest.raises(ValueError, match="stack covers"):
        train_svd_stacked(ratings, stack=Stack.single(3, 3))
    with pytest.raises(ValueError, match="2 entries for 3"):
        train_als_stacked(ratings, stack=stack, reg=[0.1, 0.2])


def test_stacked_fits_take_memory_rounds(monkeypatch, split):
    import surprise_torch.arrays as arrays

    trainset, _ = split
    monkeypatch.setattr(arrays, "cache_bytes", lambda: 2 ** 40)  # whatever this machine's cache, memory decides
    algos = [TorchSVD(**{**FAST[TorchSVD], "reg_all": r}) for r in (0.02, 0.05, 0.1)]
    fit_stacked(algos, [trainset] * 3)
    # A budget smaller than one fit: every fit a round of its own, the same models.
    monkeypatch.setattr(arrays, "STACK_MEMORY_SHARE", 1e-12)
    alone = [TorchSVD(**{**FAST[TorchSVD], "reg_all": r}) for r in (0.02, 0.05, 0.1)]
    fit_stacked(alone, [trainset] * 3)
    for a, b in zip(algos, alone):
        np.testing.assert_allclose(a.qi, b.qi, rtol=1e-5, atol=1e-6)
    assert [a.stack_size_ for a in algos] == [3, 3, 3] and [a.stack_size_ for a in alone] == [1, 1, 1]
    monkeypatch.setattr(arrays, "STACK_MEMORY_SHARE", 0.5)
    gpu, cpu = torch.device("meta"), torch.device("cpu")  # any device but the CPU: memory alone decides
    assert arrays._rounds([3, 3, 3], 12, gpu) == [[0, 1], [2]]  # 6 bytes a round
    assert arrays._rounds([30, 1], 12, gpu) == [[0], [1]]  # a fit larger than the budget still runs
    # On the CPU a round also stays within the last-level cache (or CPU_ROUND_BYTES where unknown).
    monkeypatch.setattr(arrays, "cache_bytes", lambda: 5)
    assert arrays._rounds([2, 2, 2], 100, cpu) == [[0, 1], [2]]
    assert arrays._rounds([2, 2, 2], 100, gpu) == [[0, 1, 2]]
    monkeypatch.setattr(arrays, "cache_bytes", lambda: None)
    monkeypatch.setattr(arrays, "CPU_ROUND_BYTES", 3)
    assert arrays._rounds([2, 2, 2], 100, cpu) == [[0], [1], [2]]


def test_fit_stacked_refuses_fits_of_different_shapes(split):
    trainset, _ = split
    with pytest.raises(ValueError, match="cannot train as one stack"):
        fit_stacked([TorchSVD(n_factors=4), TorchSVD(n_factors=5)], [trainset] * 2)
    with pytest.raises(ValueError, match="cannot train as one stack"):
        fit_stacked([TorchNMF()], [trainset])


def test_what_does_not_stack():
    assert TorchSVD()._stack_key() == TorchSVD(reg_all=0.3, lr_all=0.01, n_epochs=3, random_state=1)._stack_key()
    assert TorchALS(reg=0.1)._stack_key() == TorchALS(reg=0.2, reg_bu=1.0, n_epochs=2)._stack_key()
    assert TorchSVD(n_factors=10)._stack_key() != TorchSVD()._stack_key()
    assert TorchSVD(verbose=True)._stack_key() is None
    assert TorchSVD(log_dir="runs")._stack_key() is None
    assert TorchNMF()._stack_key() is None
    with pytest.raises(ValueError, match="reg_all"):
        TorchSVD(reg_all=-1)._stack_key()


# -- the searches -----------------------------------------------------------------------

CV = KFold(3, random_state=7)


def _both(search, algo_class, grid, data, **kwargs):
    """Our search and Surprise's, fitted the same way."""
    ours = getattr(ours_ms, search)(algo_class, grid, cv=CV, **kwargs)
    theirs = getattr(surprise_ms, search)(algo_class, grid, cv=CV, **kwargs)
    ours.fit(data)
    theirs.fit(data)
    return ours, theirs


def _assert_same_results(ours, theirs, tol):
    assert ours.cv_results.keys() == theirs.cv_results.keys()
    for key, value in theirs.cv_results.items():
        if "time" in key:
            assert np.all(np.asarray(ours.cv_results[key]) >= 0)
        elif key.startswith(("split", "mean_test", "std_test", "mean_train", "std_train")):
            np.testing.assert_allclose(ours.cv_results[key], value, rtol=0, atol=tol, err_msg=key)
        else:
            assert np.array_equal(np.asarray(ours.cv_results[key]), np.asarray(value)), key
    assert ours.best_params == theirs.best_params
    assert ours.best_index == theirs.best_index
    assert ours.best_score == pytest.approx(theirs.best_score, abs=tol)
    assert {m: type(e) for m, e in ours.best_estimator.items()} == \
        {m: type(e) for m, e in theirs.best_estimator.items()}


GRIDS = {
    TorchSVD: {"n_factors": [3, 4], "reg_all": [0.02, 0.1], "lr_all": [0.05, 0.1], "n_epochs": [10, 20],
               "random_state": [0]},
    TorchSVDpp: {"n_factors": [3], "reg_all": [0.02, 0.1], "n_epochs": [10], "random_state": [0]},
    TorchALS: {"n_factors": [3, 4], "reg": [0.02, 0.1], "reg_bi": [0.03, 0.3], "n_epochs": [3, 6],
               "random_state": [0]},
}


@pytest.mark.parametrize("algo_class", list(GRIDS))
def test_grid_search_equals_surprises_cell_by_cell(synthetic, algo_class):
    ours, theirs = _both("GridSearchCV", algo_class, GRIDS[algo_class], synthetic,
                         measures=["rmse", "mae", "mse", "fcp"], return_train_measures=True)
    _assert_same_results(ours, theirs, 1e-6)
    assert ours.n_stacked_ == len(ours.param_combinations) * 3


def test_surprises_own_algorithms_run_surprises_path(synthetic):
    ours, theirs = _both("GridSearchCV", SVD, {"n_factors": [3, 5], "random_state": [0]}, synthetic,
                         measures=["rmse", "fcp"], refit=True)
    _assert_same_results(ours, theirs, 0.0)
    assert ours.n_stacked_ == 0
    # In joblib's worker processes too, with its verbosity.
    parallel = ours_ms.GridSearchCV(SVD, {"n_factors": [3, 5], "random_state": [0]}, cv=CV, n_jobs=2,
                                    measures=["rmse", "fcp"], joblib_verbose=0).fit(synthetic)
    _assert_same_results(parallel, theirs, 0.0)
    ours, theirs = _both("GridSearchCV", TorchNMF, {"n_factors": [3], "n_epochs": [5, 10], "random_state": [0]},
                         synthetic)
    _assert_same_results(ours, theirs, 0.0)
    assert ours.n_stacked_ == 0


def test_points_that_cannot_stack_fall_back_beside_those_that_do(synthetic, capsys):
    ours, theirs = _both("GridSearchCV", TorchSVD, {"n_factors": [3], "n_epochs": [5], "verbose": [False, True],
                                                    "random_state": [0]}, synthetic)
    _assert_same_results(ours, theirs, 1e-6)
    assert ours.n_stacked_ == 3
    assert "processing epoch 5/5" in capsys.readouterr().out


def test_a_diverging_grid_point_does_not_stop_the_search(synthetic):
    grid = {"n_factors": [3], "optimizer": ["sgd"], "lr_all": [0.5, 1e4], "reg_all": [0.0], "n_epochs": [10],
            "random_state": [0]}
    with pytest.warns(TrainingDivergedWarning, match="lr_all=10000"):
        ours = ours_ms.GridSearchCV(TorchSVD, grid, cv=CV).fit(synthetic)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingDivergedWarning)
        theirs = surprise_ms.GridSearchCV(TorchSVD, grid, cv=CV)
        theirs.fit(synthetic)
    _assert_same_results(ours, theirs, 1e-6)
    assert np.isfinite(ours.cv_results["mean_test_rmse"]).all()
    assert ours.best_params["rmse"]["lr_all"] == 0.5


def test_refit_fits_the_best_parameters_on_the_whole_data(synthetic):
    grid = {"n_factors": [3], "reg": [0.02, 0.5], "random_state": [0]}
    search = ours_ms.GridSearchCV(TorchALS, grid, cv=CV, refit="mae", measures=["rmse", "mae"]).fit(synthetic)
    best = search.best_estimator["mae"]
    reference = TorchALS(**search.best_params["mae"]).fit(synthetic.build_full_trainset())
    np.testing.assert_allclose(best.qi, reference.qi, rtol=1e-6, atol=1e-9)
    testset = synthetic.build_full_trainset().build_testset()[:20]
    assert [p.est for p in search.test(testset)] == [p.est for p in reference.test(testset)]
    assert search.predict("u0", "i1").est == reference.predict("u0", "i1").est


def test_randomized_search_samples_surprises_combinations(synthetic):
    from scipy.stats import randint, uniform

    distributions = {"n_factors": randint(2, 6), "reg_all": uniform(0.01, 0.2), "lr_all": [0.05, 0.1],
                     "random_state": [0]}
    ours = ours_ms.RandomizedSearchCV(TorchSVD, distributions, n_iter=5, cv=CV, random_state=3)
    theirs = surprise_ms.RandomizedSearchCV(TorchSVD, distributions, n_iter=5, cv=CV, random_state=3)
    assert ours.param_combinations == theirs.param_combinations
    ours.fit(synthetic)
    theirs.fit(synthetic)
    _assert_same_results(ours, theirs, 1e-6)
    assert ours.n_stacked_ == 15


@pytest.mark.parametrize("grid,message", [
    ({"n_factors": []}, r"param_grid\['n_factors'\] is an empty list"),  # Surprise: an unpacking error
    ({"n_factors": 5}, r"param_grid\['n_factors'\] must be a list of values, got 5: write \[5\]"),  # a TypeError
    ({"optimizer": "sgd"}, r"must be a list of values, got 'sgd'"),  # Surprise tries 's', 'g' and 'd'
    ({"sim_options": {"name": "msd"}}, r"param_grid\['sim_options'\]\['name'\] must be a list of values"),
])
def test_searches_refuse_a_grid_with_no_list_of_values(grid, message):
    with pytest.raises(ValueError, match=message):
        ours_ms.GridSearchCV(TorchSVD, grid, cv=CV)
    with pytest.raises(ValueError, match=message.replace("param_grid", "param_distributions")):
        ours_ms.RandomizedSearchCV(TorchSVD, grid, cv=CV)


def test_option_dicts_of_lists_are_searched_as_surprise_does():
    # An empty options dict is one combination, as in Surprise; so is each product of the lists inside.
    for grid, count in (({"sim_options": {}, "k": [5]}, 1), ({"sim_options": {"name": ["msd", "cosine"]}}, 2),
                        ({"bsl_options": {"method": ["als"], "n_epochs": [2, 3]}}, 2)):
        ours = ours_ms.GridSearchCV(SVD, grid, cv=CV)
        assert ours.param_combinations == surprise_ms.GridSearchCV(SVD, grid, cv=CV).param_combinations
        assert len(ours.param_combinations) == count


def test_unknown_measures_are_refused_before_fitting(synthetic, monkeypatch):
    # Surprise fits every cell, then fails with an AttributeError from its accuracy module.
    monkeypatch.setattr(TorchSVD, "fit", lambda *args: pytest.fail("fitted before the measures were checked"))
    for run in (lambda: ours_ms.GridSearchCV(TorchSVD, {"n_factors": [3]}, measures=["rmse", "ndcg"], cv=CV)
                .fit(synthetic),
                lambda: ours_ms.cross_validate(TorchSVD(), synthetic, measures=["NDCG"], cv=CV),
                lambda: ours_ms.cross_validate(SVD(), synthetic, measures=["ndcg"], cv=CV)):
        with pytest.raises(ValueError, match=r"\['ndcg'\] are not in surprise.accuracy; use any of rmse, mse"):
            run()


def test_a_seeded_randomized_search_over_lists_draws_the_same_combinations_every_run():
    # Surprise draws list-only combinations from NumPy's global generator, whatever random_state says.
    grid = {"n_factors": list(range(2, 12)), "lr_all": [0.05, 0.1, 0.2]}
    draws = []
    for _ in range(2):
        np.random.random(7)  # whatever else the program drew in between
        draws.append(ours_ms.RandomizedSearchCV(TorchSVD, grid, n_iter=4, cv=CV, random_state=0).param_combinations)
    assert list(draws[0]) == list(draws[1])
    assert list(ours_ms.RandomizedSearchCV(TorchSVD, grid, n_iter=4, cv=CV, random_state=1).param_combinations) != \
        list(draws[0])
    # Unseeded, the draws are Surprise's own.
    combos, saved = [], np.random.get_state()
    try:
        for module in (ours_ms, surprise_ms):
            np.random.seed(5)
            combos.append(list(module.RandomizedSearchCV(TorchSVD, grid, n_iter=4, cv=CV).param_combinations))
    finally:
        np.random.set_state(saved)
    assert combos[0] == combos[1]


def test_randomized_search_past_its_lists_tries_each_combination_once(synthetic):
    # Surprise's sampling without replacement fails inside NumPy; scikit-learn's warns and tries each.
    with pytest.warns(UserWarning, match="n_iter=5 is more than the 2 combinations"):
        search = ours_ms.RandomizedSearchCV(TorchSVD, {"n_factors": [3, 4], "random_state": [0]}, n_iter=5, cv=CV)
    assert sorted(p["n_factors"] for p in search.param_combinations) == [3, 4]
    with pytest.raises(ValueError, match="larger sample than population"):
        surprise_ms.RandomizedSearchCV(TorchSVD, {"n_factors": [3, 4]}, n_iter=5, cv=CV)
    assert len(search.fit(synthetic).cv_results["mean_test_rmse"]) == 2


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_cross_validate_equals_surprises(synthetic, capsys, n_jobs):
    algo = TorchALS(**FAST[TorchALS])
    ours = ours_ms.cross_validate(algo, synthetic, measures=["RMSE", "fcp"], cv=CV, return_train_measures=True,
                                  n_jobs=n_jobs, verbose=True)
    printed = capsys.readouterr().out
    theirs = surprise_ms.cross_validate(algo, synthetic, measures=["RMSE", "fcp"], cv=CV, return_train_measures=True,
                                        verbose=True)
    expected = capsys.readouterr().out
    assert ours.keys() == theirs.keys()
    for key in ("test_rmse", "test_fcp", "train_rmse", "train_fcp"):
        np.testing.assert_allclose(ours[key], theirs[key], rtol=0, atol=1e-6)
    assert len(ours["fit_time"]) == len(ours["test_time"]) == 3
    # The same summary, but for the times.
    assert [line for line in printed.splitlines() if "time" not in line] == \
        [line for line in expected.splitlines() if "time" not in line]


def test_cross_validate_hands_other_algorithms_to_surprise(synthetic):
    ours = ours_ms.cross_validate(SVD(random_state=0), synthetic, cv=CV)
    theirs = surprise_ms.cross_validate(SVD(random_state=0), synthetic, cv=CV)
    np.testing.assert_array_equal(ours["test_rmse"], theirs["test_rmse"])


def test_lanes_run_every_job_on_one_thread_each_and_restore_torch():
    before = torch.get_num_threads()
    seen = []
    def job(name):
        return lambda: seen.append((name, threads.fit_threads(1e12), torch.get_num_threads(), threads.lanes_running()))

    threads.run_lanes([job("a"), job("b"), job("b")], 2)
    assert sorted(s[0] for s in seen) == ["a", "b", "b"]
    # One torch thread each, and half the memory budget each.
    assert all(s[1:] == (1, 1, 2) for s in seen)
    assert torch.get_num_threads() == before and threads.lanes_running() == 1

    # Lanes take jobs as they come free: one held up takes fewer, the other the rest.
    import threading
    import time

    release, taken = threading.Event(), []

    def slow():
        taken.append(("slow", threading.get_ident()))
        release.wait(5)

    def quick(n):
        def run():
            taken.append((n, threading.get_ident()))
            if n == 5:
                release.set()
        return run

    threads.run_lanes([slow] + [quick(n) for n in range(6)], 2)
    assert len(taken) == 7 and len({ident for name, ident in taken if name != "slow"}) == 1

    def fail():
        time.sleep(0.05)
        raise RuntimeError("boom")

    ran = []
    with pytest.raises(RuntimeError, match="boom"):
        threads.run_lanes([fail, lambda: time.sleep(0.2)] + [lambda: ran.append(1)] * 10, 2)
    assert len(ran) < 10  # no lane starts a job once one has failed
    assert torch.get_num_threads() == before


def test_the_bayesian_model_runs_surprises_path(synthetic):
    from surprise_torch import TorchBayesMF

    grid = {"n_factors": [2, 3], "n_epochs": [12], "burn_in": [2], "random_state": [0]}
    ours, theirs = _both("GridSearchCV", TorchBayesMF, grid, synthetic)
    _assert_same_results(ours, theirs, 0.0)
    assert ours.n_stacked_ == 0


def test_one_lane_gives_the_same_search(synthetic, monkeypatch):
    import surprise_torch.model_selection as module

    grid = {"n_factors": [3], "reg_all": [0.02, 0.1], "random_state": [0]}
    two = ours_ms.GridSearchCV(TorchSVD, grid, cv=CV).fit(synthetic)
    monkeypatch.setattr(module, "lane_count", lambda: 1)  # as with one allowed thread, or a GPU's stacks
    one = ours_ms.GridSearchCV(TorchSVD, grid, cv=CV).fit(synthetic)
    _assert_same_results(one, two, 1e-6)
    assert one.n_stacked_ == two.n_stacked_ == 6


def test_the_last_level_cache_is_read_from_sysfs(monkeypatch, tmp_path):
    import surprise_torch._data as data

    for index, (kind, level, size) in enumerate([("Data", 1, "48K"), ("Instruction", 1, "32K"),
                                                  ("Unified", 2, "1024K"), ("Unified", 3, "32M")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        for name, value in (("type", kind), ("level", level), ("size", size)):
            (folder / name).write_text(f"{value}\n")
    monkeypatch.setattr(data.glob, "glob", lambda pattern: [str(p) for p in sorted(tmp_path.iterdir())])
    data.cache_bytes.cache_clear()
    try:
        assert data.cache_bytes() == 32 * 2 ** 20
        monkeypatch.setattr(data.glob, "glob", lambda pattern: [])
        data.cache_bytes.cache_clear()
        assert data.cache_bytes() is None
    finally:
        data.cache_bytes.cache_clear()

"""Surprise's own tools drive our algorithms unchanged."""

import numpy as np
import pytest
from surprise import accuracy
from surprise.model_selection import GridSearchCV, KFold, RandomizedSearchCV, cross_validate

from surprise_torch import TorchALS, TorchSVD

from .conftest import ALGORITHMS, FAST


@pytest.mark.parametrize("algo_class", ALGORITHMS, ids=lambda c: c.__name__)
def test_cross_validate_in_two_processes(algo_class, synthetic):
    cv = KFold(3, random_state=0)
    parallel = cross_validate(algo_class(**FAST[algo_class]), synthetic, measures=["rmse", "mae"],
                              cv=cv, n_jobs=2)
    serial = cross_validate(algo_class(**FAST[algo_class]), synthetic, measures=["rmse", "mae"], cv=cv)
    assert len(parallel["test_rmse"]) == 3
    np.testing.assert_allclose(parallel["test_rmse"], serial["test_rmse"], rtol=1e-6)
    assert (parallel["test_mae"] < parallel["test_rmse"]).all()


def test_grid_search_picks_from_the_grid(synthetic):
    grid = {"n_factors": [2, 4], "reg": [0.05, 5.0]}
    gs = GridSearchCV(TorchALS, {**grid, "n_epochs": [5], "random_state": [0]}, measures=["rmse", "mae"],
                      cv=3)
    gs.fit(synthetic)
    assert len(gs.cv_results["params"]) == 4
    # A reg of 5 all but zeroes the factors; the search must see that.
    assert gs.best_params["rmse"]["reg"] == 0.05
    best = gs.best_estimator["rmse"]
    assert isinstance(best, TorchALS) and best.n_factors in (2, 4)
    best.fit(synthetic.build_full_trainset())
    assert np.isfinite(best.predict("u1", "i1").est)


def test_randomized_search(synthetic):
    rs = RandomizedSearchCV(TorchSVD, {"n_factors": [2, 4], "lr_all": [0.05, 0.1], "n_epochs": [20],
                                       "random_state": [0]},
                            n_iter=3, measures=["rmse"], cv=2, random_state=0, n_jobs=2)
    rs.fit(synthetic)
    assert len(rs.cv_results["params"]) == 3
    assert rs.best_score["rmse"] < 1.0


@pytest.mark.parametrize("algo_class", ALGORITHMS, ids=lambda c: c.__name__)
def test_accuracy_measures(algo_class, split):
    trainset, testset = split
    preds = algo_class(**FAST[algo_class]).fit(trainset).test(testset)
    rmse, mae, mse = (f(preds, verbose=False) for f in (accuracy.rmse, accuracy.mae, accuracy.mse))
    assert mse == pytest.approx(rmse ** 2)
    assert 0 < mae <= rmse < 1
    assert accuracy.fcp(preds, verbose=False) > 0.6


def test_test_on_trainset_and_anti_testset(split):
    trainset, _ = split
    algo = TorchSVD(**FAST[TorchSVD]).fit(trainset)
    train_preds = algo.test(trainset.build_testset())
    assert len(train_preds) == trainset.n_ratings
    assert accuracy.rmse(train_preds, verbose=False) == pytest.approx(algo.history["train_rmse"][-1], abs=0.05)
    anti = algo.test(trainset.build_anti_testset())
    assert len(anti) == trainset.n_users * trainset.n_items - trainset.n_ratings
    assert not any(p.details["was_impossible"] for p in anti)

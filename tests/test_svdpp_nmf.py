"""What only SVD++ and NMF have: implicit factors, non-negativity, Surprise's own numbers."""

import numpy as np
import pytest
from surprise import NMF, SVDpp, accuracy

from surprise_torch import TorchNMF, TorchSVDpp

from .conftest import FAST, dataset_from


def test_svdpp_implicit_term_is_surprises_formula(split):
    trainset, _ = split
    algo = TorchSVDpp(**FAST[TorchSVDpp]).fit(trainset)
    assert algo.yj.shape == (trainset.n_items, 4)
    expected = np.array([algo.yj[[j for j, _ in trainset.ur[u]]].sum(0) / np.sqrt(len(trainset.ur[u]))
                         for u in range(trainset.n_users)])
    np.testing.assert_allclose(algo.implicit_, expected, rtol=1e-12, atol=1e-12)
    # The implicit factors matter: dropping them changes the predictions.
    u, i = 0, 0
    assert algo.estimate(u, i) != pytest.approx(algo.global_mean_ + algo.bu[u] + algo.bi[i] + algo.pu[u] @ algo.qi[i])


def test_svdpp_accepts_surprises_parameters():
    params = SVDpp().__dict__
    ours = TorchSVDpp().get_params()
    surprise_names = {"n_factors", "n_epochs", "init_mean", "init_std_dev", "lr_bu", "lr_bi", "lr_pu", "lr_qi",
                      "lr_yj", "reg_bu", "reg_bi", "reg_pu", "reg_qi", "reg_yj", "random_state", "verbose",
                      "cache_ratings"}
    assert surprise_names <= set(params) and surprise_names <= set(ours)
    assert TorchSVDpp(cache_ratings=True).get_params()["cache_ratings"] is True


def test_nmf_defaults_are_surprises():
    ours = TorchNMF().get_params()
    theirs = NMF().__dict__
    for name in ("n_factors", "n_epochs", "biased", "reg_pu", "reg_qi", "reg_bu", "reg_bi", "lr_bu", "lr_bi",
                 "init_low", "init_high"):
        assert ours[name] == theirs[name], name


def test_nmf_factors_stay_non_negative_and_match_surprise(split):
    trainset, testset = split
    params = dict(n_factors=6, n_epochs=80)
    algo = TorchNMF(random_state=0, **params).fit(trainset)
    assert (algo.pu >= 0).all() and (algo.qi >= 0).all()
    ours = accuracy.rmse(algo.test(testset), verbose=False)
    theirs = accuracy.rmse(NMF(random_state=0, **params).fit(trainset).test(testset), verbose=False)
    assert ours <= theirs * 1.02
    # Multiplicative updates never increase this objective much; the trend is down.
    assert algo.history["loss"][-1] < 0.5 * algo.history["loss"][0]


def test_nmf_refuses_negative_ratings(tmp_path_factory):
    data = dataset_from([("a", "x", -2.0), ("b", "y", 3.0), ("a", "y", 1.0)], tmp_path_factory)
    with pytest.raises(ValueError, match="non-negative"):
        TorchNMF(**FAST[TorchNMF]).fit(data.build_full_trainset())

"""What users meet in real workflows: threads, rating scales, blow-ups, huge testsets, Surprise's habits."""

import os
import pickle
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from joblib import Parallel, delayed
from surprise import NMF, SVD, KNNBasic, SVDpp, accuracy
from surprise.model_selection import GridSearchCV, KFold, train_test_split

import surprise_torch
import surprise_torch._threads as threads
import surprise_torch.algorithms._base as base
from surprise_torch import (TorchALS, TorchBayesMF, TorchNMF, TorchSVD, TorchSVDpp, TrainingDivergedError,
                            TrainingDivergedWarning, complete_als, top_n, train_nmf, train_on_arrays)
from surprise_torch.arrays import choose_layout

from .conftest import ALGORITHMS, FAST, dataset_from, fitted, has_param, low_rank_ratings


# -- 1. threads -------------------------------------------------------------------------

@pytest.fixture
def caller_threads():
    """Torch set to 3 threads by 'the caller' (not this machine's default), restored after the test."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)
    surprise_torch.set_num_threads(None)


@pytest.mark.parametrize("algo_class", ALGORITHMS, ids=lambda c: c.__name__)
def test_small_fits_run_on_one_thread_and_restore_the_callers_setting(algo_class, split, caller_threads):
    trainset, _ = split
    algo = fitted(algo_class, trainset, device="cpu")
    assert algo.n_threads_ == 1
    assert torch.get_num_threads() == caller_threads


def test_large_fits_use_the_callers_threads_and_a_pin_wins(split, caller_threads, monkeypatch):
    trainset, _ = split
    monkeypatch.setattr(threads, "SINGLE_THREAD_WORK", 0)
    assert fitted(TorchSVD, trainset, device="cpu").n_threads_ == caller_threads
    torch.set_num_threads(1)  # the user's cap holds even for large fits
    assert fitted(TorchSVD, trainset, device="cpu").n_threads_ == 1
    surprise_torch.set_num_threads(2)
    assert fitted(TorchSVD, trainset, device="cpu").n_threads_ == 2
    assert torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="n must be"):
        surprise_torch.set_num_threads(0)


def test_a_failing_fit_restores_the_callers_threads(split, caller_threads):
    trainset, _ = split
    with pytest.raises(TrainingDivergedError):
        fitted(TorchSVD, trainset, device="cpu", optimizer="sgd", lr_all=1e4, reg_all=0.0, on_divergence="raise")
    assert torch.get_num_threads() == caller_threads


def _worker_threads():
    import torch as worker_torch

    from surprise_torch._threads import fit_threads

    return worker_torch.get_num_threads(), fit_threads(float("inf")), fit_threads(0)


def test_joblib_workers_get_cores_over_n_jobs():
    # Surprise's n_jobs runs on joblib's default backend, which sets
    # OMP_NUM_THREADS = cores // n_jobs in each worker before torch starts.
    results = Parallel(n_jobs=2)(delayed(_worker_threads)() for _ in range(2))
    expected = max(1, (os.cpu_count() or 1) // 2)
    for torch_threads, large, small in results:
        assert torch_threads == expected and large == expected and small == 1


def test_cross_validate_with_n_jobs_matches_one_job(synthetic):
    from surprise.model_selection import cross_validate

    folds = KFold(3, random_state=0)
    one = cross_validate(TorchSVD(**FAST[TorchSVD]), synthetic, cv=folds, n_jobs=1)
    two = cross_validate(TorchSVD(**FAST[TorchSVD]), synthetic, cv=folds, n_jobs=2)
    np.testing.assert_allclose(one["test_rmse"], two["test_rmse"], rtol=1e-6)


# -- 2. rating scales -----------------------------------------------------------------------

AFFINE = [(5.0, 0.0), (2.0, -7.0), (0.1, 3.0), (20.0, 100.0)]


def _scaled_split(tmp_path_factory, a, b):
    ratings = [(u, i, a * r + b) for u, i, r in low_rank_ratings(seed=3)]
    data = dataset_from(ratings, tmp_path_factory, rating_scale=(a * 1 + b, a * 5 + b))
    return train_test_split(data, test_size=0.25, random_state=0)


def _unclipped(algo, testset):
    return np.array([algo.predict(u, i, clip=False).est for u, i, _ in testset])


EQUIVARIANT = [(TorchSVD, {}), (TorchSVD, {"optimizer": "sgd", "lr_all": 0.5}),
               (TorchSVD, {"optimizer": "rmsprop", "lr_all": 0.01}), (TorchSVD, {"biased": False}),
               (TorchSVDpp, {}), (TorchALS, {}), (TorchALS, {"biased": False}), (TorchNMF, {})]


@pytest.mark.parametrize("algo_class,params", EQUIVARIANT,
                         ids=[f"{c.__name__}-{'-'.join(map(str, p.values())) or 'defaults'}" for c, p in EQUIVARIANT])
@pytest.mark.parametrize("a,b", AFFINE)
def test_models_are_equivariant_to_the_rating_scale(algo_class, params, a, b, tmp_path_factory):
    shifts = algo_class is not TorchNMF and params.get("biased", True)
    if not shifts and b != 0:
        pytest.skip("models without a mean term (NMF, biased=False) are equivariant to scaling only")
    base_train, base_test = _scaled_split(tmp_path_factory, 1.0, 0.0)
    train, test = _scaled_split(tmp_path_factory, a, b)
    reference = fitted(algo_class, base_train, **params)
    scaled = fitted(algo_class, train, **params)
    np.testing.assert_allclose(_unclipped(scaled, test), a * _unclipped(reference, base_test) + b,
                               rtol=1e-5, atol=1e-5 * a)
    # The fitted attributes keep their meaning: biases in rating units, factors' products too.
    np.testing.assert_allclose(scaled.bu, a * reference.bu, rtol=1e-4, atol=1e-5 * a)
    assert scaled.history["train_rmse"][-1] == pytest.approx(a * reference.history["train_rmse"][-1], rel=1e-4)


def test_nmf_on_star_ratings_trains_on_the_ratings_themselves():
    # Ratings up to 5 are not rescaled, so TorchNMF is Surprise's NMF on them;
    # ratings up to 10 are halved, so the model is the same one, doubled.
    users, items = np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 0, 2])
    stars = np.array([5.0, 3.0, 4.0, 1.0, 2.0])
    coo = torch.sparse_coo_tensor(np.stack([users, items]), stars, (3, 3), check_invariants=True)
    direct = train_nmf(coo, n_factors=2, n_epochs=5, generator=torch.Generator().manual_seed(0))
    for a in (1.0, 2.0):
        model = train_on_arrays("nmf", users, items, a * stars, n_factors=2, n_epochs=5, random_state=0,
                                dtype="float64")
        torch.testing.assert_close(model.pu @ model.qi.T, a * direct.pu @ direct.qi.T)


# -- 3. runs that blow up -----------------------------------------------------------------------

@pytest.mark.parametrize("params", [{"lr_all": 1000.0}, {"optimizer": "rmsprop", "lr_all": 1e4}])
def test_finite_blow_ups_are_never_silent(split, params):
    trainset, testset = split
    with pytest.warns(TrainingDivergedWarning, match=r"grew to .* times that of predicting the mean"):
        algo = TorchSVD(random_state=0, **params).fit(trainset)
    baseline = np.std([r for _, _, r in trainset.all_ratings()])
    assert np.isfinite(algo.pu).all()
    assert algo.history["train_rmse"] == [] or max(algo.history["train_rmse"]) < 4 * baseline
    with pytest.raises(TrainingDivergedError, match=r"TorchSVD\(.*lr_all"):
        TorchSVD(random_state=0, on_divergence="raise", **params).fit(trainset)


def test_a_sound_run_does_not_warn(split):
    trainset, _ = split
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingDivergedWarning)
        for algo_class in ALGORITHMS:
            assert fitted(algo_class, trainset).diverged_ is None


def test_grid_search_survives_a_diverging_point_and_names_it(synthetic):
    with pytest.warns(TrainingDivergedWarning, match=r"TorchSVD\(lr_all=1000\)"):
        gs = GridSearchCV(TorchSVD, {"lr_all": [0.1, 1000]}, measures=["rmse", "mae"], cv=3)
        gs.fit(synthetic)
    assert gs.best_params["rmse"] == {"lr_all": 0.1}
    scores = gs.cv_results["mean_test_rmse"]
    assert np.isfinite(scores).all() and scores[1] > scores[0]


@pytest.mark.ml100k
def test_grid_search_on_ml100k_picks_the_sound_learning_rate(ml100k):
    with pytest.warns(TrainingDivergedWarning, match=r"TorchSVD\(lr_all=1000\)"):
        gs = GridSearchCV(TorchSVD, {"lr_all": [0.1, 1000]}, measures=["rmse"], cv=3)
        gs.fit(ml100k)
    assert gs.best_params["rmse"] == {"lr_all": 0.1}
    assert np.isfinite(gs.cv_results["mean_test_rmse"]).all()


# -- 4. large testsets --------------------------------------------------------------------

@pytest.mark.parametrize("algo_class", [TorchSVD, TorchSVDpp], ids=lambda c: c.__name__)
def test_blocked_test_equals_the_predict_loop(algo_class, split, monkeypatch):
    trainset, testset = split
    algo = fitted(algo_class, trainset)
    monkeypatch.setattr(base, "TEST_BLOCK", 7)
    monkeypatch.setattr(base, "ESTIMATE_BLOCK", 9)
    anti = trainset.build_anti_testset()[:500] + testset
    blocked = algo.test(iter(anti))  # any iterable, as Surprise's test accepts
    assert blocked == [algo.predict(u, i, r) for u, i, r in anti]


def _peak_test_bytes(algo, testset):
    tracemalloc.start()
    predictions = algo.test(testset)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(predictions) == len(testset)
    return peak


def test_anti_testset_memory_does_not_grow_with_factors_and_stays_under_surprises(tmp_path_factory):
    # 228k pairs: enough that the predictions themselves, not fixed-size buffers, dominate.
    data = dataset_from(low_rank_ratings(n_users=600, n_items=400, density=0.05, seed=4), tmp_path_factory)
    trainset = data.build_full_trainset()
    anti = trainset.build_anti_testset()
    small = _peak_test_bytes(TorchSVD(n_factors=2, n_epochs=1).fit(trainset), anti)
    large = _peak_test_bytes(TorchSVD(n_factors=400, n_epochs=1).fit(trainset), anti)
    surprise = _peak_test_bytes(SVD(n_factors=400, n_epochs=1).fit(trainset), anti)
    assert large < small + 2 * 8 * base.ESTIMATE_BLOCK + 2**18
    # The Prediction objects are Surprise's own, byte for byte; beyond them
    # only fixed-size blocks (under 1 MB) are alive at once.
    assert large <= surprise + 2**20


# -- 5. Surprise's parameter types and habits -------------------------------------------------

def test_random_state_accepts_a_numpy_random_state(split):
    trainset, _ = split
    a = TorchSVD(**{**FAST[TorchSVD], "random_state": np.random.RandomState(7)}).fit(trainset)
    b = TorchSVD(**{**FAST[TorchSVD], "random_state": np.random.RandomState(7)}).fit(trainset)
    assert np.array_equal(a.pu, b.pu)
    # Like Surprise's, the same RandomState object advances: refits differ.
    rng = np.random.RandomState(7)
    algo = TorchSVD(**{**FAST[TorchSVD], "random_state": rng})
    first = algo.fit(trainset).pu.copy()
    assert not np.array_equal(first, algo.fit(trainset).pu)


@pytest.mark.parametrize("algo_class", ALGORITHMS, ids=lambda c: c.__name__)
def test_numpy_scalars_and_surprises_integer_flags(algo_class, split):
    trainset, _ = split
    params = {**FAST[algo_class], "n_factors": np.int64(4), "n_epochs": np.int32(5), "verbose": 0,
              "random_state": np.int64(0)}
    if has_param(algo_class, "biased"):
        params["biased"] = np.True_
    if has_param(algo_class, "lr_all"):
        params["lr_all"] = np.float32(0.05)
    algo = algo_class(**params).fit(trainset)
    assert algo.pu.shape[1] == 4 and len(algo.history["train_rmse"]) == 5


@pytest.mark.parametrize("algo_class", ALGORITHMS, ids=lambda c: c.__name__)
def test_zero_epochs_gives_the_initial_model(algo_class, split):
    trainset, testset = split
    if algo_class is TorchBayesMF:  # a posterior mean needs at least one sample
        with pytest.raises(ValueError, match="n_epochs"):
            fitted(algo_class, trainset, n_epochs=0)
        return
    algo = fitted(algo_class, trainset, n_epochs=0)
    assert algo.history == {} and algo.diverged_ is None
    assert np.isfinite([p.est for p in algo.test(testset)]).all()


def test_eval_set_without_true_ratings_is_refused(split):
    trainset, _ = split
    with pytest.raises(ValueError, match="eval_set"):
        TorchSVD(**FAST[TorchSVD]).fit(trainset, eval_set=[("u0", "i1", None)])


def test_ratings_too_large_for_float32_say_so():
    with pytest.raises(ValueError, match="float64"):
        train_on_arrays("svd", [0, 1], [0, 1], [1e39, 1.0])
    model = train_on_arrays("svd", [0, 1, 1], [0, 1, 0], [1e39, 1.0, 2e39], dtype="float64", n_factors=2,
                            n_epochs=3, random_state=0)
    assert np.isfinite(model.global_mean) and torch.isfinite(model.bu).all()


def test_ratings_that_fit_their_training_dtype_by_type_are_not_measured(monkeypatch):
    import surprise_torch.arrays as arrays_module

    def no_pass(values):
        raise AssertionError("a pass over the ratings")

    monkeypatch.setattr(arrays_module, "_range", no_pass)
    for ratings, dtype in ((np.float32, torch.float32), (np.float32, torch.float64), (np.float64, torch.float64)):
        arrays_module._check_magnitude(np.array([3e38, 1.0], dtype=ratings), dtype)
    with pytest.raises(AssertionError, match="a pass"):
        arrays_module._check_magnitude(np.array([1.0, 2.0]), torch.float32)


def test_svdpp_trains_and_predicts_with_the_same_rated_items(tmp_path_factory):
    ratings = low_rank_ratings(seed=6)
    ratings = ratings + [ratings[0], ratings[5]]  # two (user, item) pairs rated twice
    trainset = dataset_from(ratings, tmp_path_factory).build_full_trainset()
    testset = trainset.build_testset()
    algo = TorchSVDpp(**FAST[TorchSVDpp]).fit(trainset, eval_set=testset)
    assert algo.history["eval_rmse"][-1] == pytest.approx(accuracy.rmse(algo.test(testset), verbose=False),
                                                          rel=1e-5)


@pytest.mark.parametrize("algo_class", ALGORITHMS, ids=lambda c: c.__name__)
def test_test_returns_the_types_predict_returns(algo_class, split):
    trainset, testset = split
    for biased in ((True, False) if has_param(algo_class, "biased") else (True,)):
        algo = fitted(algo_class, trainset, **({"biased": biased} if has_param(algo_class, "biased") else {}))
        batched = algo.test(testset)
        looped = [algo.predict(u, i, r) for u, i, r in testset]
        assert [type(p.est) for p in batched] == [type(p.est) for p in looped]
        if biased:  # a clipped estimate is the scale's own int bound, as in Surprise
            assert any(isinstance(p.est, int) for p in looped)
        else:  # an impossible one is Surprise's default prediction, a NumPy float
            assert any(isinstance(p.est, np.floating) for p in looped)


@pytest.mark.parametrize("surprise_class,params", [(SVD, {}), (SVD, {"biased": False}), (SVDpp, {}),
                                                   (NMF, {}), (NMF, {"biased": True})])
def test_top_n_works_on_surprises_factorizations(surprise_class, params, split):
    trainset, _ = split
    algo = surprise_class(n_factors=4, n_epochs=5, random_state=0, **params).fit(trainset)
    recs = top_n(algo, n=3)
    for uid, items in list(recs.items())[:10]:
        for iid, est in items:
            assert est == pytest.approx(algo.predict(uid, iid).est, abs=1e-9)


def test_top_n_refuses_what_it_cannot_score(split):
    trainset, _ = split
    with pytest.raises(TypeError, match="KNNBasic"):
        top_n(KNNBasic(verbose=False).fit(trainset))


@pytest.mark.parametrize("matrix", [np.ones((4, 3)), [[1, 2, 3], [2, 4, 6]], torch.ones((4, 3), dtype=torch.int64)])
def test_complete_als_converts_arrays_lists_and_integer_tensors(matrix):
    u, v, rmse = complete_als(matrix, n_factors=1, n_epochs=2, generator=torch.Generator().manual_seed(0))
    assert u.is_floating_point() and np.isfinite(rmse).all() and rmse[-1] < 1e-6


@pytest.mark.parametrize("matrix,match", [
    (torch.ones((4, 3)).to_sparse(), "sparse"), (np.ones((0, 3)), "non-empty"), (np.ones(5), "2-D"),
    (np.ones((2, 2, 2)), "2-D"), ([["a", "b"]], "numbers"),
])
def test_complete_als_refuses_what_is_not_a_complete_matrix(matrix, match):
    with pytest.raises(ValueError, match=match):
        complete_als(matrix)


def test_auto_layout_weighs_how_many_ratings_there_are(monkeypatch):
    import surprise_torch.arrays as arrays_module

    # Where auto may choose the dense layout (MPS; described, not used), with memory to spare.
    monkeypatch.setattr(arrays_module, "available_bytes", lambda device: 2 ** 33)
    mps = torch.device("mps")
    assert choose_layout("auto", 12_000, 12_000, torch.float32, mps, n_ratings=3) == "sparse"
    assert choose_layout("auto", 943, 1682, torch.float32, mps, n_ratings=80_000) == "dense"
    assert choose_layout("auto", 10, 10, torch.float32, mps, n_ratings=1) == "dense"  # tiny: dense is free


def test_pickles_carry_the_new_attributes(split):
    trainset, testset = split
    algo = fitted(TorchSVD, trainset)
    restored = pickle.loads(pickle.dumps(algo))
    assert restored.n_threads_ == algo.n_threads_ and restored.test(testset) == algo.test(testset)


@pytest.mark.parametrize("trainer", ["svd", "svdpp", "als", "nmf", "bayes"])
def test_equal_ratings_are_not_mistaken_for_a_blow_up(trainer):
    # Implicit-feedback data (every rating 1) has no spread around its mean:
    # the guard's reference must not collapse to zero, nor the sampler's
    # starting noise precision grow without bound (its first solves were NaN).
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 50, 500), rng.integers(0, 40, 500)
    for biased in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("error", TrainingDivergedWarning)
            model = train_on_arrays(trainer, users, items, np.ones(500), random_state=0, biased=biased)
        assert model.diverged is None


@pytest.mark.parametrize("algo_class", [TorchSVD, TorchSVDpp, TorchALS, TorchNMF], ids=lambda c: c.__name__)
@pytest.mark.parametrize("ratings", [[4], [3, 3, 3]], ids=["one rating", "equal ratings"])
def test_a_handful_of_equal_ratings_trains_and_fits_them(algo_class, ratings, tmp_path_factory):
    # With no spread at all, a model that drifts off its first epoch's tiny
    # RMSE is no blow-up: the guard used to call it one, and its message
    # then divided by the zero reference (ZeroDivisionError out of fit).
    triples = [(u, u % 2, r) for u, r in enumerate(ratings)]
    trainset = dataset_from(triples, tmp_path_factory).build_full_trainset()
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingDivergedWarning)
        algo = algo_class(random_state=0).fit(trainset)
    estimates = [algo.predict(str(u), str(i)).est for u, i, _ in triples]
    # NMF has no mean term: its factors alone carry the ratings, and only come near them.
    assert np.allclose(estimates, ratings, atol=0.5 if algo_class is TorchNMF else 0.1)


@pytest.mark.parametrize("trainer,name,value", [("als", "n_factors", "10"), ("svdpp", "n_factors", None),
                                                ("als", "cg_steps", 2.5), ("bayes", "max_samples", 0)])
def test_sizes_are_checked_before_the_memory_estimate_uses_them(trainer, name, value):
    # The estimate's arithmetic failed first, with a TypeError about str or None.
    with pytest.raises(ValueError, match=f"{name} must be an integer"):
        train_on_arrays(trainer, [0, 1, 1], [0, 0, 1], [1.0, 2.0, 3.0], **{name: value})

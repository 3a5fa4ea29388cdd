"""The contract every algorithm of ours keeps with Surprise, run against each of them."""

import pickle
import sys

import numpy as np
import pytest
import torch
from surprise import NMF, BaselineOnly, accuracy, dump
from surprise.trainset import Trainset
from surprise.model_selection import train_test_split

from surprise_torch import TorchBayesMF, TorchNMF, TrainingDivergedError, TrainingDivergedWarning

from .conftest import ALGORITHMS, CHANGES, DIVERGE, FAST, HISTORY, dataset_from, fitted, has_param, low_rank_ratings

pytestmark = pytest.mark.parametrize("algo_class", ALGORITHMS, ids=lambda c: c.__name__)


def test_fit_returns_self_with_surprise_attributes(algo_class, split):
    trainset, _ = split
    algo = algo_class(**FAST[algo_class])
    assert algo.fit(trainset) is algo
    k = FAST[algo_class]["n_factors"]
    assert algo.pu.shape == (trainset.n_users, k) and algo.qi.shape == (trainset.n_items, k)
    assert algo.bu.shape == (trainset.n_users,) and algo.bi.shape == (trainset.n_items,)
    for name in ("pu", "qi", "bu", "bi"):
        assert isinstance(getattr(algo, name), np.ndarray) and getattr(algo, name).dtype == np.float64
    assert algo.device_ == "cpu" and algo.layout_ == "sparse"  # auto: sparse on the CPU
    assert 0 < algo.conversion_s_ < 10


def test_learns_low_rank_structure(algo_class, split):
    trainset, testset = split
    algo = fitted(algo_class, trainset)
    rmse = accuracy.rmse(algo.test(testset), verbose=False)
    if algo_class is TorchNMF:
        # Non-negative factors cannot fit this signed signal as closely; the
        # oracle is Surprise's own NMF with the same parameters.
        surprise_nmf = NMF(**{k: v for k, v in FAST[TorchNMF].items()}).fit(trainset)
        assert rmse <= accuracy.rmse(surprise_nmf.test(testset), verbose=False)
        return
    # Surprise's biases-only model is the oracle: the factors must explain
    # most of what the biases leave over.
    baseline = accuracy.rmse(BaselineOnly(verbose=False).fit(trainset).test(testset), verbose=False)
    assert rmse < 0.5 * baseline


def test_batched_test_is_identical_to_predict_loop(algo_class, split):
    trainset, testset = split
    for biased in ((True, False) if has_param(algo_class, "biased") else (True,)):
        algo = fitted(algo_class, trainset, **({"biased": biased} if has_param(algo_class, "biased") else {}))
        batched = algo.test(testset)
        looped = [algo.predict(uid, iid, r_ui) for uid, iid, r_ui in testset]
        assert len(batched) == len(looped) == len(testset)
        for b, p in zip(batched, looped):
            assert (b.uid, b.iid, b.r_ui) == (p.uid, p.iid, p.r_ui)
            assert b.est == p.est, (b, p)
            assert b.details == p.details
        assert any(p.details["was_impossible"] for p in looped) == (not biased)
        # Clipping happened somewhere, so the equality above covers it.
        assert any(p.est in (1, 5) for p in looped) or not biased


def test_unknown_users_and_items_follow_surprise_svd(algo_class, split):
    trainset, _ = split
    algo = fitted(algo_class, trainset, **({"biased": True} if has_param(algo_class, "biased") else {}))
    mu = algo.global_mean_
    assert mu == pytest.approx(trainset.global_mean)
    u, i = trainset.to_inner_uid("u0"), trainset.to_inner_iid("i0")
    assert algo.predict("nobody", "nothing", clip=False).est == pytest.approx(mu)
    assert algo.predict("u0", "nothing", clip=False).est == pytest.approx(mu + algo.bu[u])
    assert algo.predict("nobody", "i0", clip=False).est == pytest.approx(mu + algo.bi[i])
    known = algo.predict("u0", "i0", clip=False).est
    user_vector = algo.pu[u]
    if hasattr(algo, "yj"):  # SVD++: Surprise's implicit term, computed here from scratch
        rated = [j for j, _ in trainset.ur[u]]
        user_vector = user_vector + algo.yj[rated].sum(0) / np.sqrt(len(rated))
    dot = user_vector @ algo.qi[i]
    if hasattr(algo, "pu_samples_"):  # Bayesian: the posterior mean of the samples' dot products
        dot = algo.pu_samples_[u] @ algo.qi_samples_[i]
    assert known == pytest.approx(mu + algo.bu[u] + algo.bi[i] + dot)
    if not has_param(algo_class, "biased"):
        return

    unbiased = fitted(algo_class, trainset, biased=False)
    pred = unbiased.predict("nobody", "i0")
    assert pred.details == {"was_impossible": True, "reason": "User and item are unknown."}
    assert pred.est == trainset.global_mean
    assert not unbiased.bu.any() and not unbiased.bi.any()
    pu, qi = (unbiased.pu_samples_, unbiased.qi_samples_) if hasattr(unbiased, "pu_samples_") else (unbiased.pu,
                                                                                                     unbiased.qi)
    assert unbiased.predict("u0", "i0", clip=False).est == pytest.approx(pu[u] @ qi[i])


def test_pickle_and_dump_round_trips(algo_class, split, tmp_path):
    trainset, testset = split
    algo = fitted(algo_class, trainset)
    expected = algo.test(testset)
    assert pickle.loads(pickle.dumps(algo)).test(testset) == expected
    path = str(tmp_path / "model")
    dump.dump(path, algo=algo)
    _, loaded = dump.load(path)
    assert loaded.test(testset) == expected
    assert type(loaded) is algo_class and loaded.get_params() == algo.get_params()


def test_same_seed_same_model_other_seed_other_model(algo_class, split):
    trainset, testset = split
    a = fitted(algo_class, trainset, random_state=3)
    b = fitted(algo_class, trainset, random_state=3)
    c = fitted(algo_class, trainset, random_state=4)
    assert np.array_equal(a.pu, b.pu) and np.array_equal(a.qi, b.qi)
    assert a.test(testset) == b.test(testset)
    assert not np.allclose(a.pu, c.pu)


def test_refit_resets_all_state(algo_class, synthetic, split, tmp_path_factory):
    trainset, testset = split
    other = dataset_from(low_rank_ratings(n_users=30, n_items=20, seed=5), tmp_path_factory)
    other_trainset = other.build_full_trainset()
    algo = fitted(algo_class, other_trainset)
    algo.fit(trainset)
    fresh = fitted(algo_class, trainset)
    assert algo.trainset is trainset
    assert np.array_equal(algo.pu, fresh.pu) and algo.history == fresh.history
    assert algo.test(testset) == fresh.test(testset)


def test_params_rebuild_the_algorithm(algo_class):
    algo = algo_class(n_factors=7, random_state=1, verbose=False)
    params = algo.get_params()
    assert params["n_factors"] == 7 and params["random_state"] == 1
    clone = algo_class(**params)
    assert clone.get_params() == params
    assert "n_factors=7" in repr(algo)


@pytest.mark.parametrize("name,value", [
    ("n_factors", -1), ("n_factors", 2.5), ("n_epochs", -1), ("biased", "yes"),
    ("random_state", -3), ("verbose", 2), ("on_divergence", "ignore"), ("n_epochs", 2.0), ("init_std_dev", -0.1), ("init_mean", float("nan")),
    ("device", "tpu"), ("device", "cuda:7" if torch.cuda.is_available() else "cuda"), ("dtype", "int8"),
    ("optimizer", "lbfgs"), ("lr_all", 0.0), ("reg_all", -1.0), ("lr_yj", -0.1), ("reg", 0.0),
    ("weighted_reg", None), ("init_low", -1.0), ("init_high", 0.0), ("reg_pu", float("inf")),
    ("burn_in", -1), ("burn_in", 30), ("thinning", 0), ("thinning", 2.5), ("max_samples", 0), ("prior_shape", 0.0),
    ("prior_rate", -1.0), ("prior_strength", float("nan")), ("prior_bias", -1.0),
    ("prior_factors", float("nan")),
])
def test_invalid_parameters_name_themselves(algo_class, split, name, value):
    if not has_param(algo_class, name):
        pytest.skip(f"{algo_class.__name__} has no {name}")
    trainset, _ = split
    with pytest.raises(ValueError, match=name):
        algo_class(**{**FAST[algo_class], name: value}).fit(trainset)


def test_zero_factors_fit_the_biases_alone(algo_class, split):
    # Surprise's SVD, SVDpp and NMF take n_factors=0 (a baseline model trained their way); a grid over
    # n_factors that includes it used to stop with our ValueError.
    trainset, testset = split
    params = {**FAST[algo_class], "n_factors": 0}
    if algo_class is TorchBayesMF:  # no Surprise counterpart; its sample count is read off the factors
        with pytest.raises(ValueError, match="n_factors"):
            algo_class(**params).fit(trainset)
        return
    algo = algo_class(**params).fit(trainset)
    assert algo.pu.shape == (trainset.n_users, 0) and algo.qi.shape == (trainset.n_items, 0)
    low, high = trainset.rating_scale
    for uid, iid, _ in testset[:20]:
        u, i = trainset.to_inner_uid(uid), trainset.to_inner_iid(iid)
        expected = np.clip(algo.global_mean_ + algo.bu[u] + algo.bi[i], low, high)
        assert algo.predict(uid, iid).est == pytest.approx(expected)
    # The biases carry this data's row and column effects: better than the mean, as Surprise's baseline is.
    mean_only = accuracy.rmse([(uid, iid, r, trainset.global_mean, {}) for uid, iid, r in testset], verbose=False)
    assert accuracy.rmse(algo.test(testset), verbose=False) < 0.9 * mean_only


def test_every_parameter_changes_the_model(algo_class, split):
    trainset, _ = split
    base = fitted(algo_class, trainset)
    changes = {"n_factors": 3, "n_epochs": 3, "random_state": 9, **CHANGES[algo_class]}
    # These must not change the model (layout, device, distributed: tested in test_layouts,
    # the device test and test_distributed).
    # on_divergence only acts on runs that blow up (tested in test_hardening).
    untested = set(base.get_params()) - set(changes) - {"verbose", "device", "dtype", "log_dir", "biased",
                                                        "cache_ratings", "layout", "distributed", "on_divergence"}
    assert not untested, f"add these parameters to CHANGES: {untested}"
    for name, value in changes.items():
        other = fitted(algo_class, trainset, **{name: value})
        same_shape = other.pu.shape == base.pu.shape
        assert not (same_shape and np.allclose(other.pu, base.pu) and np.allclose(other.bi, base.bi)), name


def test_empty_and_non_finite_trainsets_are_refused(algo_class, tmp_path_factory):
    data = dataset_from([("a", "x", 3.0), ("b", "y", float("nan"))], tmp_path_factory)
    with pytest.raises(ValueError, match="NaN or infinite"):
        algo_class(**FAST[algo_class]).fit(data.build_full_trainset())
    empty = Trainset({}, {}, 0, 0, 0, (1, 5), {}, {})
    with pytest.raises(ValueError, match="no ratings"):
        algo_class(**FAST[algo_class]).fit(empty)


def test_verbose_history_and_eval_curve(algo_class, split, capsys):
    trainset, testset = split
    algo = algo_class(**{**FAST[algo_class], "verbose": True})
    algo.fit(trainset, eval_set=testset)
    n = FAST[algo_class]["n_epochs"]
    lines = [line for line in capsys.readouterr().out.splitlines() if "epoch" in line]
    assert len(lines) == n and lines[-1].startswith(f"{algo_class.__name__}: processing epoch {n}/{n}")
    keys, falling = HISTORY[algo_class]
    assert set(algo.history) == keys
    assert all(len(v) == n for v in algo.history.values())
    assert algo.history[falling][-1] < algo.history[falling][0]
    # The curve's last point is the RMSE Surprise's accuracy module reports.
    assert algo.history["eval_rmse"][-1] == pytest.approx(accuracy.rmse(algo.test(testset), verbose=False),
                                                          rel=1e-5)


def test_tensorboard_log_dir(algo_class, split, tmp_path, monkeypatch):
    trainset, _ = split
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        algo_class(**FAST[algo_class], log_dir=str(tmp_path)).fit(trainset)
    monkeypatch.undo()
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    algo = algo_class(**FAST[algo_class], log_dir=str(tmp_path / "run")).fit(trainset)
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    falling = HISTORY[algo_class][1]
    assert [e.value for e in events.Scalars(falling)] == pytest.approx(algo.history[falling])
    assert [e.step for e in events.Scalars("train_rmse")] == list(range(1, FAST[algo_class]["n_epochs"] + 1))


@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
def test_devices_give_the_same_model(algo_class, split, device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        pytest.skip("no MPS device here")
    trainset, testset = split
    cpu = fitted(algo_class, trainset, device="cpu")
    other = fitted(algo_class, trainset, device=device)
    assert other.device_.startswith(device)
    np.testing.assert_allclose(other.pu, cpu.pu, atol=1e-3)
    # What was trained on the device unpickles and predicts with NumPy alone.
    restored = pickle.loads(pickle.dumps(other))
    np.testing.assert_allclose([p.est for p in restored.test(testset)],
                               [p.est for p in cpu.test(testset)], atol=1e-3)


def test_float64_matches_float32(algo_class, split):
    if algo_class is TorchBayesMF:
        pytest.skip("a Gibbs chain in float64 is another chain: its samples differ, not only by rounding")
    trainset, testset = split
    single = fitted(algo_class, trainset, dtype="float32")
    double = fitted(algo_class, trainset, dtype=torch.float64)
    np.testing.assert_allclose([p.est for p in single.test(testset)],
                               [p.est for p in double.test(testset)], atol=1e-3)


def test_rating_scale_is_respected(algo_class, tmp_path_factory):
    ratings = [(u, i, r * 2 - 1) for u, i, r in low_rank_ratings(seed=2)]  # scale 1..9
    data = dataset_from(ratings, tmp_path_factory, rating_scale=(1, 9))
    trainset, testset = train_test_split(data, test_size=0.3, random_state=0)
    preds = fitted(algo_class, trainset).test(testset)
    assert all(1 <= p.est <= 9 for p in preds)
    assert accuracy.mae(preds, verbose=False) < 1.0


def test_divergence_raises_on_request(algo_class, split):
    trainset, _ = split
    with pytest.raises(TrainingDivergedError, match=rf"{algo_class.__name__}\(.*\): Training diverged"):
        fitted(algo_class, trainset, on_divergence="raise", **DIVERGE[algo_class])


def test_divergence_warns_and_keeps_a_finite_model(algo_class, split):
    trainset, testset = split
    with pytest.warns(TrainingDivergedWarning, match=rf"{algo_class.__name__}\(.*\): Training diverged"):
        algo = fitted(algo_class, trainset, **DIVERGE[algo_class])
    assert algo.diverged_ is not None
    estimates = [p.est for p in algo.test(testset)]
    assert np.isfinite(estimates).all()
    for name in ("pu", "qi", "bu", "bi"):
        assert np.isfinite(getattr(algo, name)).all(), name


def test_too_large_is_refused_before_allocating(algo_class, split, monkeypatch):
    import surprise_torch.arrays as arrays

    trainset, _ = split
    monkeypatch.setattr(arrays, "available_bytes", lambda device: 1000)
    with pytest.raises(MemoryError, match=r"needs about .* GiB .* available"):
        algo_class(**FAST[algo_class]).fit(trainset)


def test_an_unbounded_number_asks_only_to_be_finite(algo_class, split):
    if not has_param(algo_class, "init_mean"):
        pytest.skip(f"{algo_class.__name__} has no init_mean")
    # Not "a finite number >= -inf".
    with pytest.raises(ValueError, match=r"^init_mean must be a finite number, got inf\.$"):
        algo_class(init_mean=float("inf")).fit(split[0])

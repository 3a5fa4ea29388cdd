"""The Bayesian model's sampler: exact conditionals, hyperpriors, the posterior mean, and what it recovers."""

import numpy as np
import pytest
import torch
from surprise import accuracy
from surprise.model_selection import train_test_split

from surprise_torch import TorchALS, TorchBayesMF, train_on_arrays
from surprise_torch.trainers._observed import Observed
from surprise_torch.trainers.als import _Exchange, _Side
from surprise_torch.trainers.bayes import _Hyperprior, draw_rows

from .conftest import FAST, dataset_from, low_rank_ratings


@pytest.mark.parametrize("rated", [[0, 2, 3, 5, 6], [1, 4]], ids=["gram-form", "kernel-form"])
def test_draws_follow_the_gaussian_conditional(rated):
    """Many users with the same ratings: their draws' mean and covariance are the closed form's."""
    n_copies, n_items, d = 20000, 7, 3
    gen = torch.Generator().manual_seed(0)
    users = torch.arange(n_copies).repeat_interleave(len(rated))
    items = torch.tensor(rated).repeat(n_copies)
    obs = Observed.from_coordinates(users, items, (n_copies, n_items))
    y = torch.randn(len(rated), generator=gen, dtype=torch.float64)
    side = _Side.of_users(obs, y.repeat(n_copies), _Exchange(None), d)
    features = torch.randn(n_items, d, generator=gen, dtype=torch.float64)
    offset = torch.randn(n_items, generator=gen, dtype=torch.float64) * 0.1
    mean = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    precision = torch.tensor([2.0, 0.5, 1.5], dtype=torch.float64)
    alpha = 1.7
    draws = draw_rows(side, features, offset, mean, precision, alpha, torch.Generator().manual_seed(1))
    f = features[rated]
    covariance = torch.linalg.inv(alpha * f.T @ f + torch.diag(precision))
    expected = covariance @ (alpha * f.T @ (y - offset[rated]) + precision * mean)
    # Five standard errors of 20,000 draws.
    scale = covariance.diagonal().sqrt()
    assert torch.all((draws.mean(0) - expected).abs() < 5 * scale / n_copies ** 0.5)
    torch.testing.assert_close(torch.cov(draws.T), covariance, rtol=0, atol=5 * float(scale.max()) ** 2 * 0.02)


def test_hyperprior_draws_follow_the_normal_gamma_conditional():
    rows = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.5 + 0.2
    prior = _Hyperprior(shape=1.0, rate=1.0, strength=1.0, rng=np.random.default_rng(0))
    draws = [prior.draw(rows) for _ in range(20000)]
    means = torch.stack([m for m, _ in draws]).numpy()
    precisions = torch.stack([p for _, p in draws]).numpy()
    x = rows.numpy()
    n = len(x)
    rate = 1.0 + 0.5 * (((x - x.mean(0)) ** 2).sum(0) + n * x.mean(0) ** 2 / (1 + n))
    np.testing.assert_allclose(precisions.mean(0), (1.0 + n / 2) / rate, rtol=0.02)
    np.testing.assert_allclose(means.mean(0), x.sum(0) / (1 + n), atol=0.01)


def test_the_estimate_is_the_mean_over_kept_samples(split):
    trainset, _ = split
    algo = TorchBayesMF(**FAST[TorchBayesMF]).fit(trainset)
    k, s = algo.pu.shape[1], algo.n_samples_
    assert s == 28 and algo.pu_samples_.shape == (trainset.n_users, s * k)
    users = algo.pu_samples_.reshape(-1, s, k) * s ** 0.5
    items = algo.qi_samples_.reshape(-1, s, k) * s ** 0.5
    np.testing.assert_allclose(algo.pu, users.mean(1), atol=1e-6)  # float32 training
    dots = np.einsum("usk,isk->uis", users, items).mean(2)
    u, i = trainset.to_inner_uid("u3"), trainset.to_inner_iid("i7")
    assert algo.estimate(u, i) == pytest.approx(algo.global_mean_ + algo.bu[u] + algo.bi[i] + dots[u, i])


def test_thinning_and_the_sample_cap(split):
    trainset, _ = split
    params = {**FAST[TorchBayesMF], "n_epochs": 30, "burn_in": 10}
    assert TorchBayesMF(**{**params, "max_samples": 7}).fit(trainset).n_samples_ == 6  # every 3rd of 20 sweeps
    assert TorchBayesMF(**{**params, "thinning": 4}).fit(trainset).n_samples_ == 5
    with pytest.raises(ValueError, match="max_samples"):
        TorchBayesMF(**{**params, "thinning": 1, "max_samples": 10}).fit(trainset)
    with pytest.raises(ValueError, match="burn_in"):
        TorchBayesMF(**{**params, "burn_in": 30}).fit(trainset)


def test_the_same_seed_gives_the_same_chain(split):
    trainset, testset = split
    first, again = (TorchBayesMF(**FAST[TorchBayesMF]).fit(trainset) for _ in range(2))
    other = TorchBayesMF(**{**FAST[TorchBayesMF], "random_state": 1}).fit(trainset)
    assert np.array_equal(first.pu_samples_, again.pu_samples_) and first.history == again.history
    assert not np.allclose(first.pu_samples_, other.pu_samples_)


def test_recovers_a_noisy_low_rank_matrix(tmp_path_factory):
    noise = 0.1
    data = dataset_from(low_rank_ratings(n_users=80, n_items=60, rank=3, density=0.6, noise=noise, seed=4),
                        tmp_path_factory)
    trainset, testset = train_test_split(data, test_size=0.2, random_state=0)
    bayes = TorchBayesMF(n_factors=3, n_epochs=100, random_state=0).fit(trainset)
    rmse = accuracy.rmse(bayes.test(testset), verbose=False)
    # The noise is the floor; a well-regularised point estimate does no better.
    als = TorchALS(n_factors=3, random_state=0).fit(trainset)
    assert rmse < 1.5 * noise and rmse <= accuracy.rmse(als.test(testset), verbose=False)
    # The sampled noise level finds the truth (in the clipped data, a little less).
    assert 0.5 * noise < bayes.history["noise_std"][-1] < 1.5 * noise


def test_train_on_arrays_takes_the_bayesian_trainer():
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 30, 400), rng.integers(0, 20, 400)
    model = train_on_arrays("bayes", users, items, rng.normal(3, 1, 400), n_users=33, n_items=20, n_factors=3,
                            n_epochs=20, burn_in=5, random_state=0)
    assert model.pu.shape == (33, 3) and model.extras["pu_samples_"].shape == (33, 45)
    assert torch.isfinite(model.extras["qi_samples_"]).all() and len(model.history["train_rmse"]) == 20


def test_a_fit_whose_float64_samples_would_not_fit_is_refused_before_sampling(monkeypatch):
    import surprise_torch.arrays as arrays_module

    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 300, 2000), rng.integers(0, 100, 2000)
    sizes = dict(n_users=300, n_items=100, n_factors=10, max_samples=200)
    values = (300 + 100) * 10 * 200
    # The float32 samples fit; with the float64 copy handed back (12 bytes a value) they do not.
    monkeypatch.setattr(arrays_module, "available_bytes", lambda device: 6 * values)
    sweeps = []
    with pytest.raises(MemoryError, match="fewer n_factors or max_samples"):
        train_on_arrays("bayes", users, items, rng.normal(3, 1, 2000), dtype=torch.float32, n_epochs=210,
                        callback=lambda epoch, metrics: sweeps.append(epoch), **sizes)
    assert sweeps == []


def test_the_samples_handed_back_are_scaled_copies_of_the_trained_ones():
    from surprise_torch.arrays import RatingScale
    from surprise_torch.trainers._common import MFModel

    scale = RatingScale(center=3.0, spread=4.0)
    for dtype in (torch.float32, torch.float64):
        samples = torch.arange(6, dtype=dtype).reshape(3, 2)
        trained = samples.clone()
        factors = torch.ones(3, 2, dtype=dtype)
        model = MFModel(global_mean=0.0, pu=factors, qi=factors, bu=factors[:, 0], bi=factors[:, 0],
                        extras={"pu_samples_": samples})
        restored = scale.restore(model).extras["pu_samples_"]
        assert restored.dtype == torch.float64
        torch.testing.assert_close(restored, trained.double() * 2.0)  # sqrt(spread)
        assert torch.equal(samples, trained)  # the trained tensor is left as it was, even in float64

"""Shared fixtures: small seeded low-rank data, and the real MovieLens-100K."""

import numpy as np
import pytest
from surprise import Dataset, Reader

from surprise_torch import TorchALS, TorchBayesMF, TorchNMF, TorchSVD, TorchSVDpp

# Parameters that make every algorithm fit the synthetic data in milliseconds.
FAST = {
    TorchSVD: dict(n_factors=4, n_epochs=40, reg_all=0.05, random_state=0),
    TorchALS: dict(n_factors=4, n_epochs=8, reg=0.05, random_state=0),
    TorchSVDpp: dict(n_factors=4, n_epochs=40, reg_all=0.05, random_state=0),
    TorchNMF: dict(n_factors=4, n_epochs=60, biased=True, random_state=0),
    TorchBayesMF: dict(n_factors=4, n_epochs=30, burn_in=2, max_samples=30, random_state=0),
}
ALGORITHMS = list(FAST)

# The per-epoch metrics each algorithm records (with an eval_set), and the one that must fall as it trains.
HISTORY = {algo_class: ({"loss", "train_rmse", "eval_rmse"}, "loss") for algo_class in ALGORITHMS}
HISTORY[TorchBayesMF] = ({"train_rmse", "train_rmse_mean", "noise_std", "eval_rmse"}, "train_rmse_mean")

# For each algorithm, parameters that must each change the fitted model.
_SGD_CHANGES = {"lr_all": 0.03, "reg_all": 0.5, "lr_pu": 0.02, "lr_qi": 0.02, "lr_bu": 0.02, "lr_bi": 0.02,
                "reg_pu": 1.0, "reg_qi": 1.0, "reg_bu": 1.0, "reg_bi": 1.0, "optimizer": "sgd",
                "init_mean": 0.1, "init_std_dev": 0.3, "prior_bias": 20.0, "prior_factors": 20.0}
CHANGES = {
    TorchSVD: _SGD_CHANGES,
    TorchSVDpp: {**_SGD_CHANGES, "lr_yj": 0.02, "reg_yj": 1.0},
    TorchALS: {"reg": 1.0, "reg_bu": 1.0, "reg_bi": 1.0, "weighted_reg": False, "init_mean": 0.1,
               "init_std_dev": 0.3, "solver": "cholesky", "cg_steps": 1, "prior_bias": 20.0, "prior_factors": 20.0},
    TorchNMF: {"reg_pu": 0.5, "reg_qi": 0.5, "reg_bu": 1.0, "reg_bi": 1.0, "lr_bu": 0.05, "lr_bi": 0.05,
               "init_low": 0.2, "init_high": 2.0, "biased": False},
    TorchBayesMF: {"burn_in": 10, "thinning": 2, "max_samples": 10, "prior_shape": 5.0, "prior_rate": 5.0,
                   "prior_strength": 10.0, "init_std_dev": 0.5, "biased": False},
}

# For each algorithm, parameters that make training blow up.
DIVERGE = {
    TorchSVD: {"optimizer": "sgd", "lr_all": 1e4, "reg_all": 0.0},
    TorchSVDpp: {"optimizer": "sgd", "lr_all": 1e4, "reg_all": 0.0},
    TorchALS: {"init_std_dev": 1e200},
    TorchNMF: {"init_high": 1e30},
    TorchBayesMF: {"init_std_dev": 1e200},
}


def has_param(algo_class, name):
    return name in algo_class().get_params()


def low_rank_ratings(n_users=60, n_items=40, rank=3, density=0.5, noise=0.1, seed=0):
    """Ratings ``3 + bu + bi + U V^T + noise`` clipped to [1, 5], observed at random.

    Returns a list of ``(raw_uid, raw_iid, rating)`` with string ids, as
    Surprise's readers produce.
    """
    rng = np.random.default_rng(seed)
    full = (3 + rng.normal(0, 0.5, (n_users, 1)) + rng.normal(0, 0.5, (1, n_items))
            + rng.normal(0, 0.6, (n_users, rank)) @ rng.normal(0, 0.6, (rank, n_items))
            + rng.normal(0, noise, (n_users, n_items)))
    full = np.clip(full, 1, 5)
    observed = rng.random((n_users, n_items)) < density
    observed[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    observed[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    users, items = np.nonzero(observed)
    return [(f"u{u}", f"i{i}", float(full[u, i])) for u, i in zip(users, items)]


def dataset_from(ratings, tmp_path_factory, name="ratings.csv", rating_scale=(1, 5)):
    """A Surprise Dataset read from a file, exactly as users load theirs."""
    path = tmp_path_factory.mktemp("data") / name
    path.write_text("".join(f"{u},{i},{r!r}\n" for u, i, r in ratings))
    return Dataset.load_from_file(str(path), Reader(line_format="user item rating", sep=",",
                                                    rating_scale=rating_scale))


def fitted(algo_class, trainset, **params):
    """``algo_class`` with the fast parameters (overridden by ``params``), fitted."""
    return algo_class(**{**FAST[algo_class], **params}).fit(trainset)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """A seeded low-rank Dataset of 60 users x 40 items."""
    return dataset_from(low_rank_ratings(), tmp_path_factory)


@pytest.fixture(scope="session")
def split(synthetic):
    """A fixed train/test split of the synthetic data, with unknown ids in the testset."""
    from surprise.model_selection import train_test_split

    trainset, testset = train_test_split(synthetic, test_size=0.25, random_state=0)
    testset = testset + [("nobody", "i0", 3.0), ("u0", "nothing", 4.0), ("nobody", "nothing", 2.0)]
    return trainset, testset


@pytest.fixture(scope="session")
def ml100k():
    """The real MovieLens-100K, fetched into Surprise's data folder on first use."""
    from surprise_torch.datasets import load_builtin

    return load_builtin("ml-100k")

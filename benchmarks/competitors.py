"""Optional competitors, wrapped as Surprise algorithms so they run on the same folds.

cornac's MF (multi-threaded Cython SGD) is the fastest CPU peer we know of. It
is used only when ``cornac`` is installed (``pip install cornac``); the
wrapper hands cornac the trainset's ratings and reads its fitted factors back
into Surprise SVD's prediction rule.

myFM (``pip install myfm``) is libFM's Gibbs sampler for factorization
machines, in C++: with one-hot user and item ids it is Bayesian matrix
factorization, the model :class:`~surprise_torch.TorchBayesMF` samples.
"""

from __future__ import annotations

import importlib.util

import numpy as np
from surprise import AlgoBase, PredictionImpossible


def cornac_available() -> bool:
    """Whether cornac can be imported here."""
    return importlib.util.find_spec("cornac") is not None


def myfm_available() -> bool:
    """Whether myFM can be imported here (it needs setuptools' pkg_resources)."""
    try:
        import myfm  # noqa: F401
    except ImportError:
        return False
    return True


class CornacMF(AlgoBase):
    """cornac.models.MF behind Surprise's interface.

    Without a ``seed`` cornac trains on every core (with one, on a single
    thread), so the benchmark leaves it unseeded: its fastest setting.

    Parameters
    ----------
    **params
        Passed to ``cornac.models.MF`` (``k``, ``max_iter``, ``learning_rate``,
        ``lambda_reg``, ``seed``...); cornac's defaults otherwise.
    """

    def __init__(self, **params):
        AlgoBase.__init__(self)
        self.params = params

    def fit(self, trainset):
        from cornac.data import Dataset
        from cornac.models import MF

        AlgoBase.fit(self, trainset)
        triples = [(str(u), str(i), float(r)) for u, i, r in trainset.all_ratings()]
        data = Dataset.from_uir(triples, seed=0)
        model = MF(verbose=False, **self.params).fit(data)
        # Reorder cornac's rows to Surprise's inner ids.
        users = np.array([data.uid_map[str(u)] for u in range(trainset.n_users)])
        items = np.array([data.iid_map[str(i)] for i in range(trainset.n_items)])
        self.pu, self.qi = model.u_factors[users], model.i_factors[items]
        self.bu, self.bi = model.u_biases[users], model.i_biases[items]
        self.mu = float(model.global_mean)
        return self

    def estimate(self, u, i):
        known_u, known_i = self.trainset.knows_user(u), self.trainset.knows_item(i)
        if not (known_u or known_i):
            raise PredictionImpossible("User and item are unknown.")
        est = self.mu + (self.bu[u] if known_u else 0.0) + (self.bi[i] if known_i else 0.0)
        if known_u and known_i:
            est += float(np.dot(self.pu[u], self.qi[i]))
        return est


class MyFMBayes(AlgoBase):
    """myFM's Gibbs-sampled factorization machine on one-hot user and item ids, behind Surprise's interface.

    Every sample is kept (myFM's default), and predictions average them.
    ``test`` predicts the whole testset in one call and clips like
    Surprise's ``predict``.

    Parameters
    ----------
    rank : int, default 10
    n_iter : int, default 200
        Gibbs sweeps.
    random_seed : int, default 0
    grouping : bool, default True
        Users and items as two groups with their own hyperparameters, as in
        libFM's and myFM's MovieLens examples (and as TorchBayesMF's sides);
        False shares one set of hyperparameters between them.
    """

    def __init__(self, rank=10, n_iter=200, random_seed=0, grouping=True):
        AlgoBase.__init__(self)
        self.rank, self.n_iter, self.random_seed, self.grouping = rank, n_iter, random_seed, grouping

    def _features(self, users, items):
        import scipy.sparse as sp

        n_users, n_items = self.trainset.n_users, self.trainset.n_items
        rows = np.arange(len(users))
        known_u, known_i = users >= 0, items >= 0
        cols = np.concatenate([users[known_u], n_users + items[known_i]])
        rows = np.concatenate([rows[known_u], rows[known_i]])
        return sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(users), n_users + n_items))

    def fit(self, trainset):
        import myfm

        AlgoBase.fit(self, trainset)
        users, items, ratings = (np.array(column) for column in zip(*trainset.all_ratings()))
        self.model = myfm.MyFMRegressor(rank=self.rank, random_seed=self.random_seed)
        self.model.fit(self._features(users.astype(np.int64), items.astype(np.int64)), ratings.astype(np.float64),
                       n_iter=self.n_iter,
                       grouping=[0] * trainset.n_users + [1] * trainset.n_items if self.grouping else None)
        return self

    def test(self, testset, verbose=False):
        from surprise.prediction_algorithms.predictions import Prediction

        users = np.array([self.trainset._raw2inner_id_users.get(u, -1) for u, _, _ in testset], dtype=np.int64)
        items = np.array([self.trainset._raw2inner_id_items.get(i, -1) for _, i, _ in testset], dtype=np.int64)
        low, high = self.trainset.rating_scale
        est = np.clip(self.model.predict(self._features(users, items)), low, high)
        return [Prediction(u, i, r, float(e), {"was_impossible": False}) for (u, i, r), e in zip(testset, est)]

    def estimate(self, u, i):
        users = np.array([u if self.trainset.knows_user(u) else -1], dtype=np.int64)
        items = np.array([i if self.trainset.knows_item(i) else -1], dtype=np.int64)
        return float(self.model.predict(self._features(users, items))[0])

"""Optional competitors, wrapped as Surprise algorithms so they run on the same folds.

cornac's MF (multi-threaded Cython SGD) is the fastest CPU peer we know of. It
is used only when ``cornac`` is installed (``pip install cornac``); the
wrapper hands cornac the trainset's ratings and reads its fitted factors back
into Surprise SVD's prediction rule.
"""

from __future__ import annotations

import importlib.util

import numpy as np
from surprise import AlgoBase, PredictionImpossible


def cornac_available() -> bool:
    """Whether cornac can be imported here."""
    return importlib.util.find_spec("cornac") is not None


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

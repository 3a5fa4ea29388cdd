"""Synthetic rating data shaped like the public benchmarks, for time and memory scaling.

Users and items get long-tailed (log-normal) activity and popularity, pairs
are drawn in proportion to both, and ratings are a low-rank signal plus
biases and noise, rounded to 1..5 stars like MovieLens. Everything is
vectorised NumPy and seeded; 20M ratings take a few seconds.
"""

from __future__ import annotations

import numpy as np

#: name -> (users, items, ratings) of the real dataset it imitates. "light-users" imitates none: 72% of its
#: users have three ratings or fewer (a quarter none), as in retail data; MovieLens keeps users with 20 or more.
SHAPES = {
    "ml-latest-small": (610, 9_724, 100_836),
    "ml-1m": (6_040, 3_706, 1_000_209),
    "ml-10m": (69_878, 10_677, 10_000_054),
    "ml-20m": (138_493, 26_744, 20_000_263),
    "netflix": (480_189, 17_770, 100_480_507),
    "light-users": (500_000, 20_000, 1_500_000),
}


def synthetic_ratings(shape: str, seed: int = 0, rank: int = 10, noise: float = 0.8,
                      chunk: int = 5_000_000):
    """Draw a rating set of the given shape.

    Parameters
    ----------
    shape : str
        A key of :data:`SHAPES`.
    seed : int, default 0
    rank : int, default 10
        Rank of the low-rank signal.
    noise : float, default 0.8
        Standard deviation of the Gaussian noise before rounding.
    chunk : int
        Ratings computed per block, to bound the memory of the signal.

    Returns
    -------
    users, items : numpy.ndarray of int64
        Sorted by user, then item; no pair repeats.
    ratings : numpy.ndarray of float32
        Whole stars, 1 to 5.
    n_users, n_items : int
    """
    n_users, n_items, n_ratings = SHAPES[shape]
    rng = np.random.default_rng(seed)
    user_weight = rng.lognormal(0.0, 1.0, n_users)
    item_weight = rng.lognormal(0.0, 1.6, n_items)
    user_p, item_p = user_weight / user_weight.sum(), item_weight / item_weight.sum()
    keys = np.empty(0, dtype=np.int64)
    while keys.size < n_ratings:
        # Popular pairs repeat; draw extra, keep distinct pairs, repeat until enough.
        draw = int((n_ratings - keys.size) * 1.3) + 1000
        new = rng.choice(n_users, draw, p=user_p).astype(np.int64) * n_items + rng.choice(n_items, draw, p=item_p)
        keys = np.unique(np.concatenate([keys, new]))
    keys = np.sort(rng.choice(keys, n_ratings, replace=False))
    users, items = keys // n_items, keys % n_items

    user_factors = rng.normal(0, 1 / np.sqrt(rank), (n_users, rank)).astype(np.float32)
    item_factors = rng.normal(0, 1 / np.sqrt(rank), (n_items, rank)).astype(np.float32)
    user_bias = rng.normal(0, 0.4, n_users).astype(np.float32)
    item_bias = rng.normal(0, 0.5, n_items).astype(np.float32)
    ratings = np.empty(n_ratings, dtype=np.float32)
    for start in range(0, n_ratings, chunk):
        u, i = users[start:start + chunk], items[start:start + chunk]
        signal = 3.6 + user_bias[u] + item_bias[i] + np.einsum("ij,ij->i", user_factors[u], item_factors[i])
        ratings[start:start + chunk] = signal + rng.normal(0, noise, u.size).astype(np.float32)
    np.clip(np.rint(ratings, out=ratings), 1, 5, out=ratings)
    return users, items, ratings, n_users, n_items

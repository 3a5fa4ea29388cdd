"""Top-N recommendations from a fitted algorithm, scored with batched matrix products.

Surprise leaves top-N to an FAQ recipe that predicts every unseen (user, item)
pair one at a time through ``test(build_anti_testset())``. Here each block of
users is scored against every item with one matrix product on the device,
seen items are masked, and ``torch.topk`` picks the best.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from surprise import NMF, SVD, SVDpp

from ._config import check_int, resolve_device
from ._data import trainset_arrays
from .algorithms._base import TorchMFAlgo

__all__ = ["top_n"]


def top_n(algo, n: int = 10, exclude_seen: bool = True, users=None, device="cpu", batch_size: int = 4096):
    """The ``n`` highest-scored items for every user (or the given ones).

    Parameters
    ----------
    algo : TorchSVD, TorchALS, TorchSVDpp, TorchNMF, TorchBayesMF, or surprise's SVD, SVDpp or NMF
        A fitted matrix-factorization algorithm: ours (TorchBayesMF scored
        by its posterior mean, as its ``predict``), or Surprise's own (which
        keep the same fitted attributes).
    n : int, default 10
    exclude_seen : bool, default True
        Leave out the items each user rated in the trainset.
    users : iterable of raw user ids, optional
        Whom to recommend for; default every user of the trainset.
    device : str or torch.device, default "cpu"
        Where to compute the scores; "auto" picks CUDA, then MPS, then the CPU.
    batch_size : int, default 4096
        Users scored per product, bounding memory to ``batch_size x n_items``.

    Returns
    -------
    dict
        Raw user id -> list of ``(raw item id, estimate)``, best first, at
        most ``n`` long; estimates are those ``algo.predict`` gives (clipped
        to the rating scale), ties in them broken by the unclipped score.

    Raises
    ------
    TypeError
        If ``algo`` is not a matrix-factorization algorithm named above, or
        ``users`` is a single id (a string, say) rather than a collection.
    ValueError
        If ``algo`` is not fitted, ``n`` or ``batch_size`` is not a positive
        integer, or a user is unknown to the trainset.
    """
    n = check_int("n", n)
    batch_size = check_int("batch_size", batch_size)
    model = _Factors.of(algo)
    trainset = algo.trainset
    if users is None:
        inner = np.arange(trainset.n_users)
    else:
        if isinstance(users, (str, bytes)) or not isinstance(users, Iterable):
            # A string is iterable: "196" used to recommend for users "1", "9" and "6" where those exist.
            raise TypeError(f"users must be a list of raw user ids, not one id: pass [{users!r}].")
        unknown = [u for u in users if u not in trainset._raw2inner_id_users]
        if unknown:
            raise ValueError(f"users {unknown[:5]} are not in the trainset; top_n recommends for known users.")
        inner = np.array([trainset.to_inner_uid(u) for u in users], dtype=np.int64)
    dev = resolve_device(device)
    dtype = torch.float32 if dev.type == "mps" else torch.float64
    qi = torch.from_numpy(model.qi).to(dev, dtype)
    item_bias = torch.from_numpy(model.bi).to(dev, dtype)
    low, high = trainset.rating_scale
    seen = trainset_arrays(trainset) if exclude_seen else None
    k = min(n, trainset.n_items)
    result = {}
    for start in range(0, len(inner), batch_size):
        block = inner[start:start + batch_size]
        scores = torch.from_numpy(model.user_rows(block)).to(dev, dtype) @ qi.T
        if model.biased:
            bias = model.mu + model.bu[block]
            scores += torch.from_numpy(bias).to(dev, dtype)[:, None] + item_bias
        if exclude_seen:
            rows, cols = _seen_in_block(seen, block)
            scores[torch.from_numpy(rows).to(dev), torch.from_numpy(cols).to(dev)] = -torch.inf
        values, items = torch.topk(scores, k, dim=1)
        values, items = values.cpu().numpy(), items.cpu().numpy()
        for row, u in enumerate(block):
            keep = np.isfinite(values[row])
            result[trainset.to_raw_uid(int(u))] = [
                (trainset.to_raw_iid(int(i)), float(min(high, max(low, v))))
                for i, v in zip(items[row][keep], values[row][keep])
            ]
    return result


def _seen_in_block(arrays, block):
    """(row in block, item) of every rating by the block's users."""
    starts = np.searchsorted(arrays.users, block, side="left")
    ends = np.searchsorted(arrays.users, block, side="right")
    lengths = ends - starts
    rows = np.repeat(np.arange(len(block)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, arrays.items[np.repeat(starts, lengths) + offsets]


class _Factors:
    """What scoring needs from a fitted factorization, whoever fitted it."""

    def __init__(self, user_rows, qi, bu, bi, mu, biased):
        self.user_rows, self.qi, self.bu, self.bi, self.mu, self.biased = user_rows, qi, bu, bi, mu, biased

    @classmethod
    def of(cls, algo):
        kinds = (TorchMFAlgo, SVD, SVDpp, NMF)
        if not isinstance(algo, kinds):
            raise TypeError(f"top_n scores matrix-factorization models (surprise_torch's algorithms and Surprise's "
                            f"SVD, SVDpp and NMF), not {type(algo).__name__}; for other algorithms use Surprise's "
                            "recipe, algo.test(trainset.build_anti_testset()).")
        if not hasattr(algo, "qi") or getattr(algo, "trainset", None) is None:
            raise ValueError(f"top_n needs a fitted {type(algo).__name__}; call fit first.")
        if isinstance(algo, TorchMFAlgo):
            return cls(algo._user_rows, algo._item_factors(), algo.bu, algo.bi, algo.global_mean_, algo.biased)
        mu = algo.trainset.global_mean
        if isinstance(algo, SVDpp):
            # Surprise's SVDpp.estimate: |N(u)|^-1/2 times the sum of yj over
            # every (item, rating) the user has, repeats included.
            arrays = trainset_arrays(algo.trainset)
            implicit = np.zeros_like(algo.pu)
            np.add.at(implicit, arrays.users, algo.yj[arrays.items])
            counts = np.bincount(arrays.users, minlength=algo.trainset.n_users)
            implicit /= np.sqrt(np.maximum(counts, 1))[:, None]
            rows = algo.pu + implicit
            return cls(lambda users: rows.take(users, axis=0), algo.qi, algo.bu, algo.bi, mu, True)
        return cls(lambda users: algo.pu.take(users, axis=0), algo.qi, algo.bu, algo.bi, mu, algo.biased)
